"""A routed model sends each request to the candidate its rules pick: by the prompt's
length in the candidate's tokens and by the detected language, and by the request's
metadata tags and the tenant. The task records both: ``model`` as the tenant named it,
``routed_to`` the model that runs it, which is the model the task runs and is charged on.
Echo copies stand in for the issue's tiny-model copies (their tokenizer counts words)."""

from __future__ import annotations

import uuid

import pytest

from apps.runtime.execution import execute_task
from apps.tasks.models import Task
from tests.routing_support import (
    CHINESE,
    LENGTH_AND_LANGUAGE,
    LONG_ENGLISH,
    SHORT_ENGLISH,
    TASKS,
    echo_copies,
    make_router,
    submit,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def translator(db) -> None:
    echo_copies("echo-short", "echo-long", "echo-zh")
    make_router("translator", LENGTH_AND_LANGUAGE)


@pytest.mark.parametrize(
    ("prompt", "runs_on"),
    [(SHORT_ENGLISH, "echo-short"), (LONG_ENGLISH, "echo-long"), (CHINESE, "echo-zh")],
)
def test_length_and_language_pick_the_candidate_recorded_on_the_task(translator, acme_api, prompt, runs_on):
    created = submit(acme_api, "translator", prompt)

    assert (created["model"], created["routed_to"]) == ("translator", runs_on)
    task = Task.objects.select_related("model", "routed_from").get(pk=created["id"])
    assert (task.model.name, task.routed_from.name) == (runs_on, "translator")
    execute_task(uuid.UUID(created["id"]))
    shown = acme_api.get(f"{TASKS}/{created['id']}").body
    assert (shown["status"], shown["output"]) == ("succeeded", prompt)
    assert (shown["model"], shown["routed_to"]) == ("translator", runs_on)


def test_a_plain_model_is_not_routed(translator, acme_api):
    created = submit(acme_api, "echo", "hello")

    assert (created["model"], created["routed_to"]) == ("echo", None)


def test_metadata_tags_and_tenants_narrow_the_candidates(acme_api, globex_api):
    echo_copies("echo-translate", "echo-acme", "echo-any")
    make_router("desk", {"candidates": [
        {"model": "echo-translate", "metadata": {"task": ["translation"]}},
        {"model": "echo-acme", "tenants": ["acme"]},
        "echo-any",
    ]})

    assert submit(acme_api, "desk", "hi", metadata={"task": "translation"})["routed_to"] == "echo-translate"
    assert submit(acme_api, "desk", "hi", metadata={"task": "summary"})["routed_to"] == "echo-acme"
    assert submit(globex_api, "desk", "hi")["routed_to"] == "echo-any"


def test_no_candidate_left_is_a_400_no_route_naming_the_model(translator, acme_api):
    refused = acme_api.post(TASKS, {"model": "translator", "prompt": "Bonjour, comment allez-vous aujourd'hui ?"})

    assert refused.status == 400, refused.body
    assert (refused.body["error"]["code"], refused.body["error"]["param"]) == ("no_route", "model")
    assert "translator" in refused.body["error"]["message"]
    assert not Task.objects.exists()


def test_workflow_nodes_are_routed(translator, acme_api):
    created = acme_api.post("/api/v1/workflows", {"nodes": [
        {"name": "zh", "model": "translator", "prompt": CHINESE},
        {"name": "short", "model": "translator", "prompt": SHORT_ENGLISH},
    ]})

    assert created.status == 201, created.body
    routed = {task.model.name for task in Task.objects.select_related("model").filter(routed_from__name="translator")}
    assert routed == {"echo-zh", "echo-short"}
