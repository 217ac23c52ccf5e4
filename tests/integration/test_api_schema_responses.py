"""Every endpoint of /api/schema/ answers as the schema says.

Real requests through the full Django stack (ApiClient, the fixed actors);
each response's status must be one its operation declares, its body must be
valid against the schema declared for that status (objects closed: a field
the schema does not name fails, as does a missing or mistyped one), and the
headers declared required must be there and well-formed. The success of every
operation, then the refusals every operation can make (no or a revoked
credential, forbidden, not found, the database down, a bad body) and the
particular ones (invalid input, budget, conflicts, rate limits).

An operation of the schema with no example request here fails
``test_every_operation_answers_its_success_as_described``, so a new endpoint
cannot slip in undescribed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection
from django.test import Client
from jsonschema import Draft202012Validator, FormatChecker

from apps.runtime.execution import execute_task
from apps.security.services import issue_operator_token, revoke_operator_token
from apps.tenants.models import Membership, Role, Tenant
from apps.tenants.services import change_tenant_plan, issue_api_key, revoke_api_key
from apps.workers import services as worker_services
from apps.workers.models import Worker
from tests.conftest import ApiClient, ApiResponse
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
WORKFLOWS = "/api/v1/workflows"
KEYS = "/api/v1/keys"
MEMBERS = "/api/v1/members"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# --- the schema, as JSON Schema --------------------------------------------------------------


@cache
def served_schema() -> dict[str, Any]:
    """/api/schema/ as clients get it (generated once per test process)."""
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def _shape(operation: tuple[str, str]) -> tuple[str, str]:
    """An operation with its path parameters unnamed: "/tasks/{id}" and "/tasks/{task_id}" are one route."""
    method, path = operation
    return method, re.sub(r"\{[^}]+\}", "{}", path)


def schema_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation of the schema by its shape."""
    return {
        _shape((method, path)): operation
        for path, item in served_schema()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's schema dialect → JSON Schema: ``nullable`` becomes a null
    alternative, and an object that names its properties admits no others."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: {name: _json_schema(sub) for name, sub in value.items()} if key == "properties" else _json_schema(value)
        for key, value in node.items()
        if key != "nullable"
    }
    if "properties" in converted:
        converted.setdefault("additionalProperties", False)
    if node.get("nullable"):
        return {"anyOf": [{"type": "null"}, converted]}
    return converted


FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339(value: object) -> bool:
    # jsonschema checks date-time only with an optional package; RFC 3339 needs the offset.
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@cache
def _components() -> dict[str, Any]:
    return {"schemas": {name: _json_schema(s) for name, s in served_schema()["components"]["schemas"].items()}}


def _validator(openapi_schema: dict[str, Any]) -> Draft202012Validator:
    # The components ride along in the root, so "#/components/schemas/X" resolves.
    return Draft202012Validator({**_json_schema(openapi_schema), "components": _components()}, format_checker=FORMATS)


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def check(method: str, template: str, path: str, response: ApiResponse) -> ApiResponse:
    """Fail unless ``response`` is one the schema declares for ``method template``."""
    name = f"{method.upper()} {template}"
    assert _template_regex(template).match(path.split("?")[0]), (name, path)
    declared = schema_operations()[_shape((method, template))]["responses"]
    assert str(response.status) in declared, (
        f"{name} answered {response.status}, which its schema does not declare ({sorted(declared)}): {response.body}"
    )
    described = declared[str(response.status)]
    headers = {key.lower(): value for key, value in response.headers.items()}
    if "content" in described:
        assert headers.get("content-type", "").startswith("application/json"), (name, response.status, headers)
        errors = sorted(
            _validator(described["content"]["application/json"]["schema"]).iter_errors(response.body), key=str
        )
        assert not errors, f"{name} {response.status}: body not as described:\n" + "\n".join(
            f"- at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
        ) + f"\nbody: {response.body}"
    else:
        assert response.body in (b"", ""), f"{name} {response.status} has a body it does not describe: {response.body}"
    for header, spec in described.get("headers", {}).items():
        value = headers.get(header.lower())
        if value is None:
            assert not spec.get("required"), f"{name} {response.status} lacks the header {header}"
            continue
        if spec["schema"].get("type") == "integer":
            assert re.fullmatch(r"\d+", value), f"{name} {response.status}: {header}: {value!r} is not an integer"
        if "enum" in spec["schema"]:
            assert value in spec["schema"]["enum"], (name, header, value)
    return response


# --- the actors and one example request per operation ----------------------------------------


@dataclass
class World:
    tenant: Tenant
    api: ApiClient  # the tenant's key, every scope
    operator: ApiClient  # a staff user's operator token
    operator_user: Any
    worker: Worker
    finished_task: str = ""  # an id: a task that ran (output, usage)

    def submit(self, prompt: str = "one two three") -> str:
        created = self.api.post(TASKS, {"model": "echo", "prompt": prompt})
        assert created.status == 201, created.body
        return created.body["id"]

    def submit_workflow(self) -> str:
        created = self.api.post(WORKFLOWS, WORKFLOW)
        assert created.status == 201, created.body
        return created.body["id"]

    def spare_key(self) -> str:
        return str(issue_api_key(self.tenant, name="spare").api_key.id)

    def user(self, username: str) -> str:
        get_user_model().objects.get_or_create(username=username)
        return username

    def member(self, username: str = "member") -> str:
        user, _ = get_user_model().objects.get_or_create(username=username)
        Membership.objects.get_or_create(tenant=self.tenant, user=user, defaults={"role": Role.MEMBER})
        return username


WORKFLOW = {
    "nodes": [
        {"name": "draft", "model": "echo", "prompt": "write a draft"},
        {"name": "review", "model": "echo", "prompt": "review {{draft.output}}", "depends_on": ["draft"]},
    ]
}


@pytest.fixture
def world(acme, acme_api) -> World:
    operator_user = make_operator()
    worker = worker_services.register_worker(
        name="gpu-1", host="gpu-host-1", pid=1, slots=4,
        device_info={
            "gpus": [{"index": 0, "name": "Test GPU", "memory_total": 8 << 30, "memory_free": 6 << 30,
                      "utilization": None}],
            "cpu_count": 2, "ram_total": 4 << 30, "ram_available": 2 << 30,
        },
    )
    world = World(
        tenant=acme,
        api=acme_api,
        operator=ApiClient(issue_operator_token(operator_user, name="schema tests").secret),
        operator_user=operator_user,
        worker=worker,
    )
    world.finished_task = world.submit("the quick brown fox")
    world.member()  # so that the members list has one
    execute_task(uuid.UUID(world.finished_task))
    return world


@dataclass(frozen=True)
class Call:
    api: ApiClient
    method: str
    path: str
    body: Any = None

    def send(self, api: ApiClient | None = None) -> ApiResponse:
        api = api or self.api
        if self.method == "get":
            return api.get(self.path)
        if self.method == "delete":
            return api.delete(self.path)
        return getattr(api, self.method)(self.path, self.body)


Example = Callable[[World], Call]

# The success request of each operation, by (method, path as the schema writes it).
EXAMPLES: dict[tuple[str, str], Example] = {
    ("get", TASKS): lambda w: Call(w.api, "get", TASKS),
    ("post", TASKS): lambda w: Call(w.api, "post", TASKS, {
        "model": "echo", "messages": [{"role": "user", "content": "hi", "name": "ann"}],
        "stop": ["."], "metadata": {"ticket": "42"}, "client_ref": "r-1", "priority": "batch",
    }),
    ("get", TASKS + "/{id}"): lambda w: Call(w.api, "get", f"{TASKS}/{w.finished_task}"),
    ("delete", TASKS + "/{id}"): lambda w: Call(w.api, "delete", f"{TASKS}/{w.submit()}"),
    ("post", TASKS + "/{id}/cancel"): lambda w: Call(w.api, "post", f"{TASKS}/{w.submit()}/cancel"),
    ("post", TASKS + "/{id}/stream-token"): lambda w: Call(w.api, "post", f"{TASKS}/{w.submit()}/stream-token"),
    ("post", WORKFLOWS): lambda w: Call(w.api, "post", WORKFLOWS, WORKFLOW),
    ("get", WORKFLOWS + "/{id}"): lambda w: Call(w.api, "get", f"{WORKFLOWS}/{w.submit_workflow()}"),
    ("post", WORKFLOWS + "/{id}/cancel"): lambda w: Call(w.api, "post", f"{WORKFLOWS}/{w.submit_workflow()}/cancel"),
    ("get", "/api/v1/models"): lambda w: Call(w.api, "get", "/api/v1/models"),
    ("get", "/api/v1/usage"): lambda w: Call(w.api, "get", "/api/v1/usage"),
    ("get", "/api/v1/usage/report"): lambda w: Call(w.api, "get", "/api/v1/usage/report"),
    ("get", KEYS): lambda w: Call(w.api, "get", KEYS),
    ("post", KEYS): lambda w: Call(
        w.api, "post", KEYS, {"name": "ci", "scopes": ["tasks:read"], "expires_at": "2999-01-01T00:00:00Z"}
    ),
    ("get", KEYS + "/{key_id}"): lambda w: Call(w.api, "get", f"{KEYS}/{w.spare_key()}"),
    ("delete", KEYS + "/{key_id}"): lambda w: Call(w.api, "delete", f"{KEYS}/{w.spare_key()}"),
    ("get", MEMBERS): lambda w: Call(w.api, "get", MEMBERS),
    ("post", MEMBERS): lambda w: Call(w.api, "post", MEMBERS, {"username": w.user("newcomer"), "role": "viewer"}),
    ("get", MEMBERS + "/{username}"): lambda w: Call(w.api, "get", f"{MEMBERS}/{w.member()}"),
    ("patch", MEMBERS + "/{username}"): lambda w: Call(w.api, "patch", f"{MEMBERS}/{w.member()}", {"role": "admin"}),
    ("delete", MEMBERS + "/{username}"): lambda w: Call(w.api, "delete", f"{MEMBERS}/{w.member()}"),
    ("get", "/api/v1/webhooks/settings"): lambda w: Call(w.api, "get", "/api/v1/webhooks/settings"),
    ("patch", "/api/v1/webhooks/settings"): lambda w: Call(
        w.api, "patch", "/api/v1/webhooks/settings", {"url": "https://hooks.example.com/llm"}
    ),
    ("post", "/api/v1/webhooks/secret"): lambda w: Call(w.api, "post", "/api/v1/webhooks/secret"),
    ("get", "/api/v1/webhooks/deliveries"): lambda w: Call(w.api, "get", "/api/v1/webhooks/deliveries"),
    ("get", "/api/v1/ops/workers"): lambda w: Call(w.operator, "get", "/api/v1/ops/workers"),
    ("get", "/api/v1/ops/models"): lambda w: Call(w.operator, "get", "/api/v1/ops/models"),
    ("post", "/api/v1/ops/models"): lambda w: Call(w.operator, "post", "/api/v1/ops/models", {
        "name": "echo-added", "adapter": "echo", "adapter_config": {"words_per_second": 0},
        "description": "registered by an operator", "tenants": [w.tenant.slug],
    }),
    ("patch", "/api/v1/ops/models/{name}"): lambda w: Call(
        w.operator, "patch", "/api/v1/ops/models/echo", {"description": "changed", "is_public": True}
    ),
    ("post", "/api/v1/ops/workers/{worker_id}/drain"): lambda w: Call(
        w.operator, "post", f"/api/v1/ops/workers/{w.worker.id}/drain"
    ),
    ("post", "/api/v1/ops/workers/{worker_id}/undrain"): lambda w: Call(
        w.operator, "post", f"/api/v1/ops/workers/{w.worker.id}/undrain"
    ),
    ("get", "/api/v1/ops/tenants/{slug}/plan"): lambda w: Call(
        w.operator, "get", f"/api/v1/ops/tenants/{w.tenant.slug}/plan"
    ),
    ("patch", "/api/v1/ops/tenants/{slug}/plan"): lambda w: Call(
        w.operator, "patch", f"/api/v1/ops/tenants/{w.tenant.slug}/plan", {"rpm": 100, "max_priority": "normal"}
    ),
    ("get", "/api/v1/ops/tenants/{slug}/usage"): lambda w: Call(
        w.operator, "get", f"/api/v1/ops/tenants/{w.tenant.slug}/usage"
    ),
}
OPERATIONS = sorted(EXAMPLES)
SUBMISSIONS = {("post", TASKS), ("post", WORKFLOWS)}


def _id(operation: tuple[str, str]) -> str:
    return f"{operation[0].upper()} {operation[1]}"


def _exercise(world: World, operation: tuple[str, str], api: ApiClient | None = None) -> ApiResponse:
    call = EXAMPLES[operation](world)
    return check(*operation, call.path, call.send(api))


def _security(operation: tuple[str, str]) -> str:
    """The one scheme the operation advertises."""
    (requirement,) = schema_operations()[_shape(operation)]["security"]
    (scheme,) = requirement
    return scheme


# --- success ------------------------------------------------------------------------------------


def test_every_operation_answers_its_success_as_described(world):
    examples = {_shape(operation): operation for operation in EXAMPLES}
    operations = set(schema_operations())
    without_example = sorted(operations - set(examples))
    assert not without_example, f"operations of /api/schema/ no test here exercises: {without_example}"
    stale = sorted(examples[shape] for shape in set(examples) - operations)
    assert not stale, f"examples of operations the schema lacks: {stale}"
    answered = {}
    for shape in sorted(operations):
        operation = examples[shape]
        response = _exercise(world, operation)
        assert 200 <= response.status < 300, (_id(operation), response.status, response.body)
        answered[operation] = response.status
    # Each success was validated above; these are the bodies' particular cases.
    assert answered[("delete", TASKS + "/{id}")] == 204
    assert answered[("post", TASKS)] == answered[("post", WORKFLOWS)] == 201


def test_a_finished_tasks_output_and_usage_are_as_described(world):
    response = _exercise(world, ("get", TASKS + "/{id}"))
    assert response.body["status"] == "succeeded", response.body
    assert response.body["output"] and response.body["usage"]["total_tokens"] > 0  # the shapes were checked


def test_an_idempotent_replay_is_as_described(world):
    key = {"Idempotency-Key": "order-17"}
    first = check("post", TASKS, TASKS, world.api.post(TASKS, {"model": "echo", "prompt": "hi"}, **key))
    replay = check("post", TASKS, TASKS, world.api.post(TASKS, {"model": "echo", "prompt": "hi"}, **key))
    assert (first.status, replay.status) == (201, 201)
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.body["id"] == first.body["id"]


# --- refusals every operation can make ----------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS, ids=_id)
def test_without_credentials(world, operation):
    response = _exercise(world, operation, ApiClient(None))
    # Operator routes try the admin session first, which has no challenge: DRF then answers 403.
    assert response.status == {"ApiKey": 401, "OperatorToken": 403}[_security(operation)], response.body


@pytest.mark.parametrize("operation", OPERATIONS, ids=_id)
def test_with_a_revoked_credential(world, operation):
    if _security(operation) == "ApiKey":
        issued = issue_api_key(world.tenant, name="revoked")
        revoke_api_key(issued.api_key)
    else:
        issued = issue_operator_token(world.operator_user, name="revoked")
        revoke_operator_token(issued.token)
    response = _exercise(world, operation, ApiClient(issued.secret))
    assert response.status == 401, response.body


@pytest.mark.parametrize("operation", OPERATIONS, ids=_id)
def test_forbidden(world, operation):
    if operation in SUBMISSIONS:  # refused to a paused tenant, whose other calls still answer
        call = EXAMPLES[operation](world)
        Tenant.objects.filter(pk=world.tenant.pk).update(active=False)
        response = check(*operation, call.path, call.send())
        assert (response.status, response.body["error"]["code"]) == (403, "tenant_paused"), response.body
    elif _security(operation) == "ApiKey":
        call = EXAMPLES[operation](world)
        scopeless = ApiClient(issue_api_key(world.tenant, name="no scopes", scopes=[]).secret)
        response = check(*operation, call.path, call.send(scopeless))
        assert response.status == 403, response.body
    else:
        response = _exercise(world, operation, world.api)  # a tenant's key on an operator route
        assert (response.status, response.body["error"]["code"]) == (403, "staff_only"), response.body


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if "{" in op[1]], ids=_id)
def test_not_found(world, operation):
    method, template = operation
    path = re.sub(r"\{([^}]+)\}", lambda m: "no-such-tenant" if m[1] == "slug" else str(uuid.uuid4()), template)
    call = EXAMPLES[operation](world)
    response = check(method, template, path, Call(call.api, method, path, call.body).send())
    assert response.status == 404, response.body


def _database_down(execute, sql, params, many, context):
    raise OperationalError("connection to the database was lost (injected)")


@pytest.mark.parametrize("operation", OPERATIONS, ids=_id)
def test_database_down(world, operation):
    call = EXAMPLES[operation](world)
    with connection.execute_wrapper(_database_down):
        response = check(*operation, call.path, call.send())
    assert response.status == 503, response.body  # check() saw its Retry-After


def _has_body(operation: tuple[str, str]) -> bool:
    return "requestBody" in schema_operations()[_shape(operation)]


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op[0] in ("post", "patch")], ids=_id)
def test_a_body_that_cannot_be_read(world, operation, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024  # so "too large" needs no megabytes
    call = EXAMPLES[operation](world)

    def send(data: bytes, content_type: str = "application/json") -> int:
        return check(*operation, call.path, call.api.send(call.method, call.path, data, content_type)).status

    statuses = (send(b'{"model": '), send(b"model=echo", "text/plain"), send(b'{"p": "' + b"x" * 2048 + b'"}'))
    if _has_body(operation):
        assert statuses == (400, 415, 413)
    else:  # the body is never read: a bodiless action ignores it
        assert all(200 <= status < 300 for status in statuses), statuses


# --- particular refusals -------------------------------------------------------------------------


INVALID: dict[tuple[str, str], Callable[[World], Call]] = {
    ("get", TASKS): lambda w: Call(w.api, "get", f"{TASKS}?status=lost"),
    ("post", TASKS): lambda w: Call(w.api, "post", TASKS, {"model": "echo"}),
    ("post", WORKFLOWS): lambda w: Call(w.api, "post", WORKFLOWS, {"nodes": [
        {"name": "a", "model": "echo", "prompt": "x", "depends_on": ["b"]},
        {"name": "b", "model": "echo", "prompt": "y", "depends_on": ["a"]},
    ]}),
    ("get", "/api/v1/ops/workers"): lambda w: Call(w.operator, "get", "/api/v1/ops/workers?model=no-such-model"),
    ("post", "/api/v1/ops/models"): lambda w: Call(
        w.operator, "post", "/api/v1/ops/models", {"name": "echo-bad", "adapter": "echo",
                                                    "adapter_config": {"words_per_second": -1}}
    ),
    ("patch", "/api/v1/ops/models/{name}"): lambda w: Call(
        w.operator, "patch", "/api/v1/ops/models/echo", {"adapter": "no-such-adapter"}
    ),
    ("patch", "/api/v1/ops/tenants/{slug}/plan"): lambda w: Call(
        w.operator, "patch", f"/api/v1/ops/tenants/{w.tenant.slug}/plan", {"rpm": -1}
    ),
    ("post", KEYS): lambda w: Call(w.api, "post", KEYS, {"name": "ci", "scopes": ["tasks:everything"]}),
    ("patch", "/api/v1/webhooks/settings"): lambda w: Call(
        w.api, "patch", "/api/v1/webhooks/settings", {"url": "not a url"}
    ),
    ("get", "/api/v1/webhooks/deliveries"): lambda w: Call(w.api, "get", "/api/v1/webhooks/deliveries?status=lost"),
    ("post", MEMBERS): lambda w: Call(w.api, "post", MEMBERS, {"username": w.user("newcomer"), "role": "boss"}),
    ("patch", MEMBERS + "/{username}"): lambda w: Call(w.api, "patch", f"{MEMBERS}/{w.member()}", {"role": "boss"}),
}


@pytest.mark.parametrize("operation", sorted(INVALID), ids=_id)
def test_invalid_input(world, operation):
    call = INVALID[operation](world)
    response = check(*operation, call.path, call.send())
    assert response.status == 400 and response.body["error"]["param"], response.body


ADMISSIONS = [("post", TASKS), ("post", WORKFLOWS)]


@pytest.mark.parametrize("operation", ADMISSIONS, ids=_id)
def test_over_the_budget(world, operation):
    change_tenant_plan(world.tenant, {"budget_tokens": 1})
    response = _exercise(world, operation)
    assert response.status == 402, response.body


@pytest.mark.parametrize("operation", ADMISSIONS, ids=_id)
def test_over_the_rate_limit(world, operation, rate_limit_backend):
    # A zero limit admits nothing, whatever the buckets' clocks say (so no timing in the test).
    change_tenant_plan(world.tenant, {"rpm": 0})
    response = _exercise(world, operation)
    assert (response.status, response.body["error"]["code"]) == (429, "rate_limited"), response.body
    assert response.headers["X-RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("operation", ADMISSIONS, ids=_id)
def test_over_the_queue_cap(world, operation):
    change_tenant_plan(world.tenant, {"max_queued": 0})
    response = _exercise(world, operation)
    assert (response.status, response.body["error"]["code"]) == (429, "queue_full"), response.body


def test_an_idempotency_key_reused_with_another_body(world):
    key = {"Idempotency-Key": "order-18"}
    assert world.api.post(TASKS, {"model": "echo", "prompt": "one"}, **key).status == 201
    response = check("post", TASKS, TASKS, world.api.post(TASKS, {"model": "echo", "prompt": "two"}, **key))
    assert (response.status, response.body["error"]["code"]) == (409, "idempotency_key_reused"), response.body


@pytest.mark.parametrize(
    "operation",
    [("post", "/api/v1/ops/workers/{worker_id}/drain"), ("post", "/api/v1/ops/workers/{worker_id}/undrain")],
    ids=_id,
)
def test_a_stopped_worker(world, operation):
    worker_services.mark_stopped(world.worker.id)
    response = _exercise(world, operation)
    assert (response.status, response.body["error"]["code"]) == (409, "worker_stopped"), response.body


def test_a_model_name_in_use(world):
    path = "/api/v1/ops/models"
    response = check("post", path, path, world.operator.post(path, {"name": "echo", "adapter": "echo"}))
    assert (response.status, response.body["error"]["code"]) == (409, "model_exists"), response.body
