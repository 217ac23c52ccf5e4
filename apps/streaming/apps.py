from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "apps.streaming"
    label = "streaming"
    verbose_name = "Streaming"

    def ready(self) -> None:
        from apps.streaming import services
        from apps.tasks import lifecycle
        from apps.tenants.data_keys import encrypted_stores

        lifecycle.ended.register("streaming.done", services.publish_end)
        lifecycle.erased.register("streaming.purge", services.purge_streams)
        for store in services.ENCRYPTED_STORES:
            encrypted_stores.register(store)
