"""The admin's operator actions in a real headless Chromium, against a real
ASGI server, on tasks that really ran.

A bare uvicorn server with a database of its own (as test_admin_browser.py);
tasks are submitted over HTTP with the tenant's key and run by the worker's
own code (``execute_task`` in ``manage.py shell``), one left queued. An
operator, signed in through the login form and holding only the permissions
these pages ask for: pauses the tenant from the tenant list and sees its next
submission refused (403 tenant_paused), then resumes it; cancels the queued
task from the task list and the tenant reads it cancelled; opens the tenant's
usage report from its page, downloads the CSV and finds the tokens of the
tasks that ran in it. Each test saves a screenshot (docs/screenshots/admin-*.png)
for docs/operators.md. Skipped, with the reason, where Chromium or chromedriver
is missing.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.browser_support import (
    BROWSER_MARKS,
    WAIT,
    admin_messages,
    click_through,
    django,
    list_row,
    run_admin_action,
    save_screenshot,
    signed_in_browser,
    start_server,
)
from tests.e2e.conftest import isolated_platform_env
from tests.e2e.harness import stop_process

pytestmark = BROWSER_MARKS

OPERATOR = "ops-actions"
# Each prompt's words are its tokens with the echo adapter, in and out alike.
PROMPTS_RUN = ("alpha beta gamma", "delta epsilon", "zeta eta theta iota kappa")
PROMPT_QUEUED = "left in the queue"

# The operator: staff with the permissions of these pages, not a superuser.
SETUP = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # the admin's CSS and JS, served by WhiteNoise
from apps.tenants.services import create_tenant, issue_api_key

operator = get_user_model().objects.create_user({operator!r}, password={password!r}, is_staff=True)
operator.user_permissions.set(Permission.objects.filter(codename__in=[
    "view_tenant", "change_tenant", "view_task", "change_task", "view_budgetledger",
]))
acme = create_tenant("Acme Corp", "acme")
print(json.dumps({{"api_key": issue_api_key(acme, name="browser test").secret, "tenant_id": str(acme.pk)}}))
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
    api_key: str
    tenant_id: str
    queued_task: str
    submitted: list[str] = field(default_factory=list)  # every task of acme's, in order

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)

    def submit(self, prompt: str) -> httpx.Response:
        with self.api() as api:
            response = api.post("/api/v1/tasks", json={"model": "echo", "prompt": prompt})
        if response.status_code == 201:
            self.submitted.append(response.json()["id"])
        return response


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    with isolated_platform_env(tmp_path_factory.mktemp("admin-actions")) as env:
        password = secrets.token_urlsafe(16)
        setup = json.loads(django(env, SETUP.format(operator=OPERATOR, password=password)))
        server = start_server(env)
        try:
            platform = Platform(env=env, base_url=f"http://{env['HOST']}:{env['PORT']}", password=password,
                                api_key=setup["api_key"], tenant_id=setup["tenant_id"], queued_task="")
            for prompt in PROMPTS_RUN:
                assert platform.submit(prompt).status_code == 201
            ran = list(platform.submitted)
            assert json.loads(django(env, RUN.format(ids=ran))) == ["succeeded"] * len(ran)
            created = platform.submit(PROMPT_QUEUED)
            assert created.status_code == 201, created.text
            platform.queued_task = created.json()["id"]
            yield platform
        finally:
            stop_process(server)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(platform, downloads):
    with signed_in_browser(platform.base_url, OPERATOR, platform.password) as driver:
        # Files the pages send as attachments land here.
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver


def test_an_operator_pauses_a_tenant_and_its_next_submission_is_refused(browser, platform):
    browser.get(f"{platform.base_url}/admin/tenants/tenant/")

    run_admin_action(browser, "pause_tenants", "acme")

    assert "Paused: acme." in admin_messages(browser)
    active = list_row(browser, "acme").find_element(By.CSS_SELECTOR, "td.field-active img")
    assert active.get_attribute("alt") == "False"
    save_screenshot(browser, "admin-tenant-paused")
    refused = platform.submit("refused while paused")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "tenant_paused"
    with platform.api() as api:  # its reads still answer
        assert api.get(f"/api/v1/tasks/{platform.queued_task}").json()["status"] == "queued"

    run_admin_action(browser, "resume_tenants", "acme")

    assert "Resumed: acme." in admin_messages(browser)
    assert platform.submit("accepted once resumed").status_code == 201


def test_an_operator_cancels_a_queued_task(browser, platform):
    browser.get(f"{platform.base_url}/admin/tasks/task/?state__exact=queued")

    run_admin_action(browser, "cancel_tasks", platform.queued_task)

    assert f"Cancelled: {platform.queued_task}." in admin_messages(browser)
    save_screenshot(browser, "admin-task-cancelled")
    with platform.api() as api:
        task = api.get(f"/api/v1/tasks/{platform.queued_task}").json()
    assert (task["status"], task["error"]["code"]) == ("cancelled", "cancelled"), task


def test_an_operator_downloads_the_usage_csv_with_the_tasks_tokens(browser, platform, downloads):
    browser.get(f"{platform.base_url}/admin/tenants/tenant/{platform.tenant_id}/change/")
    click_through(browser, lambda: browser.find_element(By.CSS_SELECTOR, "a.usage-report-link"))
    assert "/usage/" in browser.current_url, browser.current_url
    save_screenshot(browser, "admin-usage-report")

    browser.find_element(By.ID, "usage-csv").click()

    today = datetime.now(UTC).date()
    # The default period: the 30 days up to today.
    wanted = downloads / f"usage-acme-{today.fromordinal(today.toordinal() - 29)}-{today}.csv"
    WebDriverWait(browser, WAIT).until(lambda _: wanted.exists() and wanted.stat().st_size > 0)
    rows = list(csv.DictReader(io.StringIO(wanted.read_text())))
    tokens = sum(len(prompt.split()) for prompt in PROMPTS_RUN)  # each task's, in and out (echo)
    assert rows == [{
        "day": today.isoformat(), "model": "echo", "tasks": str(len(platform.submitted)),
        "prompt_tokens": str(tokens), "completion_tokens": str(tokens),
        "cost": "",  # echo has no price set
    }]
