from django.urls import path

from apps.scheduler.api.views import UsageView

urlpatterns = [
    path("usage", UsageView.as_view(), name="usage"),
]
