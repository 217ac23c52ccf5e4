"""manage.py run_worker --name N --slots S [--models a,b]: one worker process.

Prints the worker's id on stdout once registered (its only output there);
runs until SIGTERM or SIGINT, finishes the tasks in flight, marks itself
stopped and exits 0. The work is in apps.runtime.runner.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.logs import set_process_name
from apps.runtime.runner import WorkerOptions, WorkerRunner
from apps.workers.models import Worker
from apps.workers.services import UnknownModels, WorkerNameInUse

NAME_MAX_LENGTH = Worker._meta.get_field("name").max_length


class Command(BaseCommand):
    help = "Run a worker: take the tasks of the models placed on it, SLOTS at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="unique worker name (also recorded on the tasks it runs)")
        parser.add_argument("--slots", type=int, required=True, help="tasks run at once")
        parser.add_argument("--models", help="comma-separated model names to serve (default: every enabled model)")

    def handle(self, *args, name: str, slots: int, models: str | None, **options) -> None:
        set_process_name("worker")  # its log lines say which process wrote them
        name = name.strip()
        # max_length is None only for an unbounded field; Worker.name is bounded.
        if not name or (NAME_MAX_LENGTH is not None and len(name) > NAME_MAX_LENGTH):
            raise CommandError(f"--name must be 1 to {NAME_MAX_LENGTH} characters")
        if slots < 1:
            raise CommandError("--slots must be at least 1")
        model_names = None
        if models is not None:
            model_names = tuple(sorted({m.strip() for m in models.split(",") if m.strip()}))
            if not model_names:
                raise CommandError("--models names no model")
        runner = WorkerRunner(WorkerOptions(name=name, slots=slots, model_names=model_names))
        try:
            worker = runner.start()
        except (WorkerNameInUse, UnknownModels) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(worker.id))
        self.stdout.flush()
        code = runner.serve()
        if code:
            sys.exit(code)
