"""Broken object-level authorisation, every route at once: tenant B (globex, with
a key holding every scope) calling each tenant route that takes an id, with each
method, on tenant A's (acme's) object answers exactly like it does for an id
that does not exist (404, the same error code); lists show B only its own
objects; A's objects are untouched afterwards; A's task stream refuses B's
key as it refuses an unknown task.

The routes come from the URL resolver, not from a list here: an endpoint added
later is exercised without editing this file, and one whose id this file does
not know how to make fails ``test_every_route_with_an_id_has_an_owner_factory``
until a factory is added to ``OWNED``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from apps.catalog.models import LLMModel
from apps.tasks.models import Task
from apps.tenants.models import ApiKey, Membership, Tenant
from apps.tenants.services import issue_api_key
from tests.conftest import ApiClient
from tests.integration.stream_support import handshake
from tests.member_support import member

pytestmark = pytest.mark.django_db

# Routes for tenants; the operator API (its own permission tests) and the admin are not.
NOT_TENANT_ROUTES = ("admin/", "api/v1/ops/")
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class Route:
    pattern: str  # "api/v1/tasks/<id:pk>/cancel"
    methods: tuple[str, ...]

    def path(self, value: str) -> str:
        return "/" + _PARAMETER.sub(value, self.pattern)

    def __str__(self) -> str:
        return self.pattern


def _walk(patterns: Sequence[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, object]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route)
        else:
            yield route, entry.callback


def _methods(callback: object) -> tuple[str, ...]:
    if (actions := getattr(callback, "actions", None)) is not None:  # a DRF viewset's route
        return tuple(method.upper() for method in actions)
    if (view_class := getattr(callback, "view_class", None)) is not None:
        return tuple(method for method in ALL_METHODS if hasattr(view_class, method.lower()))
    return ALL_METHODS  # a function view: every method (those it refuses must refuse alike)


def tenant_routes_with_an_id() -> list[Route]:
    return [
        Route(pattern, _methods(callback))
        for pattern, callback in _walk(get_resolver().url_patterns)
        if _PARAMETER.search(pattern) and not pattern.startswith(NOT_TENANT_ROUTES)
    ]


ROUTES = tenant_routes_with_an_id()


# --- acme's objects, one kind per route family, and an id of the same kind that exists nowhere ---


def _acme_task(acme: Tenant) -> str:
    created = ApiClient(issue_api_key(acme).secret).post("/api/v1/tasks", {"model": "echo", "prompt": "acme only"})
    assert created.status == 201, created.body
    return created.body["id"]


def _acme_workflow(acme: Tenant) -> str:
    created = ApiClient(issue_api_key(acme).secret).post(
        "/api/v1/workflows", {"nodes": [{"name": "a", "model": "echo", "prompt": "acme only"}]}
    )
    assert created.status == 201, created.body
    return created.body["id"]


def _acme_key(acme: Tenant) -> str:
    return str(issue_api_key(acme, name="acme's own").api_key.id)


def _acme_member(acme: Tenant) -> str:
    return member(acme, "acme-member", "member").user.username


def _acme_private_model(acme: Tenant) -> str:
    model = LLMModel.objects.create(name="acme-private", adapter="echo", is_public=False, enabled=True)
    model.allowed_tenants.add(acme)
    return model.name


@dataclass(frozen=True)
class Owned:
    make: Callable[[Tenant], str]
    nowhere: Callable[[], str]


def _new_uuid() -> str:
    return str(uuid.uuid4())


OWNED: dict[str, Owned] = {
    "api/v1/tasks/": Owned(_acme_task, _new_uuid),
    "api/v1/workflows/": Owned(_acme_workflow, _new_uuid),
    "api/v1/keys/": Owned(_acme_key, _new_uuid),
    "api/v1/members/": Owned(_acme_member, lambda: "nobody-anywhere"),
    "v1/models/": Owned(_acme_private_model, lambda: "no-such-model"),
}


def _owner(route: Route) -> Owned | None:
    return next((owned for prefix, owned in OWNED.items() if route.pattern.startswith(prefix)), None)


def test_every_route_with_an_id_has_an_owner_factory():
    unknown = [str(route) for route in ROUTES if _owner(route) is None]
    assert not unknown, f"add an OWNED factory for: {unknown}"
    assert len(ROUTES) >= 8  # the resolver walk found the routes (tasks, workflows, keys, members, models)


def _call(api: ApiClient, method: str, path: str):
    if method == "GET":
        return api.get(path)
    if method == "DELETE":
        return api.delete(path)
    if method == "PATCH":
        return api.patch(path, {"role": "viewer"})
    if method == "PUT":
        return api.send("PUT", path, b"{}", "application/json")
    return api.post(path, {})


def _answer(response) -> tuple[int, str | None]:
    error = response.body.get("error") if isinstance(response.body, dict) else None
    return response.status, (error or {}).get("code")


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_tenant_b_on_tenant_a_ids_answers_as_for_nothing(route, acme, globex_api):
    owned = _owner(route)
    assert owned is not None
    acme_id = owned.make(acme)
    for method in route.methods:
        foreign = _call(globex_api, method, route.path(acme_id))
        missing = _call(globex_api, method, route.path(owned.nowhere()))
        assert _answer(foreign) == _answer(missing), (method, foreign.body, missing.body)
        if method in route.methods and foreign.status != 405:
            assert foreign.status == 404, (method, foreign.body)


def test_acme_objects_are_intact_after_every_globex_attempt(acme, globex_api):
    made = {prefix: owned.make(acme) for prefix, owned in OWNED.items()}
    for route in ROUTES:
        owned_prefix = next(prefix for prefix in OWNED if route.pattern.startswith(prefix))
        for method in route.methods:
            _call(globex_api, method, route.path(made[owned_prefix]))

    task = Task.objects.get(pk=made["api/v1/tasks/"])
    assert (task.state, task.cancel_requested, task.erased_at) == ("queued", False, None)
    assert ApiKey.objects.get(pk=made["api/v1/keys/"]).revoked_at is None
    assert Membership.objects.get(tenant=acme, user__username=made["api/v1/members/"]).role == "member"


def test_lists_show_tenant_b_only_its_own_objects(acme, globex, globex_api):
    made = {prefix: owned.make(acme) for prefix, owned in OWNED.items()}
    globex_task = globex_api.post("/api/v1/tasks", {"model": "echo", "prompt": "globex"}).body["id"]

    assert [task["id"] for task in globex_api.get("/api/v1/tasks").body["results"]] == [globex_task]
    keys = globex_api.get("/api/v1/keys").body
    assert made["api/v1/keys/"] not in str(keys)
    assert {key["id"] for key in keys["data"]} == {str(key.id) for key in ApiKey.objects.filter(tenant=globex)}
    assert made["api/v1/members/"] not in str(globex_api.get("/api/v1/members").body)
    assert made["v1/models/"] not in str(globex_api.get("/v1/models").body)
    assert made["v1/models/"] not in str(globex_api.get("/api/v1/models").body)
    assert made["api/v1/tasks/"] not in str(globex_api.get("/api/v1/usage").body)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_tenant_b_cannot_open_tenant_a_task_stream(acme, globex_key):
    acme_task = _acme_task(acme)
    foreign = handshake(acme_task, key=globex_key)
    missing = handshake(_new_uuid(), key=globex_key)
    assert not foreign.accepted
    assert foreign == missing
