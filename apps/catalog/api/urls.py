from django.urls import path

from apps.catalog.api.views import ModelListView

urlpatterns = [path("models", ModelListView.as_view(), name="model-list")]
