"""manage.py add_model_version, run as an operator runs it: it measures the artifact,
verifies a given sha256 (a mismatch records nothing and exits non-zero) and can move
the alias."""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.manage_cli import describe, manage, migrated_database, shell


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    with migrated_database(tmp_path_factory.mktemp("add-model-version")) as env:
        yield env


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x01\x02\x03" * 4096)
    return path


def versions_of(model: str, env) -> list[str]:
    listed = shell(
        "from apps.catalog.models import LLMModel\n"
        f"m = LLMModel.objects.get(name={model!r})\n"
        "cur = m.current_version.version if m.current_version else '-'\n"
        "print(cur, *sorted(f'{v.version}:{v.sha256}:{v.size_bytes}:{v.device}' for v in m.versions.all()))\n",
        env=env,
    )
    assert listed.returncode == 0, describe(listed)
    return listed.stdout.split()


def test_it_measures_the_artifact_and_prints_only_the_result(cli_env, weights):
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()

    result = manage("add_model_version", "echo", "v1", str(weights), env=cli_env)

    assert result.returncode == 0, describe(result)
    assert result.stdout == f"echo@v1 {expected} {weights.stat().st_size}\n"
    assert versions_of("echo", cli_env) == ["-", f"v1:{expected}:{12288}:cpu"]  # not current unless asked


def test_a_matching_sha256_is_accepted_and_the_alias_can_move(cli_env, weights):
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()

    result = manage(
        "add_model_version", "echo", "v2", f"file://{weights}", "--sha256", expected.upper(), "--make-current",
        env=cli_env,
    )

    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith("echo@v2 ")
    assert "echo@v2 is now the current version" in result.stderr
    assert versions_of("echo", cli_env)[0] == "v2"


def test_a_sha256_mismatch_records_nothing_and_fails(cli_env, weights):
    before = versions_of("echo", cli_env)

    result = manage(
        "add_model_version", "echo", "v3", str(weights), "--sha256", "0" * 64, "--make-current", env=cli_env
    )

    assert result.returncode != 0, describe(result)
    assert result.stdout == ""
    assert "sha256 mismatch" in result.stderr and "Traceback" not in result.stderr
    assert versions_of("echo", cli_env) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "v1", "{weights}"), "no model named 'nope'"),
        (("echo", "v9", "/definitely/not/here"), "does not exist"),
        (("echo", "v9", "s3://bucket/weights"), "never download"),
        (("echo", "Bad@Label", "{weights}"), "version: lower-case letters"),
        (("echo", "v9", "{weights}", "--device", "cpu", "--gpu-memory", "5"), "needs no GPU memory"),
    ],
)
def test_bad_arguments_fail_with_the_reason_on_stderr(cli_env, weights, args, message):
    before = versions_of("echo", cli_env)

    result = manage("add_model_version", *(a.format(weights=weights) for a in args), env=cli_env)

    assert result.returncode != 0, describe(result)
    assert result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr
    assert versions_of("echo", cli_env) == before
