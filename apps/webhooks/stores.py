"""Where webhooks keep ciphertext under a tenant's data key, for re-encryption
and crypto-shredding (apps.tenants.data_keys; registered in WebhooksConfig.ready())."""

from __future__ import annotations

from apps.tenants.data_keys import EncryptedColumns
from apps.webhooks.models import Delivery, TaskWebhook, TenantWebhook

ENCRYPTED_STORES = (
    EncryptedColumns("webhooks.settings", lambda tenant: TenantWebhook.objects.filter(tenant=tenant),
                     ("secret_ciphertext",)),
    EncryptedColumns("webhooks.task_callbacks", lambda tenant: TaskWebhook.objects.filter(tenant=tenant),
                     ("url_ciphertext",)),
    EncryptedColumns("webhooks.deliveries", Delivery.objects.for_tenant, ("payload_ciphertext",)),
)
