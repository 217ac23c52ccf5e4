from django.urls import path

from apps.streaming.consumers import TaskStreamConsumer

websocket_urlpatterns = [path("ws/tasks/<str:task_id>/", TaskStreamConsumer.as_asgi())]
