"""/v1: the OpenAI-compatible routes (no trailing slashes, as OpenAI's)."""

from django.urls import path

from apps.gateway import views

urlpatterns = [
    path("models", views.models, name="openai-models"),
    # <path:…>: a model id may hold characters a plain segment would stop at.
    path("models/<path:model_id>", views.model, name="openai-model"),
    path("chat/completions", views.chat_completions, name="openai-chat-completions"),
    path("completions", views.completions, name="openai-completions"),
]
