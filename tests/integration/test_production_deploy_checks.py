"""``manage.py check --deploy --fail-level WARNING`` passes under the production
profile given sensible settings through the environment: not one deploy
warning is left for an operator to silence."""

from __future__ import annotations

from tests.integration.manage_cli import describe, manage, production_env


def test_the_production_profile_passes_check_deploy_at_warning_level(tmp_path):
    env = production_env(tmp_path, CSRF_TRUSTED_ORIGINS="https://llm.example.com")

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, describe(result)
    assert "System check identified no issues" in result.stdout, describe(result)
