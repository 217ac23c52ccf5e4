"""What a task lease costs the database, to choose TASK_LEASE_SECONDS and
TASK_LEASE_RENEW_SECONDS (docs/operations.md, "Leases and failover").

A worker renews the leases of all its running tasks together
(apps.tasks.services.renew_leases: one UPDATE and one SELECT, whatever their
number); the scheduler's reaper looks for expired leases
(reap_expired_leases, an indexed range read). Both are timed here against
the database the settings name (SQLite by default; DATABASE_URL for
PostgreSQL), on a throwaway test database, with n running tasks held by one
worker among 10,000 finished ones.

    DATA_DIR=$(mktemp -d) .venv/bin/python bench/lease_cost.py [--holds 1,10,100,1000] [--rounds 200]
    DATABASE_URL=postgres://… (same)

Prints, per n: the median and p99 wall time of one renewal round and of one
reaper round, and the share of each second a worker's renewals take at one round
per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmagentos.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.catalog.models import LLMModel  # noqa: E402
from apps.tasks import services  # noqa: E402
from apps.tasks.models import Task, TaskState  # noqa: E402
from apps.tenants.services import create_tenant  # noqa: E402

FINISHED = 10_000


def _timed(call, rounds: int) -> tuple[float, float]:
    """(median, p99) wall time of ``call`` in milliseconds."""
    took = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holds", default="1,10,100,1000")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        tenant = create_tenant("Lease bench")
        model = LLMModel.objects.get(name="echo")
        now = timezone.now()
        Task.objects.bulk_create(
            Task(tenant=tenant, model=model, state=TaskState.SUCCEEDED, max_tokens=16, finished_at=now)
            for _ in range(FINISHED)
        )
        print(f"{connection.vendor}, {FINISHED} finished tasks besides; {args.rounds} rounds each")
        print(f"{'held':>6} {'renew p50 ms':>13} {'renew p99 ms':>13} {'reap p50 ms':>12} {'reap p99 ms':>12}"
              f" {'busy at 1/s':>12}")
        for held in (int(n) for n in args.holds.split(",")):
            Task.objects.filter(state=TaskState.RUNNING).delete()
            running = Task.objects.bulk_create(
                Task(tenant=tenant, model=model, state=TaskState.RUNNING, max_tokens=16, attempt=1,
                     worker_name="bench-worker", started_at=now, lease_expires_at=services.lease_deadline())
                for _ in range(held)
            )
            attempts = {task.pk: 1 for task in running}
            assert len(services.renew_leases(attempts)) == held
            renew = _timed(lambda attempts=attempts: services.renew_leases(attempts), args.rounds)
            reap = _timed(services.reap_expired_leases, args.rounds)
            print(f"{held:>6} {renew[0]:>13.2f} {renew[1]:>13.2f} {reap[0]:>12.2f} {reap[1]:>12.2f}"
                  f" {renew[0] / 1000:>11.2%}")
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)


if __name__ == "__main__":
    main()
