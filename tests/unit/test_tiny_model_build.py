"""build_tiny_model: a loadable Llama checkpoint and tokenizer, built offline, reproducibly, once."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.catalog.tiny_model import BUILT_FILES, CONTEXT_LENGTH, build_tiny_model, is_built

LOCAL = {"local_files_only": True}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("build") / "tiny")


def test_writes_a_llama_config_safetensors_weights_and_a_tokenizer(built):
    from transformers import AutoConfig, LlamaConfig

    assert is_built(built)
    assert all((built / name).is_file() for name in BUILT_FILES)
    assert not list(built.glob("*.bin")), "weights are safetensors only, never pickles"
    config = AutoConfig.from_pretrained(built, **LOCAL)
    assert isinstance(config, LlamaConfig)
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 4)
    assert config.max_position_embeddings == CONTEXT_LENGTH
    assert 512 <= config.vocab_size <= 1000


def test_the_model_loads_with_every_weight_from_the_file(built):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(built, output_loading_info=True, **LOCAL)
    assert isinstance(model, LlamaForCausalLM)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


@pytest.mark.parametrize(
    "text",
    [
        "The scheduler runs interactive tasks first.",
        "  leading spaces, tabs\tand\nnew lines  ",
        "naïve café — 温度 ✓ 🚀",  # characters the corpus never had still round-trip (byte-level BPE)
        "",
    ],
)
def test_tokenizer_round_trips_text(built, text):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built, **LOCAL)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text


def test_tokenizer_learned_english_and_starts_prompts_with_bos(built):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built, **LOCAL)
    text = "When a worker takes a task, it loads the model and sends the answer to the client."
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) < len(text) / 3, "common words should be a token or two each, not one token per byte"


def test_chat_template_renders_turns_and_the_generation_prompt(built):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built, **LOCAL)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    )
    special = set(tokenizer.all_special_ids)
    ids = tokenizer(rendered, add_special_tokens=False).input_ids
    assert sum(i in special for i in ids) == 6  # <s>, three <|im_start|>, two <|im_end|>: each a single token


def test_building_again_leaves_the_model_untouched(built):
    before = {name: (built / name).stat().st_mtime_ns for name in BUILT_FILES}
    assert build_tiny_model(built) == built
    assert {name: (built / name).stat().st_mtime_ns for name in BUILT_FILES} == before


def test_the_build_is_reproducible_and_leaves_global_randomness_alone(built, tmp_path):
    import torch

    rng_before = torch.get_rng_state()
    again = build_tiny_model(tmp_path / "again")
    assert torch.equal(torch.get_rng_state(), rng_before), "building must not reseed the caller's torch RNG"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (built / name).read_bytes(), name


def test_command_prints_only_the_path_and_is_idempotent(built, tmp_path):
    out = io.StringIO()
    call_command("build_tiny_model", str(built), stdout=out)
    assert out.getvalue() == f"{built}\n"

    target = tmp_path / "parents" / "made" / "too"
    out = io.StringIO()
    call_command("build_tiny_model", str(target), stdout=out)
    assert out.getvalue() == f"{target.resolve()}\n"
    assert is_built(target)


def test_command_refuses_a_directory_holding_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(CommandError, match="does not hold a built model"):
        call_command("build_tiny_model", str(tmp_path), stdout=io.StringIO())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_existing_empty_directory_is_built_into_without_leftovers(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    assert build_tiny_model(target) == target
    assert is_built(target)
    assert [p.name for p in tmp_path.iterdir()] == ["empty"], "the staging directory must not be left behind"
