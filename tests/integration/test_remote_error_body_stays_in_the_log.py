"""What a remote model's server says about an error (its response body, an error
event in the stream) goes to the operator's log, never to the tenant: the task's
error carries the status and a generic message only."""

from __future__ import annotations

import logging

import pytest

from tests.integration.remote_support import run_task

pytestmark = pytest.mark.django_db

# The stub's error bodies read "stub refuses (always-NNN); key provided: …" and its
# error events "stub engine failed mid-stream".
REMOTE_WORDS = ("stub refuses", "stub engine failed")


@pytest.fixture
def one_attempt(settings):
    settings.TASK_MAX_ATTEMPTS = 1  # a transient failure ends the task at once, with its error


@pytest.mark.parametrize(("mode", "shown"), [
    ("always-400", "the remote answered 400"),
    ("always-404", "the remote answered 404"),
    ("always-500", "the remote answered 500"),
    ("error-after-1", "the remote reported an error mid-stream"),
])
def test_the_task_error_has_the_status_and_the_log_has_the_remotes_words(
    one_attempt, acme_api, remote_model, caplog, mode, shown
):
    model, _ = remote_model(mode, max_retries=0)

    with caplog.at_level(logging.WARNING, logger="plugins.openai_compatible"):
        done = run_task(acme_api, {"model": model, "prompt": "one two three"})

    assert done["status"] == "failed", done
    message = done["error"]["message"]
    assert shown in message
    assert not any(words in message for words in REMOTE_WORDS), message
    assert not any(words in str(done) for words in REMOTE_WORDS)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("plugins.openai_compatible")]
    assert any(words in line for line in logged for words in REMOTE_WORDS), logged
