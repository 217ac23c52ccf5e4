"""ASGI entry point: HTTP through Django (behind the body-size limit; /v1's completions
through the gateway's own front), WebSocket streams
through Channels, both behind the access log (which binds each request's id)."""

import os

import django
from channels.routing import ProtocolTypeRouter, URLRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmagentos.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

from apps.gateway.front import GatewayFront  # noqa: E402
from apps.streaming.routing import websocket_urlpatterns  # noqa: E402
from llmagentos.access_log import AccessLog  # noqa: E402
from llmagentos.body_limit import RequestBodyLimit  # noqa: E402

application = AccessLog(
    ProtocolTypeRouter(
        {
            # Bodies over MAX_REQUEST_BODY_BYTES are refused before Django reads them;
            # /v1's completions are answered without Django's request cycle (apps.gateway.front).
            "http": RequestBodyLimit(GatewayFront(get_asgi_application())),
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)
