"""While the database or Redis cannot be reached, the API answers 503 with
Retry-After in the Contracts' error shape, naming which one is down — never a
500, and within the connection bounds (settings: DB_CONNECT_TIMEOUT_SECONDS,
DB_POOL_TIMEOUT_SECONDS, REDIS_CLIENT_OPTIONS) — and /readyz says which.

"Down" is real: a port nothing listens on (PostgreSQL, Redis), a database file
that cannot be opened (SQLite). The database case runs in a subprocess whose
settings point there; the test process's own database stays up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from huey import PriorityRedisHuey

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]
# Well-formed, so it is looked up in the database (a malformed key is refused before).
SOME_KEY = "lla_0123456789ab_" + "k" * 43

_PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_AUTHORIZATION="Bearer " + KEY)
answers = {}
for method, path in (("get", "/api/v1/tasks"), ("post", "/api/v1/tasks"), ("get", "/v1/models"), ("get", "/readyz")):
    body = {"model": "echo", "prompt": "hi"} if method == "post" else None
    response = getattr(client, method)(path, body, content_type="application/json") if body else client.get(path)
    answers[f"{method} {path}"] = [response.status_code, response.get("Retry-After"), response.json()]
print(json.dumps(answers))
"""


def _database_down_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="llmagentos.settings", PYTHONPATH=str(REPO_ROOT))
    env["DATA_DIR"] = str(tmp_path)
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
        env["DB_POOL_TIMEOUT_SECONDS"] = "1"  # the bound a request waits; short for the test
    else:
        (tmp_path / "llmagentos.sqlite3").mkdir()  # a database file that cannot be opened
    return env


def _assert_unavailable(answer: list, dependency: str) -> None:
    status, retry_after, body = answer
    assert status == 503, answer
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0, answer
    assert body["error"]["type"] == "service_unavailable", answer
    assert body["error"]["code"] == "dependency_unavailable", answer
    assert body["error"]["message"] == f"the {dependency} is unavailable; retry later", answer


def test_an_unreachable_database_is_503_on_every_api_and_named_by_readyz(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", f"KEY = {SOME_KEY!r}\n{_PROBE}"], cwd=REPO_ROOT, env=_database_down_env(tmp_path),
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])

    for route in ("get /api/v1/tasks", "post /api/v1/tasks", "get /v1/models"):
        _assert_unavailable(answers[route], "database")
    status, retry_after, body = answers["get /readyz"]
    assert (status, body) == (503, {"status": "unavailable", "checks": {"database": False, "queue": True}})
    assert retry_after is not None and retry_after.isdigit()


def test_an_unreachable_redis_is_503_naming_the_queue(acme_api, settings):
    # Rate limits are kept in Redis (the default in distributed mode): a submission needs it.
    settings.RATE_LIMIT_REDIS_URL = f"redis://127.0.0.1:{free_port()}/6"

    response = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "hi"})

    _assert_unavailable([response.status, response.headers.get("Retry-After"), response.body], "queue")


def test_readyz_names_an_unreachable_queue(settings):
    settings.HUEY = PriorityRedisHuey("readyz-probe", url=f"redis://127.0.0.1:{free_port()}/6")

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": True, "queue": False}}
    assert response["Retry-After"].isdigit()
