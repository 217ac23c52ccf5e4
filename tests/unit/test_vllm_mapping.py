"""The vllm adapter's pure translations: request → engine inputs, DELTA outputs → usage."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from apps.catalog.adapters import AdapterConfigError, ChatMessage, GenerationRequest, Usage
from apps.scheduler.dispatch import HUEY_PRIORITY
from plugins.vllm import mapping
from plugins.vllm.config import estimated_gpu_memory_bytes, parse_config

CLASSES = ("interactive", "normal", "batch")


def _request(**fields) -> GenerationRequest:
    defaults = dict(request_id="r1", prompt="hi", messages=None, max_tokens=64)
    return GenerationRequest(**{**defaults, **fields})


def _output(text: str, token_ids, *, prompt_ids=(1, 2, 3), finished=False, finish_reason=None):
    """Shaped like vllm.outputs.RequestOutput under RequestOutputKind.DELTA."""
    return SimpleNamespace(
        prompt_token_ids=list(prompt_ids),
        outputs=[SimpleNamespace(text=text, token_ids=list(token_ids), finish_reason=finish_reason)],
        finished=finished,
    )


# -- priority ---------------------------------------------------------------


def test_priority_runs_interactive_first_in_vllms_order_lower_first():
    assert [mapping.vllm_priority(c) for c in CLASSES] == sorted(mapping.vllm_priority(c) for c in CLASSES)
    assert mapping.vllm_priority("interactive") < mapping.vllm_priority("normal") < mapping.vllm_priority("batch")


def test_priority_order_is_the_reverse_of_hueys():
    # Huey runs HIGHER values first, vLLM's priority policy LOWER values first:
    # the same classes must come out in the same order from both.
    by_huey = sorted(CLASSES, key=lambda c: -HUEY_PRIORITY[c])
    by_vllm = sorted(CLASSES, key=mapping.vllm_priority)
    assert by_huey == by_vllm == list(CLASSES)


def test_unknown_priority_class_runs_as_normal():
    assert mapping.vllm_priority("urgent") == mapping.vllm_priority("normal")


# -- sampling ---------------------------------------------------------------


@pytest.mark.parametrize("temperature", [None, 0, 0.0])
def test_no_or_zero_temperature_is_greedy_and_drops_top_p(temperature):
    kwargs = mapping.sampling_kwargs(_request(temperature=temperature, top_p=0.5))
    assert kwargs == {"max_tokens": 64, "temperature": 0.0}


def test_sampling_passes_temperature_top_p_seed_and_max_tokens():
    kwargs = mapping.sampling_kwargs(_request(max_tokens=7, temperature=0.8, top_p=0.9, seed=42))
    assert kwargs == {"max_tokens": 7, "temperature": 0.8, "top_p": 0.9, "seed": 42}


def test_seed_is_kept_under_greedy_and_top_p_left_to_vllm_when_absent():
    assert mapping.sampling_kwargs(_request(seed=0)) == {"max_tokens": 64, "temperature": 0.0, "seed": 0}
    assert "top_p" not in mapping.sampling_kwargs(_request(temperature=1.0))


def test_stop_sequences_are_passed_as_a_list_without_empty_ones():
    kwargs = mapping.sampling_kwargs(_request(stop=("\n\n", "", "END")))
    assert kwargs["stop"] == ["\n\n", "END"]
    assert "stop" not in mapping.sampling_kwargs(_request(stop=("",)))


# -- LoRA -------------------------------------------------------------------


def test_lora_ids_are_positive_unique_and_stable_by_name():
    modules = mapping.lora_modules({"support": "/loras/support", "legal": "/loras/legal"})
    assert modules["legal"] == mapping.LoraModule("legal", 1, "/loras/legal")
    assert modules["support"] == mapping.LoraModule("support", 2, "/loras/support")
    # Same names, other order: same ids.
    assert mapping.lora_modules({"legal": "/x", "support": "/y"})["support"].int_id == 2


def test_lora_selection_uses_the_models_default_or_none():
    modules = mapping.lora_modules({"legal": "/loras/legal"})
    assert mapping.select_lora(modules, "legal") == modules["legal"]
    assert mapping.select_lora(modules, None) is None
    with pytest.raises(ValueError):
        mapping.select_lora(modules, "missing")


# -- prompt -----------------------------------------------------------------


def test_prompt_is_passed_through_and_messages_go_through_the_chat_template():
    seen = {}

    def template(messages, **kwargs):
        seen.update(messages=messages, **kwargs)
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"

    assert mapping.prompt_text(_request(prompt="raw text"), template) == "raw text"
    messages = (ChatMessage("system", "be brief"), ChatMessage("user", "hello"))
    text = mapping.prompt_text(_request(prompt=None, messages=messages), template)
    assert text == "system:be brief|user:hello|assistant:"
    assert seen["tokenize"] is False and seen["add_generation_prompt"] is True


def test_chat_requests_fail_as_value_errors_when_the_template_cannot_serve_them():
    messages = (ChatMessage("user", "hello"),)

    def no_template(messages, **kwargs):
        raise ValueError("tokenizer.chat_template is not set")

    with pytest.raises(ValueError, match="chat template"):
        mapping.prompt_text(_request(prompt=None, messages=messages), no_template)
    with pytest.raises(ValueError):
        mapping.prompt_text(_request(prompt=None, messages=messages), None)
    with pytest.raises(ValueError):
        mapping.prompt_text(_request(prompt=None, messages=None), None)


# -- outputs and usage --------------------------------------------------------


def test_usage_sums_the_new_token_ids_of_every_delta():
    counter = mapping.UsageCounter()
    texts = [
        counter.add(mapping.delta_of(output))
        for output in (
            _output("Hel", [11], prompt_ids=range(5)),
            _output("lo, wor", [12, 13, 14], prompt_ids=range(5)),
            _output("ld", [15], prompt_ids=range(5), finished=True, finish_reason="stop"),
        )
    ]
    assert texts == ["Hel", "lo, wor", "ld"]
    assert counter.usage() == Usage(prompt_tokens=5, completion_tokens=5)
    assert counter.finish_reason == "stop"


def test_an_abort_output_adds_nothing_and_ends_the_request():
    delta = mapping.delta_of(_output("", [], finished=True, finish_reason="abort"))
    assert (delta.text, delta.new_tokens, delta.finished, delta.finish_reason) == ("", 0, True, "abort")


def test_usage_with_no_outputs_is_zero():
    assert mapping.UsageCounter().usage() == Usage(prompt_tokens=0, completion_tokens=0)


# -- adapter_config → engine args ---------------------------------------------


def test_engine_args_always_use_the_priority_scheduling_policy():
    args = parse_config({"model": "/models/llama"}, {}).engine_args()
    assert args == {"model": "/models/llama", "dtype": "auto", "tensor_parallel_size": 1,
                    "scheduling_policy": "priority"}


def test_engine_args_carry_the_configured_engine_and_lora_settings():
    settings = parse_config(
        {"model": "/models/llama", "dtype": "bfloat16", "gpu_memory_utilization": 0.8, "max_model_len": 4096,
         "tensor_parallel_size": 2, "lora_modules": {"legal": "/loras/legal"}, "lora": "legal", "max_loras": 2,
         "max_lora_rank": 16},
        {},
    )
    assert settings.engine_args() == {
        "model": "/models/llama", "dtype": "bfloat16", "gpu_memory_utilization": 0.8, "max_model_len": 4096,
        "tensor_parallel_size": 2, "scheduling_policy": "priority", "enable_lora": True, "max_loras": 2,
        "max_lora_rank": 16,
    }
    assert settings.default_lora == "legal"


def test_plugin_settings_are_defaults_under_the_models_config():
    settings = parse_config({"model": "/m", "dtype": "float16"}, {"dtype": "bfloat16", "gpu_memory_utilization": 0.7})
    assert (settings.dtype, settings.gpu_memory_utilization) == ("float16", 0.7)


@pytest.mark.parametrize(
    "config, key",
    [
        ({}, "model"),
        ({"model": "meta-llama/Llama-3-8B"}, "model"),  # a Hub id: workers never download
        ({"model": "models/llama"}, "model"),
        ({"model": "/m", "dtype": "int3"}, "dtype"),
        ({"model": "/m", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"model": "/m", "max_model_len": 0}, "max_model_len"),
        ({"model": "/m", "tensor_parallel_size": "2"}, "tensor_parallel_size"),
        ({"model": "/m", "lora_modules": {"legal": "relative/legal"}}, "lora_modules.legal"),
        ({"model": "/m", "lora_modules": ["/loras/legal"]}, "lora_modules"),
        ({"model": "/m", "lora": "legal"}, "lora"),
        ({"model": "/m", "gpu_memory_bytes": -1}, "gpu_memory_bytes"),
    ],
)
def test_bad_adapter_config_names_the_key(config, key):
    with pytest.raises(AdapterConfigError) as caught:
        parse_config(config, {})
    assert caught.value.key == key


def test_memory_estimate_is_the_safetensors_weights_times_1_3(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"x" * 500)
    (tmp_path / "config.json").write_text("{}")
    assert estimated_gpu_memory_bytes(str(tmp_path)) == 1950


def test_memory_estimate_counts_only_the_files_the_index_names(tmp_path):
    (tmp_path / "model-00001-of-00001.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "consolidated.safetensors").write_bytes(b"x" * 1000)  # a second copy vLLM does not load
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00001.safetensors", "b": "model-00001-of-00001.safetensors"}}'
    )
    assert estimated_gpu_memory_bytes(str(tmp_path)) == 1300


def test_memory_estimate_of_a_directory_not_on_this_machine_is_zero(tmp_path):
    assert estimated_gpu_memory_bytes(str(tmp_path / "absent")) == 0
