"""manage.py run_platform: what `make run` starts (embedded mode by default).

Migrates, seeds on the first run (printing API_KEY=… and the admin login once
on stdout), then runs the ASGI server and a Huey consumer under one supervisor
in the foreground until SIGTERM or Ctrl-C. HOST, PORT and DATA_DIR come from
the environment; WORKER_THREADS sets the consumer's concurrency.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.tenants.seeding import seed_first_run
from apps.workers.supervisor import Child, Supervisor, die_with_parent


class Command(BaseCommand):
    help = "Run the whole platform (ASGI server + task consumer) in the foreground."

    def handle(self, *args, **options) -> None:
        die_with_parent()
        host = os.environ.get("HOST", "127.0.0.1")
        port = os.environ.get("PORT", "8000")
        threads = os.environ.get("WORKER_THREADS", "4")
        manage_py = str(Path(settings.BASE_DIR) / "manage.py")

        call_command("migrate", interactive=False, verbosity=0, stdout=sys.stderr)
        call_command("collectstatic", interactive=False, verbosity=0, stdout=sys.stderr)
        seeded = seed_first_run()
        if seeded is not None:
            self.stdout.write(f"API_KEY={seeded.api_key}")
            self.stdout.write(f"ADMIN_USER={seeded.admin_username}")
            self.stdout.write(f"ADMIN_PASSWORD={seeded.admin_password}")
            self.stdout.flush()
        self.stderr.write(f"LLMAgentOS on http://{host}:{port}/ (data in {settings.DATA_DIR}); SIGTERM or Ctrl-C stops it")

        supervisor = Supervisor(
            [
                Child(
                    "server",
                    [sys.executable, "-m", "uvicorn", "llmagentos.asgi:application",
                     "--host", host, "--port", port, "--no-access-log", "--timeout-graceful-shutdown", "10"],
                ),
                # SIGINT is Huey's graceful stop: finish in-flight tasks, take no new ones.
                Child("consumer", [sys.executable, manage_py, "run_huey", "--workers", threads,
                                   "--worker-type", "thread"], stop_signal=signal.SIGINT),
            ]
        )
        sys.exit(supervisor.run())
