"""The stream token's representation."""

from rest_framework import serializers


class StreamTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="send as the WebSocket subprotocol token.<token>")
    expires_in = serializers.IntegerField(help_text="seconds")
