from django.urls import path

from apps.scheduler.api.views import UsageReportView, UsageView

urlpatterns = [
    path("usage", UsageView.as_view(), name="usage"),
    path("usage/report", UsageReportView.as_view(), name="usage-report"),
]
