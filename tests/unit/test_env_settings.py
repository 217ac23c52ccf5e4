"""llmagentos.env: the typed readers every environment setting goes through.

A valid value reads as the type the setting needs; unset or empty gives the
default; a malformed one raises ImproperlyConfigured naming the variable, the
value (never a secret or a URL's password) and the form expected.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from llmagentos import env

VAR = "LLMAGENTOS_TEST_ENV_READER"


@pytest.fixture
def setenv(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)

    def set_value(value: str) -> None:
        monkeypatch.setenv(VAR, value)

    return set_value


def refusal(read) -> str:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        read()
    return str(excinfo.value)


def test_unset_and_empty_give_the_default(setenv):
    assert env.integer(VAR, 7) == 7
    assert env.seconds(VAR, 2.5) == 2.5
    assert env.number(VAR, None) is None
    assert env.boolean(VAR, True) is True
    assert env.choice(VAR, "local", ("local", "production")) == "local"
    assert env.comma_list(VAR, "a,b") == ["a", "b"]
    assert env.url(VAR, ("redis",), "redis://h/0", default="redis://default/1") == "redis://default/1"
    assert env.json_value(VAR, '{"x": {}}', valid=lambda v: True, expected="JSON") == {"x": {}}

    setenv("   ")

    assert env.integer(VAR, 7) == 7
    assert env.number(VAR, None) is None


def test_a_comma_list_set_empty_is_empty_not_the_default(setenv):
    setenv("")

    assert env.comma_list(VAR, "a,b") == []


def test_string_returns_the_value_as_it_is(setenv):
    assert env.string(VAR, "fallback") == "fallback"
    setenv("")
    assert env.string(VAR, "fallback") == ""
    setenv(" spaced ")
    assert env.string(VAR) == " spaced "


def test_numbers_read_as_their_type(setenv):
    setenv(" 42 ")
    assert env.integer(VAR, 0) == 42
    assert env.whole_seconds(VAR, 0) == 42
    setenv("0.25")
    assert env.seconds(VAR, 5) == 0.25
    assert env.number(VAR, None) == 0.25


def test_a_malformed_duration_names_the_variable_the_value_and_the_form(setenv):
    setenv("abc")

    message = refusal(lambda: env.seconds(VAR, 5))

    assert message.startswith(f"{VAR}='abc': expected a number of seconds")


@pytest.mark.parametrize("value", ["1.5", "ten", "1e3"])
def test_an_integer_refuses_what_is_not_a_whole_number(setenv, value):
    setenv(value)

    assert refusal(lambda: env.whole_seconds(VAR, 60)) == (
        f"{VAR}={value!r}: expected a whole number of seconds (at least 0)"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_refuses_what_is_not_finite(setenv, value):
    setenv(value)

    assert value in refusal(lambda: env.number(VAR, 1.0))


def test_a_minimum_refuses_smaller_values_and_says_so(setenv):
    setenv("-1")
    assert refusal(lambda: env.seconds(VAR, 5)) == f"{VAR}='-1': expected a number of seconds (at least 0)"

    setenv("0")
    assert refusal(lambda: env.integer(VAR, 3, minimum=1, expected="a number of attempts")) == (
        f"{VAR}='0': expected a number of attempts (at least 1)"
    )
    assert env.seconds(VAR, 5) == 0.0  # the minimum itself is allowed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("0", False), ("false", False), ("no", False),
     ("OFF", False)],
)
def test_booleans_take_the_usual_words(setenv, value, expected):
    setenv(value)

    assert env.boolean(VAR, not expected) is expected


def test_a_boolean_refuses_other_words(setenv):
    setenv("maybe")

    message = refusal(lambda: env.boolean(VAR))

    assert message == f"{VAR}='maybe': expected 1 or 0 (also true/false, yes/no, on/off)"


def test_a_choice_is_spelled_exactly(setenv):
    setenv("production")
    assert env.choice(VAR, "local", ("local", "production")) == "production"

    setenv("Production")
    assert refusal(lambda: env.choice(VAR, "local", ("local", "production"))) == (
        f"{VAR}='Production': expected one of 'local', 'production'"
    )


def test_a_comma_list_strips_items_and_drops_empty_ones(setenv):
    setenv(" a.example, ,b.example,,")

    assert env.comma_list(VAR) == ["a.example", "b.example"]


def test_a_url_set_empty_is_no_url_not_the_default(setenv):
    """RATE_LIMIT_REDIS_URL= keeps the rate limits in the database while REDIS_URL is set."""
    setenv("")

    assert env.url(VAR, ("redis",), "redis://host:6379/0", default="redis://cache:6379/0") == ""


def test_a_url_needs_one_of_its_schemes_and_a_numeric_port(setenv):
    schemes = ("redis", "rediss", "unix")
    setenv("rediss://:pw@cache.internal:6380/2")
    assert env.url(VAR, schemes, "redis://host:6379/0") == "rediss://:pw@cache.internal:6380/2"

    for bad in ("localhost:6379", "http://cache:6379/0", "redis://cache:port/0"):
        setenv(bad)
        assert refusal(lambda: env.url(VAR, schemes, "redis://host:6379/0")) == (
            f"{VAR}={bad!r}: expected a URL such as redis://host:6379/0"
        )


def test_a_refused_url_never_shows_its_password(setenv):
    setenv("redis://admin:hunter2@cache:port/0")

    message = refusal(lambda: env.url(VAR, ("redis",), "redis://host:6379/0"))

    assert "hunter2" not in message
    assert "redis://admin:***@cache:port/0" in message


def test_a_secret_is_named_but_never_shown():
    message = str(env.malformed("MASTER_KEYS", None, "Fernet keys"))

    assert message == "MASTER_KEYS=<hidden>: expected Fernet keys"


def test_parsed_turns_a_parsers_value_error_into_the_named_refusal(setenv):
    setenv("postgres://user:s3cret@db:5432/name")
    assert env.parsed(VAR, lambda raw: raw.upper(), "anything") == "POSTGRES://USER:S3CRET@DB:5432/NAME"

    def refuse(raw: str) -> str:
        raise ValueError("not this one")

    message = refusal(lambda: env.parsed(VAR, refuse, "a database URL"))

    assert message == f"{VAR}='postgres://user:***@db:5432/name': expected a database URL"


def test_json_must_parse_and_pass_its_check(setenv):
    def objects_by_name(value: object) -> bool:
        return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())

    def read() -> object:
        return env.json_value(VAR, "{}", valid=objects_by_name, expected="a JSON object of objects")

    setenv('{"transformers": {"cpu_threads": 2}}')
    assert read() == {"transformers": {"cpu_threads": 2}}

    for bad in ('{"transformers": 2}', "{not json", "[]"):
        setenv(bad)
        assert refusal(read) == f"{VAR}={bad!r}: expected a JSON object of objects"


def test_settings_read_the_environment_only_through_the_helper():
    """A new ``os.environ`` read in settings.py would skip the checks above."""
    source = Path(__file__).resolve().parents[2] / "llmagentos" / "settings.py"
    tree = ast.parse(source.read_text())

    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}

    assert "os" not in imported and "os" not in names
    assert "getenv" not in {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
