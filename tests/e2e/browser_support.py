"""Operator pages in a real headless Chromium against a real uvicorn server.

The pieces every browser test needs (the approach of test_admin_browser.py):
finding Chromium and chromedriver (and the skip, with its reason, where they
are missing), a bare ASGI server process on an isolated platform
environment, one browser signed in through the admin's login form, and a
click that waits for the next page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.conftest import REPO_ROOT
from tests.e2e.harness import stop_process, wait_for_readyz
from tests.integration.manage_cli import describe, shell

START_TIMEOUT = 60.0
WAIT = 20.0  # seconds a page may take to load or change on a loaded machine
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"


def _find(variable: str, name: str, fallback: str) -> str | None:
    """$variable if set (a path), else ``name`` on the PATH, else ``fallback``; None if not executable."""
    path = os.environ.get(variable) or shutil.which(name) or fallback
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


CHROMIUM = _find("CHROMIUM", "chromium", "/usr/bin/chromium")
CHROMEDRIVER = _find("CHROMEDRIVER", "chromedriver", "/usr/bin/chromedriver")
MISSING = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]

# pytestmark for a browser test module: e2e, and skipped with the reason where the browser is missing.
BROWSER_MARKS = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"browser tests need headless Chromium: {' and '.join(MISSING)} not found "
        "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
    ),
]


def django(env: dict[str, str], code: str) -> str:
    """Run ``code`` in ``manage.py shell`` on the platform's database; its stdout."""
    result = shell(code, env=env)
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


def start_server(env: dict[str, str]) -> subprocess.Popen:
    """uvicorn serving ``llmagentos.asgi:application`` on env's HOST and PORT, ready (/readyz)."""
    log = Path(env["DATA_DIR"]).parent / "server.log"
    with open(log, "ab") as stderr:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
             "--host", env["HOST"], "--port", env["PORT"], "--no-access-log"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        wait_for_readyz(f"http://{env['HOST']}:{env['PORT']}", process, lambda: log.read_text(errors="replace"),
                        START_TIMEOUT)
    except BaseException:
        stop_process(process)
        raise
    return process


@contextlib.contextmanager
def signed_in_browser(base_url: str, username: str, password: str) -> Iterator[webdriver.Chrome]:
    """A headless Chromium signed in to the admin through its login form."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        driver.get(f"{base_url}/admin/")
        assert "/admin/login/" in driver.current_url, driver.current_url
        driver.find_element(By.ID, "id_username").send_keys(username)
        driver.find_element(By.ID, "id_password").send_keys(password)
        click_through(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]"))
        assert driver.current_url.rstrip("/").endswith("/admin"), driver.current_url
        yield driver
    finally:
        driver.quit()


def click_through(driver, find: Callable[[], WebElement]) -> None:
    """Click a link or a form's submit button (``find`` locates it); return once the next page has loaded.

    Found afresh for each try: Chromium may renumber a page's nodes after the
    element was found, which is no failure of the page under test; a click
    that still cannot land after three tries is.
    """
    page = driver.find_element(By.TAG_NAME, "html")
    for attempt in range(3):
        try:
            find().click()
            break
        except (StaleElementReferenceException, WebDriverException):
            if attempt == 2:
                raise
    WebDriverWait(driver, WAIT).until(_left(page))
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _left(page: WebElement) -> Callable[[object], bool]:
    """``expected_conditions.staleness_of(page)``, also when ChromeDriver answers for a
    node of the page being left with an unknown error ("Node with given id does not
    belong to the document") rather than a stale reference: that page is gone too."""

    def predicate(_driver: object) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in (exc.msg or ""):
                return True
            raise
        return False

    return predicate


def save_screenshot(driver, name: str) -> Path:
    """The whole page (the window grown to its height) as docs/screenshots/<name>.png, for the docs."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    for _ in range(3):  # a taller window may lay the page out taller still (responsive charts)
        content = driver.execute_script(
            "return Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight,"
            " document.getElementById('container').getBoundingClientRect().bottom + window.scrollY))"
        )
        chrome = driver.get_window_size()["height"] - driver.execute_script("return window.innerHeight")
        wanted = min(max(content + chrome, 600), 6000)
        if wanted == driver.get_window_size()["height"]:
            break
        driver.set_window_size(width, wanted)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    return path


def list_row(driver, name: str) -> WebElement:
    """The admin change list's row whose first (link) column reads ``name``."""
    return driver.find_element(By.XPATH, f"//table[@id='result_list']/tbody/tr[th/a[normalize-space()='{name}']]")


def run_admin_action(driver, action: str, *names: str) -> None:
    """On an admin change list: tick the rows named, choose the action, press Go."""
    for name in names:
        checkbox = list_row(driver, name).find_element(By.CSS_SELECTOR, "input[name=_selected_action]")
        checkbox.click()
        assert checkbox.is_selected()
    Select(driver.find_element(By.NAME, "action")).select_by_value(action)
    click_through(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#changelist-form .actions button[name=index]"))


def admin_messages(driver) -> list[str]:
    return [message.text for message in driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]
