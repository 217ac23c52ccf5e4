"""Every list of the project's admin has filters and a search box, and a search
runs on either database (a UUID id, a slug, a name alike); the task list reads
no ciphertext at all."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.runtime.execution import execute_task
from tests.audit_support import signed_in_operator

pytestmark = pytest.mark.django_db

PROJECT_ADMINS = sorted(
    (model_admin for model, model_admin in admin.site._registry.items() if model.__module__.startswith("apps.")),
    key=lambda model_admin: model_admin.opts.label,
)


@pytest.fixture
def operator() -> Client:
    client, _ = signed_in_operator()
    return client


@pytest.mark.parametrize("model_admin", PROJECT_ADMINS, ids=lambda model_admin: model_admin.opts.label)
def test_each_list_has_filters_and_a_search(operator, acme_api, model_admin):
    assert model_admin.list_filter and model_admin.search_fields
    changelist = reverse(f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}_changelist")
    acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "a row for each list"})

    for query in ("acme", "0f3c", "echo"):
        response = operator.get(changelist, {"q": query})
        assert response.status_code == 200, (changelist, query)
        text = response.content.decode()
        assert 'id="changelist-filter"' in text and 'id="searchbar"' in text


def test_the_task_list_reads_no_ciphertext(operator, acme_api):
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "kept from the list"})
    execute_task(created.body["id"])

    with CaptureQueriesContext(connection) as queries:
        assert operator.get("/admin/tasks/task/").status_code == 200

    read = " ".join(query["sql"] for query in queries.captured_queries)
    assert "tasks_task" in read
    assert "ciphertext" not in read
