"""manage.py rotate_master_keys: re-wrap every tenant data key with the primary master key.

Put the new key first in MASTER_KEYS (keep the old ones after it), run this,
then drop the old keys. Prints the number of tenants re-wrapped.

``--reencrypt SLUG`` instead gives that tenant a fresh data key and
re-encrypts everything it stored, while the platform keeps serving
(apps.tenants.data_keys); killed, it resumes where it stopped when run again.
A progress bar goes to stderr; prints the number of values re-encrypted.
"""

from typing import TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.security.crypto import DecryptionError
from apps.tenants.data_keys import DEFAULT_BATCH_SIZE, RekeyError, reencrypt_tenant, units_to_walk
from apps.tenants.models import Tenant
from apps.tenants.services import rewrap_all_data_keys


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Re-wrap all tenant data keys with the first key of MASTER_KEYS, or re-encrypt one tenant's data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reencrypt", metavar="TENANT_SLUG",
            help="give this tenant a new data key and re-encrypt all its data with it (resumable)",
        )
        parser.add_argument(
            "--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE,
            help=f"rows per transaction with --reencrypt (default {DEFAULT_BATCH_SIZE})",
        )

    def handle(self, *args, **options) -> None:
        if options["reencrypt"]:
            self._reencrypt(options["reencrypt"], options["batch_size"])
            return
        try:
            count = rewrap_all_data_keys()
        except DecryptionError as exc:
            raise CommandError(
                f"{exc}; keep the old master key(s) in MASTER_KEYS, after the new one, until this has run "
                "(nothing was re-wrapped)"
            ) from exc
        self.stdout.write(str(count))

    def _reencrypt(self, slug: str, batch_size: int) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant with the slug {slug!r}")
        # tqdm writes carriage returns: to the raw stream, not Django's line-ending wrapper.
        raw_stderr = cast(TextIO, self.stderr._out)
        with tqdm(total=units_to_walk(tenant), unit="row", desc=f"re-encrypting {slug}", file=raw_stderr) as bar:
            try:
                count = reencrypt_tenant(tenant, batch_size=batch_size, walked=bar.update)
            except (DecryptionError, RekeyError) as exc:
                raise CommandError(f"{exc} (run the command again to resume)") from exc
        self.stdout.write(str(count))
