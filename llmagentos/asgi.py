"""ASGI entry point: HTTP through Django (behind the body-size limit), WebSocket streams through Channels."""

import os

import django
from channels.routing import ProtocolTypeRouter, URLRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmagentos.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

from apps.streaming.routing import websocket_urlpatterns  # noqa: E402
from llmagentos.body_limit import RequestBodyLimit  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies over MAX_REQUEST_BODY_BYTES are refused before Django reads them.
        "http": RequestBodyLimit(get_asgi_application()),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
