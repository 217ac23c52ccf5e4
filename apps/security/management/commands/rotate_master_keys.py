"""manage.py rotate_master_keys: re-wrap every tenant data key with the primary master key.

Put the new key first in MASTER_KEYS (keep the old ones after it), run this,
then drop the old keys. Prints the number of tenants re-wrapped.
"""

from django.core.management.base import BaseCommand

from apps.tenants.services import rewrap_all_data_keys


class Command(BaseCommand):
    help = "Re-wrap all tenant data keys with the first key of MASTER_KEYS."

    def handle(self, *args, **options) -> None:
        self.stdout.write(str(rewrap_all_data_keys()))
