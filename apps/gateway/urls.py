"""/v1: the OpenAI-compatible routes (no trailing slashes, as OpenAI's)."""

from django.urls import path

import apps.core.converters  # noqa: F401 -- registers <name_path:…>
from apps.gateway import views

urlpatterns = [
    path("models", views.models, name="openai-models"),
    # <name_path:…>: a model id may hold "/" (not control characters: apps.core.converters).
    path("models/<name_path:model_id>", views.model, name="openai-model"),
    path("chat/completions", views.chat_completions, name="openai-chat-completions"),
    path("completions", views.completions, name="openai-completions"),
]
