"""The procedure of docs/operators.md, "Moving an embedded installation to
PostgreSQL", run as an operator runs it: an embedded installation (SQLite,
its own DATA_DIR and local keys) with a tenant, a key and a finished task is
dumped, loaded into a fresh database with the same keys, and the task still
decrypts and the key still authenticates there.

The target is the database the suite runs on: PostgreSQL when DATABASE_URL is
set (where the audit log's append-only trigger must be switched off for the
load), else a second SQLite database.
"""

from __future__ import annotations

import json

from tests.integration.manage_cli import base_env, describe, fresh_database, manage, shell

PROMPT = "the merger closes on friday"
DUMP_EXCLUDES = ["-e", "contenttypes", "-e", "auth.permission", "-e", "sessions"]
AUDIT_TRIGGER = "tenants_auditevent_append_only"

SEED = f"""
from apps.runtime.execution import execute_task
from apps.tasks.services import TaskRequest, submit_task
from apps.tenants.models import Tenant

tenant = Tenant.objects.get(slug="moving-co")
task = submit_task(tenant, None, TaskRequest(model="echo", prompt={PROMPT!r})).task
execute_task(task.id)
print(task.id)
"""

# Formatted with the task's id and the API key (repr'd).
READ_BACK = """
import json
from apps.tasks.models import Task
from apps.tasks.payloads import read_input
from apps.tenants.services import find_api_key

task = Task.objects.select_related("tenant").get(pk={task_id})
output = task.tenant.cipher.decrypt_json(bytes(task.output_ciphertext))
key = find_api_key({api_key})
print(json.dumps({{"state": task.state, "prompt": read_input(task)["prompt"], "output": output["text"],
                  "key_tenant": key.tenant.slug if key else None}}))
"""


def _ok(result) -> str:
    assert result.returncode == 0, describe(result)
    return result.stdout.strip()


def test_an_embedded_installation_moves_with_its_encrypted_tasks(tmp_path):
    # The embedded installation: SQLite and the local queue, whatever the suite runs on.
    source_dir = tmp_path / "embedded"
    source = base_env(source_dir, DATABASE_URL=None, REDIS_URL=None)
    _ok(manage("migrate", "--no-input", "-v", "0", env=source, timeout=300))
    assert _ok(manage("create_tenant", "Moving Co", env=source)) == "moving-co"
    api_key = _ok(manage("create_api_key", "moving-co", env=source))
    task_id = _ok(shell(SEED, env=source)).splitlines()[-1]
    dump = tmp_path / "llmagentos.json"
    _ok(manage("dumpdata", "--natural-foreign", "--natural-primary", *DUMP_EXCLUDES, "-o", str(dump), env=source))

    with fresh_database(tmp_path / "moved") as target:
        # The keys come along: without them nothing in the dump decrypts.
        target = {
            **target,
            "MASTER_KEYS": (source_dir / "master_keys").read_text().strip(),
            "SECRET_KEY": (source_dir / "secret_key").read_text().strip(),
        }
        _ok(manage("migrate", "--no-input", "-v", "0", env=target, timeout=300))
        _ok(manage("flush", "--no-input", env=target))  # the rows the migrations seeded come from the dump
        on_postgresql = bool(target.get("DATABASE_URL"))
        if on_postgresql:
            _ok(manage("dbshell", "--", "-c", f"ALTER TABLE tenants_auditevent DISABLE TRIGGER {AUDIT_TRIGGER}",
                       env=target))
        _ok(manage("loaddata", str(dump), env=target))
        if on_postgresql:
            _ok(manage("dbshell", "--", "-c", f"ALTER TABLE tenants_auditevent ENABLE TRIGGER {AUDIT_TRIGGER}",
                       env=target))

        code = READ_BACK.format(task_id=repr(task_id), api_key=repr(api_key))
        moved = json.loads(_ok(shell(code, env=target)).splitlines()[-1])

    assert moved == {"state": "succeeded", "prompt": PROMPT, "output": PROMPT, "key_tenant": "moving-co"}
