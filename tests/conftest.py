"""Fixed actors for every test: two tenants (acme, globex) and an outsider.

The suite runs twice (scripts/test_all.sh): on SQLite + SqliteHuey and on
PostgreSQL + Redis; nothing here depends on which.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
from django.conf import settings
from django.test import Client

from apps.scheduler.queues import ModelQueue, created_queues, model_queue
from apps.tenants.models import Tenant
from apps.tenants.services import create_tenant, issue_api_key
from tests.ops_support import make_operator

# Property tests run the same examples on every run and machine: examples drawn from a
# seed derived from each test, no example database carried between runs, no deadline
# (a slow shared CI box is not a failure), and a failure prints the blob that replays
# it (@reproduce_failure). Loaded here, before the test modules are imported, so their
# own @settings(...) inherit it. HYPOTHESIS_PROFILE=default gives random exploration.
hypothesis.settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=100, deadline=None, print_blob=True
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any


class ApiClient:
    """A tenant's view of the REST API (the full Django stack, middleware included)."""

    def __init__(self, key: str | None, *, remote_addr: str = "127.0.0.1") -> None:
        extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        extra["REMOTE_ADDR"] = remote_addr  # the caller's address, as the server sees it
        self._client = Client(**extra)

    def _wrap(self, response) -> ApiResponse:
        content = response.content
        is_json = response.get("Content-Type", "").startswith("application/json")
        body = json.loads(content) if content and is_json else content
        return ApiResponse(response.status_code, dict(response.headers), body)

    def get(self, path: str, params: dict | None = None, **headers) -> ApiResponse:
        return self._wrap(self._client.get(path, params or {}, headers=headers))

    def post(self, path: str, body: Any = None, **headers) -> ApiResponse:
        data = json.dumps(body) if body is not None and not isinstance(body, (str, bytes)) else (body or "")
        return self._wrap(self._client.post(path, data, content_type="application/json", headers=headers))

    def delete(self, path: str, **headers) -> ApiResponse:
        return self._wrap(self._client.delete(path, headers=headers))

    def patch(self, path: str, body: Any = None, **headers) -> ApiResponse:
        return self._wrap(self._client.patch(path, json.dumps(body), content_type="application/json", headers=headers))

    def send(self, method: str, path: str, data: bytes, content_type: str, **headers) -> ApiResponse:
        """A request whose body goes as given: a malformed or non-JSON body."""
        return self._wrap(self._client.generic(method.upper(), path, data, content_type=content_type, headers=headers))


@pytest.fixture
def acme(db) -> Tenant:
    return create_tenant("Acme Corp", "acme")


@pytest.fixture
def globex(db) -> Tenant:
    return create_tenant("Globex", "globex")


@pytest.fixture
def acme_key(acme) -> str:
    return issue_api_key(acme, name="acme test key").secret


@pytest.fixture
def globex_key(globex) -> str:
    return issue_api_key(globex, name="globex test key").secret


@pytest.fixture
def acme_api(acme_key) -> ApiClient:
    return ApiClient(acme_key)


@pytest.fixture
def globex_api(globex_key) -> ApiClient:
    return ApiClient(globex_key)


@pytest.fixture
def outsider_api(db) -> ApiClient:
    """Someone with no key at all."""
    return ApiClient(None)


@pytest.fixture
def staff_client(db) -> Client:
    """An operator signed in to the admin (a staff user's session, holding every
    permission the operator API asks for), CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_operator("operator"))
    return client


@pytest.fixture
def model_queues():
    """Get a model's task queue by model name, empty when first got and after the test."""
    used: list[ModelQueue] = []

    def get(model_name: str) -> ModelQueue:
        queue = model_queue(model_name)
        if queue not in used:
            queue.huey.flush()
            used.append(queue)
        return queue

    yield get
    for queue in used:
        queue.huey.flush()


@pytest.fixture
def dispatcher(db):
    """The scheduler's dispatcher, with one live 4-slot worker serving every model:
    ``dispatcher.run_once()`` hands ready tasks to their models' queues."""
    from apps.scheduler.dispatcher import Dispatcher
    from apps.workers.services import register_worker

    register_worker(name="test-worker", host="test-host", pid=1, slots=4, device_info={})
    return Dispatcher()


@pytest.fixture(scope="session", autouse=True)
def _empty_queue_after_session():
    """Leave Huey's storage (SQLite file or Redis) as we found it."""
    yield
    try:
        settings.HUEY.flush()
        for queue in created_queues():
            queue.huey.flush()
    except Exception:  # the queue may be down in a test about exactly that
        pass


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    """The tiny local Llama (manage.py build_tiny_model), built once per test session."""
    from apps.catalog.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model"))


@pytest.fixture(params=["database", "redis"])
def rate_limit_backend(request, settings) -> str:
    """Run a rate-limit test on each back end: the database's conditional UPDATE,
    and Redis's Lua script (where the suite has a Redis: the distributed run)."""
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("no Redis in this run (REDIS_URL unset); the distributed suite covers it")
        settings.RATE_LIMIT_REDIS_URL = settings.REDIS_URL
    else:
        settings.RATE_LIMIT_REDIS_URL = ""
    return request.param
