"""`make run`'s supervisor (standard library only, no Django) writes its own lines
in the platform's format: run_platform hands it settings.LOGGING."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys

from django.conf import settings

from apps.runtime.supervisor import Child
from tests.integration.manage_cli import REPO_ROOT

# A guard against a hung test, not a measurement.
STOP_LIMIT_SECONDS = 30


def test_the_supervisor_logs_json_lines_as_its_children_do():
    logging_config = copy.deepcopy(settings.LOGGING)
    logging_config["handlers"]["stderr"]["formatter"] = "json"  # as LOG_FORMAT=json gives it
    child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    spec = json.dumps({"logging": logging_config, "children": [child.to_json()]})
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "apps.runtime.supervisor", spec],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = supervisor.stderr.readline()  # written once the child is started
    finally:
        supervisor.send_signal(signal.SIGTERM)
        _, rest = supervisor.communicate(timeout=STOP_LIMIT_SECONDS)

    records = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert [record["message"] for record in records] == [
        f"starting sleeper: {sys.executable} -c import time; time.sleep(60)", "stopping sleeper",
    ]
    assert {(record["logger"], record["process"], record["pid"]) for record in records} == {
        ("apps.runtime.supervisor", "supervisor", supervisor.pid)
    }
