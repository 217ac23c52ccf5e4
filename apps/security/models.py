"""Operator tokens: how scripts reach /api/v1/ops/ without an admin session."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class OperatorToken(models.Model):
    """A staff user's token for the operator API. Shown once; only its hash is kept.

    The token reads ``llo_<prefix>_<secret>`` ("o" for operator, where tenant
    keys read ``lla_``): the prefix finds the row, the SHA-256 of the whole
    token is compared in constant time (256 random bits need no slow KDF). It
    acts with its user's rights, so it stops working when the user stops being
    active staff.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user}:{self.prefix}"
