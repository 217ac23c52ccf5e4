from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from django.contrib.auth import signals

        from apps.tenants import audit, schema  # noqa: F401  (schema registers the OpenAPI auth extension)

        # Sign-ins to the admin go to the audit log (django.contrib.auth's own
        # signals: no app of ours sends or hears them otherwise).
        signals.user_logged_in.connect(audit.on_logged_in, dispatch_uid="audit-logged-in")
        signals.user_login_failed.connect(audit.on_login_failed, dispatch_uid="audit-login-failed")
        signals.user_logged_out.connect(audit.on_logged_out, dispatch_uid="audit-logged-out")
