"""PostgreSQL restarted mid-run: while it is down the API answers 503 with
Retry-After, never a 500 and never a hang; the platform's processes recover by
themselves when it is back, and no task is lost."""

from __future__ import annotations

import time
from collections import Counter

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

OUTAGE_SECONDS = 6.0
ANSWER_BOUND_SECONDS = 10.0
RECOVERY_BOUND_SECONDS = 60.0


def test_a_postgres_restart_mid_run_answers_503_and_loses_no_task(platform):
    platform.start_all()
    prompts = platform.submit_many("before-restart", 60)
    time.sleep(2)
    platform.cluster.postgres.stop("fast")
    try:
        answers = platform.probe(next(iter(prompts)), OUTAGE_SECONDS)
    finally:
        platform.cluster.postgres.start()
    back = time.monotonic()
    platform.wait_for(platform.ready, RECOVERY_BOUND_SECONDS, "the API did not recover by itself")
    recovery = time.monotonic() - back
    prompts |= platform.submit_many("after-restart", 20)

    first = next(iter(prompts))
    statuses = Counter(f"{a.method} {a.path.replace(first, '<id>')} {a.status}" for a in answers)
    print(f"\nCHAOS postgres outage: answers while down {dict(statuses)}; "
          f"/readyz 200 again {recovery:.2f} s after the server was back")
    assert all(a.status == 503 for a in answers), [a for a in answers if a.status != 503][:5]
    assert all(a.retry_after for a in answers if a.path.startswith("/api/")), "a 503 without Retry-After"
    assert max(a.seconds for a in answers) <= ANSWER_BOUND_SECONDS
    platform.assert_each_succeeded_once(prompts, timeout=300)
