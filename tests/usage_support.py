"""Known usage for the usage report's tests (API and admin): tasks of acme and
globex on fixed days, run through the echo adapter (a word is a token, and
the output echoes the prompt), so every figure is known in advance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from apps.catalog.models import LLMModel
from apps.runtime.execution import execute_task
from apps.tasks.models import Task

DAY_1, DAY_2 = "2026-03-01", "2026-03-02"
BEFORE = "2026-02-28"  # a day outside the period asked for


@dataclass(frozen=True)
class Submitted:
    model: str
    prompt: str
    day: str
    run: bool = True


ACME_TASKS = (
    Submitted("echo", "one two three", DAY_1),
    Submitted("echo", "four five", DAY_1),
    Submitted("echo", "six", DAY_2),
    Submitted("echo", "still queued here", DAY_2, run=False),  # no tokens yet
    Submitted("echo-b", "seven eight", DAY_2),
    Submitted("echo", "too early", BEFORE),
)
GLOBEX_TASKS = (Submitted("echo", "globex words only", DAY_1),)

# acme's report for DAY_1..DAY_2: (day, model, tasks, prompt tokens, completion tokens)
ACME_ROWS = [
    (DAY_1, "echo", 2, 5, 5),
    (DAY_2, "echo", 2, 1, 1),
    (DAY_2, "echo-b", 1, 2, 2),
]
# The last column, cost, is empty: these models have no prices (test_model_prices has priced ones).
ACME_CSV = "day,model,tasks,prompt_tokens,completion_tokens,cost\r\n" + "".join(
    f"{day},{model},{tasks},{prompt},{completion},\r\n" for day, model, tasks, prompt, completion in ACME_ROWS
)


def submit_known_usage(acme_api, globex_api) -> None:
    """Submit (and run) ACME_TASKS and GLOBEX_TASKS, each dated at noon UTC of its day."""
    LLMModel.objects.create(name="echo-b", adapter="echo", is_public=True)
    for api, tasks in ((acme_api, ACME_TASKS), (globex_api, GLOBEX_TASKS)):
        for task in tasks:
            created = api.post("/api/v1/tasks", {"model": task.model, "prompt": task.prompt})
            assert created.status == 201, created.body
            if task.run:
                execute_task(created.body["id"])
            noon = datetime.fromisoformat(task.day).replace(hour=12, tzinfo=UTC)
            Task.objects.filter(pk=created.body["id"]).update(created_at=noon)
