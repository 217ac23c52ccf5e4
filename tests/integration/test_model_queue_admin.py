"""The admin's model list shows each model's queue: queued, running, slots and the
estimated wait of a task submitted now (the browser test drives the same page)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.catalog.models import LLMModel
from tests.integration.queue_support import busy_two_slot_queue

pytestmark = pytest.mark.django_db

COLUMNS = ("queued", "running", "slots", "estimated_wait")


@pytest.fixture
def operator(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("operator", email="", password=None))
    return client


def _queue_columns(page: str, model_name: str) -> dict[str, str]:
    row = re.search(rf"<tr>(?:(?!</tr>).)*>{re.escape(model_name)}</a>.*?</tr>", page, re.S)
    assert row, page[:3000]
    return {
        column: re.search(rf'<td class="field-{column}">([^<]*)</td>', row.group(0)).group(1) for column in COLUMNS
    }


def test_the_model_list_shows_queue_depth_running_slots_and_wait(operator, acme_api):
    LLMModel.objects.create(name="queued-model", adapter="echo", is_public=True)
    busy_two_slot_queue(acme_api, "queued-model")

    page = operator.get("/admin/catalog/llmmodel/").content.decode()

    # Both slots busy, two queued: a new task is third beyond the free slots, 3 s each over 2 slots.
    assert _queue_columns(page, "queued-model") == {
        "queued": "2", "running": "2", "slots": "2", "estimated_wait": "4.5 s"
    }
    # A model nobody serves and nothing has run on: no estimate.
    LLMModel.objects.create(name="idle-model", adapter="echo", is_public=True)
    page = operator.get("/admin/catalog/llmmodel/").content.decode()
    assert _queue_columns(page, "idle-model") == {
        "queued": "0", "running": "0", "slots": "0", "estimated_wait": "unknown"
    }
