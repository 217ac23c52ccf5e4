"""Audit events are only ever added: changing or deleting one through the ORM is
refused on every database, the admin offers neither, and on PostgreSQL the
database itself refuses UPDATE and DELETE on the table, whatever the client."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from apps.tenants import audit
from apps.tenants.models import AuditAction, AuditEvent, AuditLogIsAppendOnly
from tests.audit_support import signed_in_operator

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(acme) -> AuditEvent:
    return audit.record(AuditAction.TENANT_PAUSED, tenant=acme, target="tenant acme", changes={"active": [True, False]})


def _unchanged(event: AuditEvent) -> None:
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.target, stored.changes) == ("tenant_paused", "tenant acme", {"active": [True, False]})


def test_the_orm_refuses_to_change_or_delete_an_event(event):
    event.target = "something else"
    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(target="rewritten")
    # bulk_update's own transaction is spoiled by the refusal: a savepoint keeps the test's.
    with pytest.raises(AuditLogIsAppendOnly), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["target"])
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()

    _unchanged(event)


def test_the_admin_shows_an_event_but_offers_no_change(event):
    client, _ = signed_in_operator()

    assert client.get(f"/admin/tenants/auditevent/{event.pk}/change/").status_code == 200  # a read-only view
    assert client.post(f"/admin/tenants/auditevent/{event.pk}/change/", {"target": "x"}).status_code == 403
    assert client.post(f"/admin/tenants/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/tenants/auditevent/add/").status_code == 403
    listing = client.get("/admin/tenants/auditevent/").content.decode()
    assert "delete_selected" not in listing

    _unchanged(event)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tenants_auditevent SET target = 'rewritten'",
        "DELETE FROM tenants_auditevent",
        "DELETE FROM tenants_auditevent WHERE id = -1",  # refused even when it would touch nothing
    ],
)
def test_postgresql_refuses_raw_updates_and_deletes(event, statement):
    if connection.vendor != "postgresql":
        pytest.skip("the trigger is PostgreSQL's; the distributed run (DATABASE_URL) covers it")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    _unchanged(event)
