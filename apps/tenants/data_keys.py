"""A tenant's data key over its life: replacing it while the platform serves
(re-encrypting everything stored under it), and destroying it when the tenant
is deleted (crypto-shredding).

Where the ciphertext is: the apps above this one own the encrypted columns
(tasks: input, metadata, output, workflow nodes; streaming: the stream log, in
the database or in Redis), and this app may not import them (docs/layout.md).
So each of them registers its *encrypted stores* on ``encrypted_stores`` in
its ``AppConfig.ready()``, the way lifecycle hooks are registered
(apps.core.hooks): a store walks the tenant's ciphertext in batches and
deletes it. The command (``rotate_master_keys --reencrypt``) stays beside
master-key rotation, where operators look for it, and sees every store, those
of apps added later included, without knowing them; a registry is also what
deletion needs, in the reverse order (the rows of the apps above point at
the rows below).

Replacing a key, live (``reencrypt_tenant``):

1. ``begin_rekey``: a fresh data key goes in front; the old one is kept,
   wrapped, as *retired*. From then on, every process that reads the tenant
   row encrypts with the new key and decrypts with either (the cipher cache is
   keyed by the wrapped key material, so no process keeps serving the old key
   once it reads the row again).
2. Each store is walked in batches, in primary-key order, each batch in a
   short transaction of its own that also records how far it got
   (``Tenant.rekey_progress``): a run that is killed resumes from the last
   committed batch. A value is rewritten only with a conditional UPDATE (the
   row still holds the ciphertext that was read): a value the platform wrote
   meanwhile is read again and never overwritten with stale ciphertext. Values
   already under the new key are left alone.
3. A process that loaded the tenant before step 1 (a task that was already
   running) may still write under the retired key after its row was walked.
   So the stores are swept again from the start until a sweep finds nothing
   under the retired key, and only then is the retired key dropped. (What
   such a process writes after that last sweep would be lost with the key:
   a task loaded before the rotation began and still running after the
   whole walk and sweep. Workers reading the tenant row afresh for each
   write would close that window; they hold it for a task's run today.)

Blind indexes (Idempotency-Key and client_ref digests) are HMACs: they cannot
be re-encrypted, only recomputed from the plaintext, which is gone. So their
key is separate from the data key: ``begin_rekey`` pins the key the digests
were made with (derived from the first data key) as a wrapped key of its own,
and every digest stays valid, unchanged, across any number of rotations.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import models, transaction

from apps.core.errors import Conflict
from apps.security.crypto import (
    TenantCipher,
    WrappedKeys,
    destroyed_key,
    forget_cached_keys,
    rekeyed,
)
from apps.tenants import audit
from apps.tenants.models import AuditAction, TaskCharge, Tenant

# A JSON value naming the last row a batch walked (stored in Tenant.rekey_progress).
Cursor = str | int | None

DEFAULT_BATCH_SIZE = 500
# Sweeps after the walk before giving up: each one finds only what was written
# under the retired key since the one before, by processes that loaded the
# tenant before the rotation began.
MAX_SWEEPS = 5
# Tries per row when the platform keeps writing it between our read and our UPDATE.
ROW_ATTEMPTS = 5


class RekeyError(Conflict):
    """A re-encryption could not finish; running the command again resumes it."""

    default_code = "rekey_incomplete"


@dataclass(frozen=True)
class Batch:
    cursor: Cursor  # the last row walked (where the next batch starts)
    walked: int  # rows (or streams) looked at
    reencrypted: int  # values rewritten under the new key
    done: bool  # nothing after ``cursor``


class EncryptedStore(Protocol):
    """Somewhere an app above keeps ciphertext under a tenant's data key."""

    @property
    def name(self) -> str:
        """Unique; the key of its progress in Tenant.rekey_progress."""
        ...

    def count(self, tenant: Tenant) -> int:
        """How many units (rows, streams) ``reencrypt`` walks: the progress bar's total."""
        ...

    def reencrypt(self, tenant: Tenant, cipher: TenantCipher, after: Cursor, limit: int) -> Batch:
        """Re-encrypt, with ``cipher.reencrypt``, every value not yet under the primary
        key, in up to ``limit`` units after ``after`` (None: from the start)."""
        ...

    def purge(self, tenant: Tenant) -> None:
        """Delete everything the store holds of ``tenant``."""
        ...


class StoreRegistry:
    """The encrypted stores, in registration order (apps' ready() order: bottom up).
    Registration is by name, so registering again replaces (as apps.core.hooks.Hook)."""

    def __init__(self) -> None:
        self._stores: dict[str, EncryptedStore] = {}

    def register(self, store: EncryptedStore) -> None:
        self._stores[store.name] = store

    def __iter__(self) -> Iterator[EncryptedStore]:
        return iter(list(self._stores.values()))


encrypted_stores = StoreRegistry()


def _as_cursor(value: Any) -> Cursor:
    return str(value) if isinstance(value, uuid.UUID) else value


def walk(rows: models.QuerySet, after: Cursor, limit: int, *fields: str) -> tuple[list[tuple[Any, ...]], Cursor, bool]:
    """Up to ``limit`` rows after ``after`` in primary-key order, as (pk, *fields);
    with the cursor of the last one and whether the walk is done."""
    ordered = rows.order_by("pk")
    if after is not None:
        ordered = ordered.filter(pk__gt=after)
    found = list(ordered.values_list("pk", *fields)[:limit])
    cursor = _as_cursor(found[-1][0]) if found else after
    return found, cursor, len(found) < limit


def reencrypt_row(model: type[models.Model], pk: Any, values: dict[str, Any], cipher: TenantCipher) -> int:
    """Rewrite the row's ``values`` (column → ciphertext as read) not under the primary
    key; returns how many were rewritten. Conditional: a column the platform changed
    since it was read is read again, never overwritten."""
    manager = model._default_manager
    for _ in range(ROW_ATTEMPTS):
        stale = {column: bytes(value) for column, value in values.items()
                 if value is not None and not cipher.is_current(value)}
        if not stale:
            return 0
        rewritten = {column: cipher.reencrypt(value) for column, value in stale.items()}
        if manager.filter(pk=pk, **stale).update(**rewritten):
            return len(stale)
        reread = manager.filter(pk=pk).values(*stale).first()
        if reread is None:
            return 0  # deleted meanwhile
        values = reread
    return 0  # still being written: the sweep comes back to it


@dataclass(frozen=True)
class EncryptedColumns:
    """An EncryptedStore of ciphertext columns of a model's rows."""

    name: str
    rows: Callable[[Tenant], models.QuerySet]  # the tenant's rows
    columns: tuple[str, ...]

    def count(self, tenant: Tenant) -> int:
        return self.rows(tenant).count()

    def reencrypt(self, tenant: Tenant, cipher: TenantCipher, after: Cursor, limit: int) -> Batch:
        rows = self.rows(tenant)
        found, cursor, done = walk(rows, after, limit, *self.columns)
        changed = sum(
            reencrypt_row(rows.model, pk, dict(zip(self.columns, values, strict=True)), cipher)
            for pk, *values in found
        )
        return Batch(cursor, len(found), changed, done)

    def purge(self, tenant: Tenant) -> None:
        self.rows(tenant).delete()


# --- Replacing a tenant's data key ------------------------------------------------------


def _locked(tenant_id: uuid.UUID) -> Tenant:
    # FOR NO KEY UPDATE (PostgreSQL): a task inserted meanwhile takes a KEY SHARE
    # lock on its tenant, which this does not block. (SQLite: a no-op; its
    # writers are serialized anyway.)
    return Tenant.objects.select_for_update(no_key=True).get(pk=tenant_id)


def begin_rekey(tenant: Tenant) -> bool:
    """Put a fresh data key in front of ``tenant``'s, unless a re-encryption is
    already in progress (then it resumes). True if a new key was made."""
    with transaction.atomic():
        locked = _locked(tenant.pk)
        if locked.wrapped_retired_keys is not None:
            return False
        keys = rekeyed(WrappedKeys(bytes(locked.wrapped_data_key), None, _bytes_or_none(locked.wrapped_index_key)))
        Tenant.objects.filter(pk=tenant.pk).update(
            wrapped_data_key=keys.data, wrapped_retired_keys=keys.retired, wrapped_index_key=keys.index,
            rekey_progress={},
        )
        audit.record(AuditAction.DATA_KEY_REPLACED, tenant=locked, target=f"tenant {locked.slug} data key")
    return True


def _bytes_or_none(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)


def _step(tenant_id: uuid.UUID, store: EncryptedStore, limit: int) -> Batch | None:
    """One batch of the walk, committed with its progress; None once the store is done."""
    with transaction.atomic():
        tenant = _locked(tenant_id)
        if tenant.wrapped_retired_keys is None:
            raise RekeyError(f"tenant {tenant.slug!r}: no re-encryption in progress")
        mark = tenant.rekey_progress.get(store.name)
        if mark is True:
            return None
        batch = store.reencrypt(tenant, tenant.cipher, mark, limit)
        progress = {**tenant.rekey_progress, store.name: True if batch.done else batch.cursor}
        Tenant.objects.filter(pk=tenant_id).update(rekey_progress=progress)
    return batch


def _sweep(tenant_id: uuid.UUID, store: EncryptedStore, limit: int) -> int:
    """Walk ``store`` again from the start; returns the values found under the retired key."""
    found = 0
    cursor: Cursor = None
    while True:
        with transaction.atomic():
            tenant = _locked(tenant_id)
            batch = store.reencrypt(tenant, tenant.cipher, cursor, limit)
        found += batch.reencrypted
        cursor = batch.cursor
        if batch.done:
            return found


def _finish(tenant_id: uuid.UUID) -> None:
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant_id).update(wrapped_retired_keys=None, rekey_progress={})
    # The retired key leaves this process's memory too. (Another process keeps
    # its cipher of the old key material only until its cache evicts it: a row
    # read from now on never asks for it.)
    forget_cached_keys()


def units_to_walk(tenant: Tenant) -> int:
    return sum(store.count(tenant) for store in encrypted_stores)


def reencrypt_tenant(
    tenant: Tenant, *, batch_size: int = DEFAULT_BATCH_SIZE, walked: Callable[[int], object] | None = None
) -> int:
    """Move all of ``tenant``'s data to a fresh data key, then drop the old one;
    returns how many values were re-encrypted. Resumes a run that was interrupted.
    ``walked`` is told how many units each batch covered (a progress bar)."""
    begin_rekey(tenant)
    total = 0
    for store in encrypted_stores:
        while (batch := _step(tenant.pk, store, batch_size)) is not None:
            total += batch.reencrypted
            if walked is not None:
                walked(batch.walked)
    for _ in range(MAX_SWEEPS):
        late = sum(_sweep(tenant.pk, store, batch_size) for store in encrypted_stores)
        total += late
        if late == 0:
            _finish(tenant.pk)
            return total
    raise RekeyError(
        f"tenant {tenant.slug!r}: values keep being written under the retired key; "
        "run the command again once the tenant's running tasks have ended"
    )


# --- Crypto-shredding -------------------------------------------------------------------


def delete_tenant(tenant: Tenant) -> None:
    """Delete ``tenant`` and everything it stored, keys first (crypto-shredding).

    Step one destroys the tenant's wrapped keys and commits on its own: from
    then on nothing in the database can decrypt the tenant's ciphertext, even
    if deleting the rows (step two, possibly long) fails halfway, and even in
    copies of the rows made elsewhere (replicas, exports). Backups taken
    earlier still hold the wrapped key: those are shredded too once the master
    key that wrapped it is retired (``rotate_master_keys``).

    Every store the apps above registered is purged, top app first; then the
    tenant row, with what cascades from it. Durable transactions: a caller's
    transaction would make the destruction commit only with everything else.
    """
    with transaction.atomic(durable=True):
        Tenant.objects.filter(pk=tenant.pk).update(
            wrapped_data_key=destroyed_key, wrapped_retired_keys=None, wrapped_index_key=None, rekey_progress={}
        )
    # The unwrapped key must not outlive the row in this process either.
    forget_cached_keys()
    tenant.wrapped_data_key, tenant.wrapped_retired_keys, tenant.wrapped_index_key = destroyed_key, None, None
    with transaction.atomic(durable=True):
        for store in reversed(list(encrypted_stores)):
            store.purge(tenant)
        audit.record(
            AuditAction.TENANT_DELETED, tenant=tenant, target=f"tenant {tenant.slug}",
            changes={"name": [tenant.name, None]},
        )
        # Charges first: a ledger protects its charges, and both go with the tenant.
        TaskCharge.objects.filter(tenant=tenant).delete()
        tenant.delete()
