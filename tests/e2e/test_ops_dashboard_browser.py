"""The operations dashboard in a real headless Chromium, drawn from tasks that really ran.

A bare uvicorn server (its own database, as in test_admin_browser.py) serves
the admin and /ops/. Tasks are submitted over HTTP with tenants' keys and run
by the worker's own code (``execute_task`` in ``manage.py shell``): echo tasks
that succeed, one whose model cannot be loaded (it fails), some left queued.
Workers are registered as ``run_worker`` registers them, one with a GPU in
its heartbeat and one whose heartbeats stopped.

An operator signs in through the admin's login form, follows the admin
index's link to the dashboard and sees every chart drawn with data, the lost
worker and the tenant at its queue cap flagged, the failure with its reason
and never a prompt; the page then shows a task that finishes later without
being reloaded. The first test saves docs/screenshots/ops-dashboard.png for
docs/operators.md. Skipped, with the reason, where Chromium or chromedriver
is missing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.browser_support import (
    BROWSER_MARKS,
    WAIT,
    click_through,
    django,
    save_screenshot,
    signed_in_browser,
    start_server,
)
from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import stop_process

pytestmark = BROWSER_MARKS

OPERATOR = "ops-dashboard"
SECRET_PROMPT = "heron-basalt severance terms"
CHARTS = ("chart-queue", "chart-throughput", "chart-tokens", "chart-ttft", "chart-slots", "chart-gpus", "chart-tenants")
# How many snapshots the page has drawn (ops.js counts them).
UPDATES = "Number(document.getElementById('ops').dataset.updates)"
POLL_WAIT = 45.0  # the page polls every 5 s; a loaded machine may take a few rounds

SETUP = """
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", interactive=False, verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # Chart.js, the page's script, the admin's CSS

from apps.catalog.models import LLMModel
from apps.tenants.services import change_tenant_plan, create_tenant, issue_api_key
from apps.workers.models import Worker
from apps.workers.services import heartbeat, register_worker

get_user_model().objects.create_user({operator!r}, password={password!r}, is_staff=True)
acme = create_tenant("Acme Corp", "acme")
change_tenant_plan(acme, {{"max_queued": 3}})
globex = create_tenant("Globex", "globex")
LLMModel.objects.create(name="ops-broken", adapter="echo", adapter_config={{"words_per_second": -1}}, is_public=True)

gpu = {{"index": 0, "name": "H100", "memory_total": 80 * 2**30, "memory_free": 40 * 2**30, "utilization": 75}}
worker = register_worker(name="gpu-a", host="gpu-host", pid=1, slots=4, device_info={{"gpus": [gpu]}},
                         model_names=["echo"])
heartbeat(worker.pk, in_flight=1, idle=False, device_info={{"gpus": [gpu]}})
register_worker(name="gpu-gone", host="old-host", pid=2, slots=2, device_info={{}}, model_names=["echo"])
Worker.objects.filter(name="gpu-gone").update(last_heartbeat_at=timezone.now() - timedelta(hours=2))
print(json.dumps({{"acme": issue_api_key(acme).secret, "globex": issue_api_key(globex).secret}}))
"""

RUN = """
import json, uuid
from apps.runtime.execution import execute_task
from apps.tasks.models import Task
ids = {ids!r}
for task_id in ids:
    execute_task(uuid.UUID(task_id))
print(json.dumps(list(Task.objects.filter(pk__in=ids).values_list("state", flat=True))))
"""


@dataclass
class Platform:
    env: dict[str, str]
    base_url: str
    password: str
    later_task: str  # globex's task left queued, run by the last test


def _run(env: dict[str, str], *ids: str) -> list[str]:
    """Run these tasks through the worker's code; their states after."""
    return json.loads(django(env, RUN.format(ids=list(ids))))


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    # gpu-a heartbeats once (at setup): keep it alive; gpu-gone's last heartbeat is 2 hours old.
    with isolated_platform_env(tmp_path_factory.mktemp("ops-browser"), WORKER_LOST_SECONDS="3600") as env:
        password = secrets.token_urlsafe(16)
        keys = json.loads(django(env, SETUP.format(operator=OPERATOR, password=password)))
        server = start_server(env)
        try:
            base_url = f"http://{env['HOST']}:{env['PORT']}"

            def submit(tenant: str, model: str) -> str:
                with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {keys[tenant]}"},
                                  timeout=30) as api:
                    created = api.post("/api/v1/tasks", json={"model": model, "prompt": SECRET_PROMPT,
                                                              "max_tokens": 16})
                assert created.status_code == 201, created.text
                return created.json()["id"]

            ran = [submit("acme", "echo") for _ in range(3)] + [submit("globex", "echo")]
            assert _run(env, *ran) == ["succeeded"] * 4
            assert _run(env, submit("acme", "ops-broken")) == ["failed"]
            for _ in range(3):  # acme at its queue cap of 3: near its limits
                submit("acme", "echo")
            later = submit("globex", "echo")
            yield Platform(env=env, base_url=base_url, password=password, later_task=later)
        finally:
            stop_process(server)


@pytest.fixture(scope="module")
def browser(platform):
    with signed_in_browser(platform.base_url, OPERATOR, platform.password) as driver:
        yield driver


def _open_dashboard(browser, platform: Platform) -> None:
    """From the admin's index, by its link, to a dashboard whose charts are drawn."""
    browser.get(f"{platform.base_url}/admin/")
    click_through(browser, lambda: browser.find_element(By.LINK_TEXT, "Operations dashboard"))
    assert browser.current_url.endswith("/ops/"), browser.current_url
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script(f"return {UPDATES} > 0"))


def _chart_values(browser, chart_id: str) -> list[float] | None:
    """The numbers chart ``chart_id`` draws (every dataset), None when Chart.js drew no chart there."""
    return browser.execute_script(
        "const chart = Chart.getChart(arguments[0]);"
        "return chart ? chart.data.datasets.flatMap((set) => set.data) : null;",
        chart_id,
    )


@dataclass(frozen=True)
class Row:
    classes: str
    text: str
    cells: list[str]


def _row(browser, table: str, key: str) -> Row:
    """A table row as shown, read in one script: each poll replaces the rows, so
    elements found one by one may be gone by the time they are read."""
    found = browser.execute_script(
        "const tr = document.querySelector(`#${arguments[0]} tbody tr[data-key=\"${arguments[1]}\"]`);"
        "return tr && {classes: tr.className, text: tr.innerText,"
        " cells: Array.from(tr.cells, (td) => td.innerText.trim())};",
        table, key,
    )
    assert found is not None, f"no row {key!r} in #{table}"
    return Row(**found)


def _cells(browser, table: str, key: str) -> list[str]:
    return _row(browser, table, key).cells


def _queued_and_ended(browser, model: str) -> tuple[str, str]:
    cells = _cells(browser, "table-models", model)
    return cells[1], cells[4]


def test_an_operator_sees_every_chart_drawn_from_the_tasks_that_ran(browser, platform):
    _open_dashboard(browser, platform)

    for chart_id in CHARTS:
        values = _chart_values(browser, chart_id)
        assert values is not None, f"{chart_id} was not drawn"
        assert any(value and value > 0 for value in values), (chart_id, values)
        assert browser.find_element(By.ID, chart_id).is_displayed(), chart_id

    # echo: 4 queued (acme's 3, globex's 1), none running, 4 ended in the last hour.
    queued, running, _, ended, failed = _cells(browser, "table-models", "echo")[1:6]
    assert (queued, running, ended, failed) == ("4", "0", "4", "0")
    assert _cells(browser, "table-models", "ops-broken")[4:6] == ["1", "1"]

    gone = _row(browser, "table-workers", "gpu-gone")
    assert "ops-lost" in gone.classes and "lost" in gone.text
    alive = _cells(browser, "table-workers", "gpu-a")
    assert alive[2:4] == ["active", "1 / 4"] and "H100 #0: 40.0 GiB of 80.0 GiB, 75%" in alive[5]

    acme = _row(browser, "table-tenants", "acme")
    assert "ops-near" in acme.classes and "near limit" in acme.text
    assert "3 / 3 (100%)" in acme.text
    assert "near limit" not in _row(browser, "table-tenants", "globex").text

    failures = browser.find_elements(By.CSS_SELECTOR, "#table-failures tbody tr")
    assert len(failures) == 1
    assert "model_unavailable" in failures[0].text and "ops-broken" in failures[0].text
    assert SECRET_PROMPT not in browser.page_source and "heron-basalt" not in browser.page_source

    save_screenshot(browser, "ops-dashboard")


def test_the_dashboard_shows_a_task_that_finishes_later_without_reloading(browser, platform):
    _open_dashboard(browser, platform)
    browser.execute_script("window.opsPageMarker = 'the page loaded once';")
    updates = browser.execute_script(f"return {UPDATES}")
    assert _queued_and_ended(browser, "echo") == ("4", "4")

    assert _run(platform.env, platform.later_task) == ["succeeded"]

    WebDriverWait(browser, POLL_WAIT).until(
        lambda d: _queued_and_ended(d, "echo") == ("3", "5"), "the finished task never showed"
    )
    # The same page (its script's state survived): updated by polling, not reloaded.
    assert browser.execute_script("return window.opsPageMarker") == "the page loaded once"
    assert browser.execute_script(f"return {UPDATES}") > updates
    assert sum(_chart_values(browser, "chart-throughput")) == 6  # 5 echo tasks and the failed one
