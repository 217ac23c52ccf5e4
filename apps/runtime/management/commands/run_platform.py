"""manage.py run_platform: what `make run` starts (embedded mode by default).

Migrates, builds the tiny local model once (served as the public model
"tiny"), seeds on the first run (printing API_KEY=… and the admin login once
on stdout), then runs its children under one supervisor in the foreground
until SIGTERM or Ctrl-C: the ASGI server, as SERVER_PROCESSES processes
(default: one per core, at most 4) sharing one listening socket that this
command opens (so a taken port fails here, with a clear message, and each
server process is the supervisor's own child: restarted if it dies, stopped
by SIGTERM like the others); the scheduler (the dispatcher
loop and the periodic jobs: lease reaper, stale dispatches, placement); and
one worker serving every enabled model. HOST, PORT and DATA_DIR come from the
environment; WORKER_THREADS sets the worker's slots, WORKER_NAME its name
(default "<host>-embedded"). The children share one PROMETHEUS_MULTIPROC_DIR
(DATA_DIR/metrics unless set; emptied here), so GET /metrics sums them all.

The supervisor is what stays resident for the platform's whole life, so it
is kept small: the tiny model's build (torch, transformers: ~300 MB once
imported) runs in a child process, and once the preparations are done this
process execs into the standard-library-only supervisor (same pid), leaving
Django behind too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from apps.catalog.services import ensure_tiny_model
from apps.runtime.supervisor import METRICS_DIR_VARIABLE, Child, die_with_parent, exec_supervisor
from apps.tenants.seeding import seed_first_run


class Command(BaseCommand):
    help = "Run the whole platform (ASGI server, scheduler, worker) in the foreground."

    def handle(self, *args, **options) -> None:
        die_with_parent()
        listener = _listen(settings.HOST, settings.PORT)  # first: a taken port fails before any work
        host = settings.HOST
        port = str(settings.PORT)
        threads = str(settings.WORKER_THREADS)
        worker_name = settings.WORKER_NAME or f"{socket.gethostname()}-embedded"
        manage_py = str(Path(settings.BASE_DIR) / "manage.py")

        call_command("migrate", interactive=False, verbosity=0, stdout=sys.stderr)
        call_command("collectstatic", interactive=False, verbosity=0, stdout=sys.stderr)
        tiny_path = Path(settings.DATA_DIR) / "models" / "tiny"
        # In a child: importing torch here would keep its memory for the platform's life.
        # stdout carries only this command's result lines: the child's path goes to stderr.
        built = subprocess.run(
            [sys.executable, manage_py, "build_tiny_model", str(tiny_path)],
            stdout=sys.stderr,
            preexec_fn=die_with_parent,
        )
        if built.returncode != 0:
            raise CommandError(f"building the tiny model in {tiny_path} failed (exit {built.returncode})")
        ensure_tiny_model(tiny_path)  # built already: this only registers it
        seeded = seed_first_run()
        if seeded is not None:
            self.stdout.write(f"API_KEY={seeded.api_key}")
            self.stdout.write(f"ADMIN_USER={seeded.admin_username}")
            self.stdout.write(f"ADMIN_PASSWORD={seeded.admin_password}")
            self.stdout.flush()
        self.stderr.write(
            f"LLMAgentOS on http://{host}:{port}/ (data in {settings.DATA_DIR}); SIGTERM or Ctrl-C stops it"
        )

        # Multi-process metrics (apps.core.metrics): set before the children start, so
        # each imports prometheus_client with it; emptied, so no earlier run's pids count.
        os.environ[METRICS_DIR_VARIABLE] = str(_fresh_metrics_dir())
        connections.close_all()  # nothing of this process's state outlives the exec
        fd = listener.fileno()
        servers = settings.SERVER_PROCESSES
        exec_supervisor(
            [
                *(
                    Child(
                        "server" if servers == 1 else f"server-{number}",
                        # apps.runtime.serve: uvicorn on the inherited socket (not `uvicorn --fd`: see there).
                        [sys.executable, "-m", "apps.runtime.serve", str(fd)],
                        pass_fds=(fd,),
                    )
                    for number in range(1, servers + 1)
                ),
                # One scheduler: the dispatcher (policy order, free slots, running
                # caps) and the periodic jobs, in one place whatever the number of workers.
                Child("scheduler", [sys.executable, manage_py, "run_scheduler"]),
                # SIGTERM: finish in-flight tasks, take no new ones, mark itself stopped.
                Child("worker", [sys.executable, manage_py, "run_worker", "--name", worker_name,
                                 "--slots", threads]),
            ],
            logging_config=settings.LOGGING,
            import_root=str(settings.BASE_DIR),
        )


def _fresh_metrics_dir() -> Path:
    """PROMETHEUS_MULTIPROC_DIR if the operator set it, else DATA_DIR/metrics; emptied
    of the previous run's files (prometheus_client requires it between runs)."""
    directory = Path(os.environ.get(METRICS_DIR_VARIABLE) or Path(settings.DATA_DIR) / "metrics")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # only its own files: the directory may be the operator's
        stale.unlink(missing_ok=True)
    return directory


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, inherited through the exec by the supervisor
    and passed to each server process (apps.runtime.serve): the kernel hands each
    new connection to whichever process accepts first."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)  # uvicorn's own default backlog
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(True)
    return listener
