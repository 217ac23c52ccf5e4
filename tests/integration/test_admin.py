"""The operator admin: reachable by staff only; never shows tenant data or key secrets."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.test import Client

from apps.runtime.execution import execute_task
from apps.tasks.models import Task
from apps.tenants.models import ApiKey
from apps.tenants.services import find_api_key, issue_api_key

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "okapi-saffron quarterly layoffs draft"
SECRET_META = "meta-pangolin-7731"
SECRET_REF = "client-ref-axolotl-0042"
SECRET_WORDS = ("okapi-saffron", "quarterly layoffs", SECRET_META, SECRET_REF)

CHANGELISTS = [
    "/admin/tenants/tenant/",
    "/admin/tenants/apikey/",
    "/admin/catalog/llmmodel/",
    "/admin/tasks/task/",
]


@pytest.fixture
def operator(django_user_model) -> Client:
    # No password: force_login needs none, and hashing one costs time.
    user = django_user_model.objects.create_superuser("operator", email="", password=None)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finished_task(acme_api) -> Task:
    created = acme_api.post(
        "/api/v1/tasks",
        {"model": "echo", "prompt": SECRET_PROMPT, "metadata": {"note": SECRET_META}, "client_ref": SECRET_REF},
    )
    assert created.status == 201, created.body
    execute_task(created.body["id"])
    task = Task.objects.get(pk=created.body["id"])
    assert task.state == "succeeded"
    # The tenant can read the output: the admin pages below had something to leak.
    assert acme_api.get(f"/api/v1/tasks/{task.id}").body["output"] == SECRET_PROMPT
    return task


def _text(response) -> str:
    return response.content.decode()


def test_operator_opens_the_admin_index(operator):
    response = operator.get("/admin/")

    assert response.status_code == 200
    for path in CHANGELISTS:
        assert f'href="{path}"' in _text(response)


@pytest.mark.parametrize("path", CHANGELISTS)
def test_operator_opens_each_changelist(operator, acme, acme_key, finished_task, path):
    response = operator.get(path)

    assert response.status_code == 200


def test_changelists_list_the_objects(operator, acme, globex, finished_task):
    assert "globex" in _text(operator.get("/admin/tenants/tenant/"))
    assert "echo" in _text(operator.get("/admin/catalog/llmmodel/"))
    assert str(finished_task.id) in _text(operator.get("/admin/tasks/task/"))


def test_task_pages_never_show_prompt_output_or_metadata(operator, finished_task):
    changelist = operator.get("/admin/tasks/task/")
    detail = operator.get(f"/admin/tasks/task/{finished_task.id}/change/")

    assert changelist.status_code == 200
    assert detail.status_code == 200
    assert str(finished_task.id) in _text(detail)
    assert "succeeded" in _text(detail).lower()
    for page in (changelist, detail):
        for secret in SECRET_WORDS:
            assert secret not in _text(page)


def test_tasks_cannot_be_added_or_edited_in_the_admin(operator, finished_task):
    assert operator.get("/admin/tasks/task/add/").status_code == 403
    detail = _text(operator.get(f"/admin/tasks/task/{finished_task.id}/change/"))
    assert 'name="_save"' not in detail


def test_api_key_change_page_shows_neither_secret_nor_hash(operator, acme):
    issued = issue_api_key(acme, name="ops visible key")
    key = issued.api_key

    for path in (f"/admin/tenants/apikey/{key.pk}/change/", "/admin/tenants/apikey/"):
        response = operator.get(path)
        assert response.status_code == 200
        page = _text(response)
        assert key.prefix in page  # the page is about this key...
        assert issued.secret not in page  # ...without its secret
        assert issued.secret.split("_", 2)[2] not in page  # the random part (it may itself hold "_")
        assert key.key_hash not in page


def test_tenant_change_page_does_not_show_the_wrapped_data_key(operator, acme):
    page = _text(operator.get(f"/admin/tenants/tenant/{acme.pk}/change/"))

    assert "Acme Corp" in page
    assert bytes(acme.wrapped_data_key).decode() not in page


def test_adding_an_api_key_shows_the_secret_once_and_stores_only_its_hash(operator, acme):
    response = operator.post(
        "/admin/tenants/apikey/add/",
        {
            "tenant": str(acme.pk),
            "name": "added in the admin",
            "scopes": '["tasks:read", "models:read"]',
            "expires_at_0": "",
            "expires_at_1": "",
        },
        follow=True,
    )

    assert response.status_code == 200
    keys = ApiKey.objects.filter(tenant=acme, name="added in the admin")
    assert keys.count() == 1
    key = keys.get()
    shown = [str(m) for m in response.context["messages"]]
    secrets_shown = [s for m in shown for s in re.findall(r"lla_[0-9a-f]+_[A-Za-z0-9_-]+", m)]
    assert len(secrets_shown) == 1, shown
    secret = secrets_shown[0]
    assert _text(response).count(secret) == 1

    # Only the hash is stored; the secret works, with the scopes chosen.
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = " ".join(str(v) for v in ApiKey.objects.filter(pk=key.pk).values().get().values())
    assert secret not in stored
    # The random part, after "lla_<public id>_" (token_urlsafe may hold "_" itself: split twice
    # from the left, not from the right, or a short tail such as "0" is what is looked for).
    assert secret.split("_", 2)[2] not in stored
    found = find_api_key(secret)
    assert found is not None and found.pk == key.pk
    assert sorted(found.scopes) == ["models:read", "tasks:read"]

    # Shown once: the next pages do not repeat it.
    for path in ("/admin/tenants/apikey/", f"/admin/tenants/apikey/{key.pk}/change/"):
        assert secret not in _text(operator.get(path))


@pytest.mark.parametrize(
    ("scopes", "named"),
    [('["tasks:read", "tasks:delete"]', "tasks:delete"), ('"tasks:read"', "list of scope names"), ("42", "list")],
)
def test_adding_an_api_key_with_a_wrong_scope_is_a_form_error(operator, acme, scopes, named):
    """Not a 500: the form says what is wrong with the field, and issues nothing."""
    response = operator.post(
        "/admin/tenants/apikey/add/",
        {"tenant": str(acme.pk), "name": "bad scopes", "scopes": scopes, "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["scopes"], errors
    assert named in " ".join(errors["scopes"])
    assert not ApiKey.objects.filter(name="bad scopes").exists()


def test_the_revoke_action_makes_a_key_stop_working(operator, acme):
    issued = issue_api_key(acme, name="to revoke")
    assert find_api_key(issued.secret) is not None

    response = operator.post(
        "/admin/tenants/apikey/",
        {"action": "revoke_keys", "_selected_action": [str(issued.api_key.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert find_api_key(issued.secret) is None


@pytest.mark.parametrize("path", ["/admin/", *CHANGELISTS])
def test_a_non_staff_user_is_sent_to_the_login_page(django_user_model, acme, path):
    user = django_user_model.objects.create_user("tenant-member", password=None)
    client = Client()
    client.force_login(user)

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_anonymous_visitor_is_sent_to_the_login_page():
    response = Client().get("/admin/tenants/apikey/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")

