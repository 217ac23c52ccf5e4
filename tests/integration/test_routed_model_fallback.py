"""At submission a routed model passes over a candidate that cannot take the task now:
one whose version no worker can hold (what a plain model refuses 503 ``model_unplaceable``),
and, under the router's ``max_wait_seconds``, one no active worker serves (drained). The
task runs on the next candidate and the tenant sees where. Only when every candidate is
unplaceable is the submission refused, 503 as for a plain model. (Fallback once a task
runs: test_routed_model_runtime_fallback.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel
from apps.scheduler.placement import GIB
from apps.tasks.models import Task
from apps.workers import services as workers
from apps.workers.models import Worker
from tests.routing_support import TASKS, echo_copies, make_router, submit

pytestmark = pytest.mark.django_db


def _gpus(total_gib: float) -> dict:
    gpu = {"index": 0, "name": "H100", "memory_total": int(total_gib * GIB), "memory_free": int(total_gib * GIB),
           "utilization": 0}
    return {"gpus": [gpu], "cpu_count": 16, "ram_total": None, "ram_available": None}


def _worker(name: str, models: list[str] | None, gib: float = 80) -> Worker:
    return workers.register_worker(
        name=name, host=f"host-{name}", pid=os.getpid(), slots=2, device_info=_gpus(gib), model_names=models
    )


def _gpu_model(tmp_path: Path, name: str, gib: float) -> LLMModel:
    """An echo copy whose current version needs ``gib`` of GPU memory."""
    model = echo_copies(name)[0]
    (tmp_path / name).mkdir()
    catalog.create_version(model, "v1", str(tmp_path / name), device="gpu", gpu_memory_bytes=int(gib * GIB),
                           make_current=True)
    return model


def test_an_unplaceable_first_candidate_falls_back_to_the_next(tmp_path, acme_api):
    _gpu_model(tmp_path, "huge", 100)
    echo_copies("echo-b")
    make_router("big-first", {"candidates": ["huge", "echo-b"]})
    _worker("gpu-a", None, gib=80)  # holds 80 GiB: "huge" cannot be placed anywhere
    assert acme_api.post(TASKS, {"model": "huge", "prompt": "hi"}).status == 503  # as a plain model

    created = submit(acme_api, "big-first", "hello")

    assert (created["model"], created["routed_to"]) == ("big-first", "echo-b")
    assert acme_api.get(f"{TASKS}/{created['id']}").body["routed_to"] == "echo-b"


def test_every_candidate_unplaceable_is_refused_503(tmp_path, acme_api):
    _gpu_model(tmp_path, "huge", 100)
    _gpu_model(tmp_path, "huger", 120)
    make_router("nowhere", {"candidates": ["huge", "huger"]})
    _worker("gpu-a", None, gib=80)

    refused = acme_api.post(TASKS, {"model": "nowhere", "prompt": "hello"})

    assert refused.status == 503, refused.body
    assert (refused.body["error"]["code"], refused.body["error"]["param"]) == ("model_unplaceable", "model")
    assert not Task.objects.exists()


def test_a_drained_first_candidate_is_passed_over_under_the_wait_bound(acme_api):
    echo_copies("echo-a", "echo-b")
    make_router("bounded", {"candidates": ["echo-a", "echo-b"], "max_wait_seconds": 30})
    serving_a = _worker("cpu-a", ["echo-a"])
    _worker("cpu-b", ["echo-b"])
    assert submit(acme_api, "bounded", "before")["routed_to"] == "echo-a"

    workers.drain(serving_a)
    created = submit(acme_api, "bounded", "after")

    assert (created["model"], created["routed_to"]) == ("bounded", "echo-b")


def test_without_a_wait_bound_the_order_holds(acme_api):
    echo_copies("echo-a", "echo-b")
    make_router("unbounded", {"candidates": ["echo-a", "echo-b"]})
    workers.drain(_worker("cpu-a", ["echo-a"]))
    _worker("cpu-b", ["echo-b"])

    assert submit(acme_api, "unbounded", "hello")["routed_to"] == "echo-a"  # it waits for a worker
