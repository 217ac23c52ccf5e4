"""A JSON body nested past MAX_JSON_DEPTH is a 400 naming the field, never a 500.

Python's JSON decoder recurses once per level: 1,000 levels raised
RecursionError (a 500). Every JSON body, /api/v1 (DRF's parser) and /v1
(the gateway) alike, goes through apps.core.parsers, which refuses it.
"""

from __future__ import annotations

import pytest

from tests.integration.gateway_support import CHAT, COMPLETIONS


def _array(levels: int) -> str:
    return "[" * levels + "]" * levels


def _object(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# (path, the body's text with the deep value in the field named) for every JSON route.
BODIES = [
    ("/api/v1/tasks", "prompt", '{{"model": "echo", "prompt": {deep}}}'),
    ("/api/v1/tasks", "metadata", '{{"model": "echo", "prompt": "hi", "metadata": {deep}}}'),
    ("/api/v1/workflows", "nodes", '{{"nodes": [{{"name": "a", "model": "echo", "prompt": {deep}}}]}}'),
    (CHAT, "messages", '{{"model": "echo", "messages": [{{"role": "user", "content": {deep}}}]}}'),
    (COMPLETIONS, "prompt", '{{"model": "echo", "prompt": {deep}}}'),
]


@pytest.mark.parametrize("levels", [1000, 100_000])
@pytest.mark.parametrize("deep", [_array, _object], ids=["arrays", "objects"])
@pytest.mark.parametrize(("path", "field", "template"), BODIES, ids=[f"{p}:{f}" for p, f, _ in BODIES])
def test_a_body_nested_past_what_the_decoder_can_read_is_a_400_naming_the_field(
    acme_api, path, field, template, deep, levels
):
    response = acme_api.send("post", path, template.format(deep=deep(levels)).encode(), "application/json")

    assert response.status == 400, response.body
    error = response.body["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "nested_too_deeply", field)
    assert field in error["message"]


def test_a_body_nested_past_the_cap_but_readable_is_refused_too(acme_api, settings):
    settings.MAX_JSON_DEPTH = 8
    body = '{"model": "echo", "prompt": "hi", "metadata": ' + _object(8) + "}"  # 9 levels with the body's own

    response = acme_api.send("post", "/api/v1/tasks", body.encode(), "application/json")

    assert response.status == 400, response.body
    assert (response.body["error"]["code"], response.body["error"]["param"]) == ("nested_too_deeply", "metadata")


def test_a_whole_body_of_nested_arrays_names_no_field(acme_api):
    response = acme_api.send("post", "/api/v1/tasks", _array(5000).encode(), "application/json")

    assert response.status == 400, response.body
    assert (response.body["error"]["code"], response.body["error"]["param"]) == ("nested_too_deeply", None)


def test_nesting_within_the_cap_is_read_as_before(acme_api, settings):
    """The counterpart: a body at the cap goes on to validation (metadata's own rules)."""
    settings.MAX_JSON_DEPTH = 8
    body = '{"model": "echo", "prompt": "hi", "metadata": ' + _object(7) + "}"

    response = acme_api.send("post", "/api/v1/tasks", body.encode(), "application/json")

    assert response.body.get("error", {}).get("code") != "nested_too_deeply", response.body
