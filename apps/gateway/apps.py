from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The OpenAI-compatible /v1 ingress: OpenAI requests become tasks, task
    streams become server-sent events. No logic of its own beyond translation."""

    name = "apps.gateway"
    label = "gateway"
    verbose_name = "OpenAI-compatible gateway"
