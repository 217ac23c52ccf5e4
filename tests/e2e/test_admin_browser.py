"""The operator admin in a real headless Chromium, against a real ASGI server.

An operator signs in through the login form, then, by clicking and reading the
rendered pages: drains and undrains a worker with the list's actions; edits a
tenant's plan (and is shown the error next to the field when a value is
invalid, with nothing saved); reads each model's queue (queued / running /
slots / estimated wait) in the model list; and opens a task without ever
being shown its prompt or output.

The server is a bare uvicorn process (``llmagentos.asgi:application``, the
ASGI server that run_platform supervises) with a database of its own, like
tests/e2e/test_workers.py, not the harness's whole ``run_platform``: that one
also starts a scheduler and a worker, which would run the queued tasks the
model list is checked against (and builds the tiny model first). Rows are
written through the service layer in ``manage.py shell`` (workers exactly as
``run_worker`` registers them) and tasks are submitted over HTTP with a
tenant's key; checks of what a save stored read the same database.

One server and one browser session serve the whole module (module-scoped
fixtures); each test starts from a page it loads itself. Skipped, with the
reason, where Chromium or chromedriver is missing (.ci/run installs them).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.browser_support import BROWSER_MARKS, CHROMEDRIVER, CHROMIUM, START_TIMEOUT, click_through
from tests.e2e.conftest import REPO_ROOT, isolated_platform_env
from tests.e2e.harness import stop_process, wait_for_readyz
from tests.integration.manage_cli import describe, shell

pytestmark = BROWSER_MARKS

OPERATOR = "ops-browser"
SECRET_PROMPT = "narwhal-juniper merger terms draft"
SECRET_WORDS = ("narwhal-juniper", "merger terms", "meta-quokka-5150", "client-ref-tapir-0977")
QUEUE_MODEL = "browser-echo"


@dataclass
class Platform:
    env: dict[str, str]
    base_url: str
    password: str
    secret_task_id: str
    plan_at_start: dict


def _django(env: dict[str, str], code: str) -> str:
    result = shell(code, env=env)
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


# The operator: staff with the permissions of the pages it uses, not a superuser.
SETUP = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # the admin's CSS and JS, served by WhiteNoise

from apps.catalog.models import LLMModel
from apps.tenants.services import change_tenant_plan, create_tenant, issue_api_key
from apps.workers.services import register_worker

operator = get_user_model().objects.create_user({operator!r}, password={password!r}, is_staff=True)
operator.user_permissions.set(Permission.objects.filter(codename__in=[
    "view_worker", "change_worker", "view_tenant", "view_plan", "change_plan", "view_llmmodel", "view_task",
]))

acme = create_tenant("Acme Corp", "acme")
change_tenant_plan(acme, {{"rpm": 100}})  # a plan of its own: "tenant:acme"
key = issue_api_key(acme, name="browser test").secret
LLMModel.objects.create(name={queue_model!r}, adapter="echo", is_public=True)

device = {{"gpus": [], "cpu_count": 8, "ram_total": None, "ram_available": None}}
for name in ("gpu-a", "gpu-b"):
    register_worker(name=name, host="gpu-host", pid=1, slots=4, device_info=device, model_names=["echo"])
register_worker(name="gpu-serve", host="gpu-host", pid=1, slots=2, device_info=device, model_names=[{queue_model!r}])
print(json.dumps({{"api_key": key}}))
"""

# Six tasks on the queue model: two finished (3 s each: the measured service
# time), two running, two still queued. The secret task runs for real (echo).
SHAPE_TASKS = """
from datetime import timedelta
from django.utils import timezone
from apps.tasks.models import Task, TaskState
from apps.runtime.execution import execute_task

now = timezone.now()
ids = {queue_ids!r}
Task.objects.filter(pk__in=ids[:2]).update(
    state=TaskState.SUCCEEDED, started_at=now - timedelta(seconds=3), finished_at=now)
Task.objects.filter(pk__in=ids[2:4]).update(state=TaskState.RUNNING, started_at=now)
execute_task({secret_id!r})
print(Task.objects.get(pk={secret_id!r}).state)
"""

PLAN_FIELDS = """
import json
from apps.tenants.models import Tenant
plan = Tenant.objects.select_related("plan").get(slug="acme").plan
print(json.dumps({f: getattr(plan, f) for f in ("name", "rpm", "max_running", "max_queued", "weight")}))
"""


def _start_server(env: dict[str, str]) -> subprocess.Popen:
    log = Path(env["DATA_DIR"]).parent / "server.log"
    with open(log, "ab") as stderr:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
             "--host", env["HOST"], "--port", env["PORT"], "--no-access-log"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    wait_for_readyz(f"http://{env['HOST']}:{env['PORT']}", process, lambda: log.read_text(errors="replace"),
                    START_TIMEOUT)
    return process


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    # The fake workers heartbeat once (at registration): keep them from showing as lost.
    with isolated_platform_env(tmp_path_factory.mktemp("admin-browser"), WORKER_LOST_SECONDS="3600") as env:
        password = secrets.token_urlsafe(16)
        setup = json.loads(_django(env, SETUP.format(operator=OPERATOR, password=password, queue_model=QUEUE_MODEL)))
        server = _start_server(env)
        try:
            base_url = f"http://{env['HOST']}:{env['PORT']}"
            with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {setup['api_key']}"},
                              timeout=30) as api:

                def submit(body: dict) -> str:
                    created = api.post("/api/v1/tasks", json=body)
                    assert created.status_code == 201, created.text
                    return created.json()["id"]

                queue_ids = [submit({"model": QUEUE_MODEL, "prompt": f"queued {i}"}) for i in range(6)]
                secret_id = submit({"model": "echo", "prompt": SECRET_PROMPT,
                                    "metadata": {"note": "meta-quokka-5150"}, "client_ref": "client-ref-tapir-0977"})
                state, plan = _django(
                    env, SHAPE_TASKS.format(queue_ids=queue_ids, secret_id=secret_id) + PLAN_FIELDS
                ).splitlines()
                assert state == "succeeded"
                # The tenant reads its output: the admin had something to leak.
                assert api.get(f"/api/v1/tasks/{secret_id}").json()["output"] == SECRET_PROMPT
            yield Platform(env=env, base_url=base_url, password=password, secret_task_id=secret_id,
                           plan_at_start=json.loads(plan))
        finally:
            stop_process(server)


@pytest.fixture(scope="module")
def browser(platform):
    """One headless Chromium for the module, signed in as the operator through the login form."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        # Not signed in: the admin sends the operator to its login form.
        driver.get(f"{platform.base_url}/admin/")
        assert "/admin/login/" in driver.current_url, driver.current_url
        driver.find_element(By.ID, "id_username").send_keys(OPERATOR)
        driver.find_element(By.ID, "id_password").send_keys(platform.password)
        click_through(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]"))
        assert driver.current_url.rstrip("/").endswith("/admin"), driver.current_url
        assert OPERATOR.upper() in driver.find_element(By.ID, "user-tools").text.upper()
        yield driver
    finally:
        driver.quit()


def _open(driver, platform: Platform, path: str) -> None:
    driver.get(f"{platform.base_url}{path}")


def _messages(driver) -> list[str]:
    return [m.text for m in driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]


def _row(driver, name: str):
    """The change list's row whose first (link) column reads ``name``."""
    return driver.find_element(
        By.XPATH, f"//table[@id='result_list']/tbody/tr[th/a[normalize-space()='{name}']]"
    )


def _cell(driver, name: str, column: str) -> str:
    return _row(driver, name).find_element(By.CSS_SELECTOR, f"td.field-{column}").text.strip()


def _run_action(driver, action: str, *names: str) -> None:
    """Tick the rows' checkboxes, choose the action, press Go."""
    for name in names:
        checkbox = _row(driver, name).find_element(By.CSS_SELECTOR, "input[name=_selected_action]")
        checkbox.click()
        assert checkbox.is_selected()
    Select(driver.find_element(By.NAME, "action")).select_by_value(action)
    click_through(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#changelist-form .actions button[name=index]"))


def _db(platform: Platform, code: str):
    return json.loads(_django(platform.env, code))


def test_an_operator_drains_and_undrains_a_worker(browser, platform):
    _open(browser, platform, "/admin/workers/worker/")
    assert {_cell(browser, name, "status") for name in ("gpu-a", "gpu-b", "gpu-serve")} == {"active"}

    _run_action(browser, "drain_workers", "gpu-a")

    assert "Drain requested for: gpu-a." in _messages(browser)
    # No worker process is behind the row to confirm the drain ("drained"): it stays "draining".
    assert _cell(browser, "gpu-a", "status") == "draining"
    assert _cell(browser, "gpu-b", "status") == "active"
    browser.refresh()  # what the list shows is what was stored
    assert _cell(browser, "gpu-a", "status") == "draining"

    _run_action(browser, "undrain_workers", "gpu-a")

    assert "Undrained: gpu-a." in _messages(browser)
    assert _cell(browser, "gpu-a", "status") == "active"


def test_an_operator_edits_a_tenants_plan_and_is_shown_invalid_values(browser, platform):
    before = platform.plan_at_start
    assert before["name"] == "tenant:acme" and before["rpm"] == 100

    # The tenant list names the tenant's plan; the plan list leads to its form.
    _open(browser, platform, "/admin/tenants/tenant/")
    assert _cell(browser, "acme", "plan") == "tenant:acme"
    _open(browser, platform, "/admin/tenants/plan/")
    click_through(browser, lambda: _row(browser, "tenant:acme").find_element(By.CSS_SELECTOR, "th a"))
    assert "/change/" in browser.current_url

    def fill(field: str, value: str) -> None:
        box = browser.find_element(By.ID, f"id_{field}")
        box.clear()
        box.send_keys(value)

    fill("rpm", "42")
    fill("max_running", "3")
    click_through(browser, lambda: browser.find_element(By.NAME, "_save"))

    assert any("was changed successfully" in m for m in _messages(browser)), _messages(browser)
    assert (_cell(browser, "tenant:acme", "rpm"), _cell(browser, "tenant:acme", "max_running")) == ("42", "3")
    saved = _db(platform, PLAN_FIELDS)
    assert (saved["rpm"], saved["max_running"]) == (42, 3)
    assert {k: saved[k] for k in ("max_queued", "weight")} == {k: before[k] for k in ("max_queued", "weight")}

    # Invalid: a negative rate and a zero weight, beside a valid change that must not be saved either.
    click_through(browser, lambda: _row(browser, "tenant:acme").find_element(By.CSS_SELECTOR, "th a"))
    fill("rpm", "-5")
    fill("weight", "0")
    fill("max_queued", "7")
    click_through(browser, lambda: browser.find_element(By.NAME, "_save"))

    assert "/change/" in browser.current_url  # the form again, not the list
    assert "Please correct the errors below." in browser.find_element(By.CSS_SELECTOR, ".errornote").text
    # Each error is shown in its field's own row, beside that field.
    rpm_row = browser.find_element(By.CSS_SELECTOR, ".form-row.field-rpm")
    assert "greater than or equal to 0" in rpm_row.find_element(By.CSS_SELECTOR, ".errorlist").text
    assert rpm_row.find_element(By.ID, "id_rpm").get_attribute("value") == "-5"
    weight_row = browser.find_element(By.CSS_SELECTOR, ".form-row.field-weight")
    assert "greater than or equal to 0.001" in weight_row.find_element(By.CSS_SELECTOR, ".errorlist").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".form-row.field-max_queued .errorlist")
    assert _db(platform, PLAN_FIELDS) == saved  # nothing changed


def test_the_model_list_shows_each_models_queue(browser, platform):
    _open(browser, platform, "/admin/catalog/llmmodel/")

    # Two queued, two running, one worker with two slots serving it, two finished
    # tasks of 3 s each: a task submitted now has 3 ahead of it beyond the free
    # slots (none), at 2 completions per 3 s: 3 x 3 s / 2 = 4.5 s.
    shown = {column: _cell(browser, QUEUE_MODEL, column) for column in ("queued", "running", "slots", "estimated_wait")}
    assert shown == {"queued": "2", "running": "2", "slots": "2", "estimated_wait": "4.5 s"}
    # echo: its one task has finished, nothing waits or runs.
    assert _cell(browser, "echo", "queued") == "0"
    assert _cell(browser, "echo", "running") == "0"


def test_a_tasks_admin_pages_never_show_its_prompt_or_output(browser, platform):
    _open(browser, platform, "/admin/tasks/task/")
    listing = browser.page_source
    click_through(browser, lambda: _row(browser, platform.secret_task_id).find_element(By.CSS_SELECTOR, "th a"))

    assert f"/admin/tasks/task/{platform.secret_task_id}/change/" in browser.current_url
    body = browser.find_element(By.TAG_NAME, "body").text
    assert platform.secret_task_id in body and "succeeded" in body  # the page is about this task...
    assert "Encrypted payload sizes" in body
    for page in (listing, browser.page_source, body):
        for secret in SECRET_WORDS:  # ...without its prompt, output (the echo of it), metadata or client ref
            assert secret not in page
