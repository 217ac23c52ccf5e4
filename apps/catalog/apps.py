from django.apps import AppConfig
from django.conf import settings


class CatalogConfig(AppConfig):
    name = "apps.catalog"
    label = "catalog"
    verbose_name = "Model catalog"

    def ready(self) -> None:
        from apps.catalog.plugins import registry

        # Start-up is the only time plugins load; a bad one stops the process here.
        registry.load(settings.LLMAGENTOS_PLUGINS, settings.PLUGINS_CONFIG)
