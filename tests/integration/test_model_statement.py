"""The submission's model read (apps.catalog.statements.visible_model, a cursor
statement) answers exactly what the ORM's ``LLMModel.objects.visible_to`` query
does, for every kind of model, for two tenants, on both databases: public,
granted to one tenant or the other, not granted, disabled, a router, and each
model's versions by label."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog import statements
from apps.catalog.models import LLMModel, ModelVersion
from apps.catalog.routing import ROUTER_ADAPTER
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def _values(row) -> list:
    return None if row is None else [getattr(row, field.attname) for field in type(row)._meta.concrete_fields]


@pytest.fixture
def catalog_rows(acme: Tenant, globex: Tenant, tmp_path: Path) -> list[str]:
    """Models of every visibility, some with versions (one current); their names."""
    kinds = {
        "open": {"is_public": True},
        "open-off": {"is_public": True, "enabled": False},
        "acme-only": {"grants": [acme]},
        "globex-only": {"grants": [globex]},
        "both": {"grants": [acme, globex]},
        "granted-off": {"grants": [acme], "enabled": False},
        "granted-and-public": {"is_public": True, "grants": [globex]},
        "nobody": {},
    }
    for name, kind in kinds.items():
        model = LLMModel.objects.create(
            name=name, adapter="echo", is_public=kind.get("is_public", False), enabled=kind.get("enabled", True),
            description="a model", adapter_config={"delay": 0},
        )
        model.allowed_tenants.add(*kind.get("grants", []))
        if name in ("open", "acme-only", "globex-only"):
            for label in ("v1", "v2"):
                (tmp_path / name / label).mkdir(parents=True)
                catalog.create_version(model, label, str(tmp_path / name / label), make_current=label == "v2")
    LLMModel.objects.create(
        name="router", adapter=ROUTER_ADAPTER, is_public=True, adapter_config={"candidates": ["open"]}
    )
    return [*kinds, "router", "echo", "missing"]


@pytest.mark.parametrize("tenant_name", ["acme", "globex"])
def test_the_statement_sees_what_visible_to_sees(catalog_rows, tenant_name, request):
    tenant = request.getfixturevalue(tenant_name)
    seen = 0
    for name in catalog_rows:
        expected = LLMModel.objects.visible_to(tenant).select_related("current_version").filter(name=name).first()
        found = statements.visible_model(tenant, name)

        assert _values(found and found[0]) == _values(expected), name
        if expected is None:
            continue
        seen += 1
        model, pinned = found
        assert pinned is None
        assert _values(model.current_version) == _values(expected.current_version), name
        for label in ("v1", "v2", "v3", ""):
            wanted = ModelVersion.objects.filter(model=expected, version=label).first()
            model, pinned = statements.visible_model(tenant, name, label)
            assert _values(pinned) == _values(wanted), (name, label)
            if pinned is not None:
                assert pinned.spec == f"{name}@{label}"
    assert seen >= 4  # the test saw models, not only refusals


def test_a_target_is_one_statement_with_its_versions_loaded(acme, catalog_rows, django_assert_num_queries):
    with django_assert_num_queries(1):
        pinned = catalog.resolve_target_for_tenant(acme, "acme-only@v1")
        assert pinned.version.spec == "acme-only@v1"
        assert pinned.model.current_version.version == "v2"
    with django_assert_num_queries(1):
        assert catalog.resolve_target_for_tenant(acme, "globex-only@v1") is None
    with django_assert_num_queries(1):
        current = catalog.resolve_target_for_tenant(acme, "open")
        assert current.version.spec == "open@v2"
