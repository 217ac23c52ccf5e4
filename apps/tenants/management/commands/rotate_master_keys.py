"""manage.py rotate_master_keys: re-wrap every tenant data key with the primary master key.

Put the new key first in MASTER_KEYS (keep the old ones after it), run this,
then drop the old keys. Prints the number of tenants re-wrapped.
"""

from django.core.management.base import BaseCommand, CommandError

from apps.security.crypto import DecryptionError
from apps.tenants.services import rewrap_all_data_keys


class Command(BaseCommand):
    help = "Re-wrap all tenant data keys with the first key of MASTER_KEYS."

    def handle(self, *args, **options) -> None:
        try:
            count = rewrap_all_data_keys()
        except DecryptionError as exc:
            raise CommandError(
                f"{exc}; keep the old master key(s) in MASTER_KEYS, after the new one, until this has run "
                "(nothing was re-wrapped)"
            ) from exc
        self.stdout.write(str(count))
