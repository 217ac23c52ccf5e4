"""The pure graph helpers: cycles, critical-path ranks, order, literal substitution."""

from __future__ import annotations

import pytest

from apps.tasks import graph


def test_no_cycle_in_a_diamond():
    assert graph.find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None


@pytest.mark.parametrize(
    "depends_on, cycle",
    [
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"root": [], "x": ["root", "z"], "y": ["x"], "z": ["y"]}, ["x", "z", "y", "x"]),
    ],
)
def test_a_cycle_is_returned_as_a_path_back_to_its_start(depends_on, cycle):
    assert graph.find_cycle(depends_on) == cycle


def test_a_long_chain_does_not_exhaust_the_stack():
    chain = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(5000)}
    assert graph.find_cycle(chain) is None
    chain["n0"] = ["n4999"]
    assert graph.find_cycle(chain)[0] == "n0"


def test_rank_is_the_longest_chain_of_descendants():
    # a → b → c → d, and a → e (a short branch); f stands alone.
    depends_on = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "e": ["a"], "f": []}
    assert graph.critical_path_ranks(depends_on) == {"a": 3, "b": 2, "c": 1, "d": 0, "e": 0, "f": 0}


def test_order_puts_parents_first_and_otherwise_keeps_the_given_order():
    depends_on = {"c": ["b"], "x": [], "b": ["a"], "a": [], "join": ["x", "c"]}
    assert graph.topological_order(depends_on) == ["x", "a", "b", "c", "join"]


def test_order_refuses_a_cycle():
    with pytest.raises(ValueError):
        graph.topological_order({"a": ["b"], "b": ["a"]})


def test_references_in_prompt_and_message_contents():
    messages = [
        {"role": "system", "content": "plain"},
        {"role": "user", "content": "use {{ b.output }} and {{c-1.output}}"},
    ]
    assert list(graph.input_references("{{a.output}}", None)) == [("prompt", "a")]
    assert list(graph.input_references(None, messages)) == [("messages.1.content", "b"), ("messages.1.content", "c-1")]
    # Not references: another attribute, no closing braces, a name with a dot.
    assert graph.text_references("{{a.input}} {{a.output} {{a.b.output}} {{a}}") == []


def test_substitution_is_literal_and_never_expands_twice():
    nasty = r"{{b.output}} {% load x %} {{ request }} ${HOME} \1 \g<0>"
    text = "A said: {{a.output}} / B said: {{b.output}}"
    assert graph.substitute(text, {"a": nasty, "b": "bee"}) == f"A said: {nasty} / B said: bee"


def test_substitution_leaves_unknown_keys_as_written():
    assert graph.substitute("{{a.output}} {{zz.output}}", {"a": "x"}) == "x {{zz.output}}"


def test_substitute_input_touches_only_prompt_and_contents():
    payload = {
        "prompt": None,
        "messages": [{"role": "user", "content": "{{a.output}}", "name": "a"}],
        "stop": ["{{a.output}}"],
    }
    resolved = graph.substitute_input(payload, {"a": "done"})
    assert resolved["messages"] == [{"role": "user", "content": "done", "name": "a"}]
    assert resolved["stop"] == ["{{a.output}}"]
    assert payload["messages"][0]["content"] == "{{a.output}}"  # the original is not changed


def test_substitute_input_holds_each_field_to_the_limit_before_building_it():
    outputs = {"a": "x" * 1_000_000, "b": "yy"}
    text = "{{a.output}}" * 10_000  # 10 GB substituted: refused from its length alone
    assert graph.substituted_length(text, outputs) == 10_000 * 1_000_000
    assert graph.substituted_length("<{{ b.output }}{{zz.output}}>", outputs) == len("<yy{{zz.output}}>")

    with pytest.raises(graph.InputTooLong) as refused:
        graph.substitute_input({"prompt": text}, outputs)
    assert (refused.value.field, refused.value.limit) == ("prompt", graph.MAX_PROMPT_CHARS)

    fits = {"prompt": None, "messages": [{"role": "user", "content": "{{b.output}}"}] * 2}
    assert graph.substitute_input(fits, outputs, limit=2)["messages"][1]["content"] == "yy"
    with pytest.raises(graph.InputTooLong, match=r"messages\.1\.content would be 3 characters"):
        graph.substitute_input({"messages": [{"content": "ok"}, {"content": "{{b.output}}!"}]}, outputs, limit=2)
