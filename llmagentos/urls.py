from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from llmagentos import health, metrics

handler400 = "llmagentos.api_errors.bad_request_view"
handler404 = "llmagentos.api_errors.not_found_view"
handler500 = "llmagentos.api_errors.server_error_view"

api_v1 = [
    path("", include("apps.tasks.api.urls")),
    path("", include("apps.streaming.api.urls")),
    path("", include("apps.catalog.api.urls")),
    path("", include("apps.scheduler.api.urls")),
    path("", include("apps.tenants.api.urls")),
    path("", include("apps.webhooks.api.urls")),
    # Operators: staff sessions or operator tokens (apps.tenants.permissions).
    path("ops/", include("apps.workers.api.urls")),
    path("ops/", include("apps.tenants.api.ops_urls")),
    path("ops/", include("apps.scheduler.api.ops_urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # OpenAI-compatible: existing OpenAI SDKs and tools work unmodified (apps.gateway).
    path("v1/", include("apps.gateway.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus (a metrics token or a staff session): llmagentos.metrics.
    path("metrics", metrics.metrics_view, name="metrics"),
    # The operations dashboard (staff only): live queues, workers, tenants' limits, failures.
    path("ops/", include("apps.dashboard.urls")),
    path("admin/", admin.site.urls),
]
