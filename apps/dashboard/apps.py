from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Operator pages beyond the stock admin: the live operations dashboard at /ops/."""

    name = "apps.dashboard"
    label = "dashboard"
    verbose_name = "Operations dashboard"
