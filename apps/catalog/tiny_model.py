"""The tiny local model: a real Llama checkpoint small enough to build in a second.

`build_tiny_model(path)` trains a byte-level BPE tokenizer on the short English
text below, wraps it as a transformers fast tokenizer with a chat template,
creates a 2-layer Llama with random weights (fixed seed) and saves both with
``save_pretrained`` (safetensors). Nothing is downloaded: this is how the
platform gets a model on a machine that cannot reach a model hub.

The weights are random, so the text the model generates is meaningless by
design. The model exists so that the ``transformers`` adapter, the workers and
the streaming path can be tested and measured end to end with real
tokenization, a real chat template and real token-by-token generation, on
any machine and offline.

torch and transformers are imported inside the functions that need them:
importing this module (e.g. from the management command's module) stays cheap.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

# The tokenizer learns its merges from this text. Any English prose would do;
# it only has to cover common words so that prompts tokenize into a sensible
# number of tokens (a few characters each), not one token per byte.
CORPUS = """\
The platform accepts tasks from many tenants and runs them on shared workers. Each task names a model, a prompt
or a list of chat messages, and a limit on the number of tokens to generate. A scheduler decides which task runs
next: interactive work goes first, batch work waits, and a tenant that sends a flood of requests waits behind its
own work rather than in front of everyone else.

When a worker takes a task, it loads the model if it has not done so already, turns the prompt into tokens and
asks the model for one token at a time. Every new token is turned back into text and sent to the client as soon as
it is ready, so a person reading the answer sees it appear word by word. When the model produces its end token,
reaches the limit, or meets a stop sequence, the worker records the result and how many tokens it used.

Operators watch the queues, the workers and the usage of each tenant. They can pause a tenant, change a plan, add
a model or drain a worker before maintenance. Nothing a tenant wrote is stored without encryption, and no tenant
can see the tasks of another. If a worker dies in the middle of a task, its lease expires and another worker starts
the task again from the beginning.

A small model is useful for tests. It is quick to build, quick to load and quick to run, and it behaves like a large
one in every way that matters to the platform: it has a tokenizer, a chat template, a context window and a cache of
keys and values that makes each new token cheap. What it says is nonsense, because nobody trained it, and that is
fine: the tests check how the words arrive, not what they mean.

Questions and answers, numbers such as 1, 2, 3, 10, 42 and 2048, dates like 2026-01-31, and punctuation (commas,
colons: semicolons; quotes "like this" and 'this') all appear in real prompts, so they appear here too.
"""

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (BOS, EOS, PAD, IM_START, IM_END)  # ids 0..4, in this order

# ChatML-style turns. The generation prompt opens an assistant turn; the model
# ends it with <|im_end|>, which is therefore an end-of-generation token too.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

VOCAB_SIZE = 768
CONTEXT_LENGTH = 2048
SEED = 20260131

# Files whose presence means a directory holds a finished build.
BUILT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class TinyModelError(Exception):
    """The tiny model cannot be built at the requested place."""


def is_built(path: str | Path) -> bool:
    path = Path(path)
    return all((path / name).is_file() for name in BUILT_FILES)


def build_tiny_model(path: str | Path) -> Path:
    """Build the tiny model into ``path`` (absolute path returned); a finished build is left as it is.

    The files are written into a staging directory beside ``path`` and moved
    into place in one rename, so an interrupted build never looks finished and
    two concurrent builds of the same path both end with one complete model.
    """
    path = Path(path).expanduser().resolve()
    if is_built(path):
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TinyModelError(f"{path} exists and does not hold a built model; refusing to write into it")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it owner-only; workers may run as another user
        _write_model(staging)
        try:
            if path.is_dir():
                path.rmdir()  # the empty directory found above; rename needs it gone
            staging.rename(path)
        except OSError:
            if not is_built(path):  # else a concurrent build finished first: keep its result
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _write_model(directory: Path) -> None:
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(directory)
    build_random_model(tokenizer).save_pretrained(directory)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on CORPUS: any text round-trips exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # Byte-level: every byte has a token, so unseen characters (é, ✓, emoji)
    # still encode, and decode(encode(text)) == text for any text.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS.split("\n\n"), trainer=trainer)
    bos_id = backend.token_to_id(BOS)
    # A plain prompt starts with <s>, as it does for Llama models.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=CONTEXT_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_random_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A 2-layer Llama sized for ``tokenizer``, with random weights drawn from SEED."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    if not isinstance(im_end_id, int):  # one token in gives one id out; the signature has both cases
        raise TypeError(f"expected one id for {IM_END}, got {im_end_id!r}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in current Llamas
        max_position_embeddings=CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        # Generation ends at </s> or at the end of an assistant turn.
        eos_token_id=[tokenizer.eos_token_id, im_end_id],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    # fork_rng: seeding must not disturb the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    return model.eval()
