"""Operators set a model's time slice (time_slice_tokens, docs/scheduling.md) through
the ops API and add_model: shown back, changed by PATCH, null for the platform's
default; a negative or non-integer value is a 400 naming the field, nothing written."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.catalog.models import LLMModel
from apps.security.services import issue_operator_token
from tests.conftest import ApiClient
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/ops/models"


@pytest.fixture
def operator(db) -> ApiClient:
    return ApiClient(issue_operator_token(make_operator(), name="tests").secret)


def test_registered_with_a_time_slice_and_changed(operator):
    created = operator.post(MODELS, {"name": "echo-sliced", "adapter": "echo", "time_slice_tokens": 16})
    assert created.status == 201, created.body
    assert created.body["time_slice_tokens"] == 16

    changed = operator.patch(f"{MODELS}/echo-sliced", {"time_slice_tokens": 0})
    assert changed.status == 200, changed.body
    assert changed.body["time_slice_tokens"] == 0
    assert LLMModel.objects.get(name="echo-sliced").time_slice_tokens == 0

    default = operator.patch(f"{MODELS}/echo-sliced", {"time_slice_tokens": None})
    assert default.body["time_slice_tokens"] is None


def test_a_model_registered_without_one_takes_the_default(operator):
    created = operator.post(MODELS, {"name": "echo-plain", "adapter": "echo"})
    assert created.body["time_slice_tokens"] is None


@pytest.mark.parametrize("value", [-1, "many", 1.5])
def test_a_bad_time_slice_is_refused_naming_the_field(operator, value):
    refused = operator.post(MODELS, {"name": "echo-bad", "adapter": "echo", "time_slice_tokens": value})

    assert (refused.status, refused.body["error"]["param"]) == (400, "time_slice_tokens"), refused.body
    assert not LLMModel.objects.filter(name="echo-bad").exists()


def test_add_model_takes_a_time_slice(capsys):
    call_command("add_model", "echo-cli", "--adapter", "echo", "--time-slice-tokens", "8")

    assert json.loads(capsys.readouterr().out)["time_slice_tokens"] == 8
    with pytest.raises(CommandError):
        call_command("add_model", "echo-cli-bad", "--adapter", "echo", "--time-slice-tokens", "-3")
    assert not LLMModel.objects.filter(name="echo-cli-bad").exists()
