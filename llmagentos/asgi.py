"""ASGI entry point: HTTP through Django; WebSocket routes join with streaming."""

import os

import django
from channels.routing import ProtocolTypeRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmagentos.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

application = ProtocolTypeRouter({"http": get_asgi_application()})
