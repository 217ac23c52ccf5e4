from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.tasks import lifecycle
        from apps.tenants.data_keys import encrypted_stores
        from apps.webhooks import services, stores

        # What the tasks app announces (apps.tasks.lifecycle has the table).
        lifecycle.checking.register("webhooks.check_url", services.check_task_webhook)
        lifecycle.submitting.register("webhooks.keep", services.keep_task_webhook)
        lifecycle.ending.register("webhooks.record", services.record_task_end)
        lifecycle.erased.register("webhooks.erase", services.forget_erased)
        for store in stores.ENCRYPTED_STORES:
            encrypted_stores.register(store)
