"""A remote (openai_compatible) model's generations cannot be suspended: however
outranked, they are never asked to. The same round on a model whose adapter can
(echo) asks."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import LLMModel
from apps.catalog.plugins import registry
from apps.scheduler.dispatcher import Dispatcher
from tests.integration.preemption_support import asked, claim, submit, worker

pytestmark = pytest.mark.django_db


def test_an_outranked_remote_generation_is_never_asked_to_suspend(acme_api, globex_api, stub_url):
    assert not registry.adapter_class("openai_compatible").can_suspend
    remote = LLMModel.objects.create(
        name="remote-batch", adapter="openai_compatible", is_public=True,
        adapter_config={"base_url": stub_url, "model": f"echo:{uuid.uuid4().hex[:8]}", "retry_backoff": 0.01},
    )
    worker(slots=2, model_names=["echo", remote.name])  # two slots on each model
    dispatcher = Dispatcher()
    remote_batch = [submit(acme_api, f"r {n}", model=remote.name, priority="batch") for n in range(2)]
    echo_batch = [submit(acme_api, f"e {n}", priority="batch") for n in range(2)]
    assert dispatcher.run_once() == 4
    for task_id in [*remote_batch, *echo_batch]:
        claim(task_id)
    submit(globex_api, "urgent remote", model=remote.name, priority="interactive")
    submit(globex_api, "urgent echo", priority="interactive")

    # The first round hands the echo slot being freed to the echo task; the remote one waits.
    assert [dispatcher.run_once() for _ in range(3)] == [1, 0, 0]
    assert asked() & set(remote_batch) == set()
    assert len(asked() & set(echo_batch)) == 1


def test_a_crowded_model_that_cannot_suspend_costs_the_round_no_read(acme_api, globex_api, stub_url):
    remote = LLMModel.objects.create(
        name="remote-only", adapter="openai_compatible", is_public=True,
        adapter_config={"base_url": stub_url, "model": f"echo:{uuid.uuid4().hex[:8]}", "retry_backoff": 0.01},
    )
    worker(slots=1, model_names=[remote.name])
    dispatcher = Dispatcher()
    first = submit(acme_api, "r", model=remote.name, priority="batch")
    assert dispatcher.run_once() == 1
    claim(first)
    submit(globex_api, "urgent", model=remote.name, priority="interactive")

    with CaptureQueriesContext(connection) as round_statements:
        assert dispatcher.run_once() == 0
    # Only the slot holders' read selects the preemption counter.
    assert not [q["sql"] for q in round_statements.captured_queries if "preemptions" in q["sql"]]
    assert asked() == set()
