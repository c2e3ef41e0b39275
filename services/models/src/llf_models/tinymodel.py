"""A deterministic tiny Llama model, written without torch and without a hub.

Why it exists: tests need a real model that a real vLLM CPU engine loads in seconds, the hub
stand-in needs repos to serve, and ``make up`` needs a demo model when no hub is reachable.
The directory looks like a Hugging Face snapshot of a Llama-3-style chat model: a
``config.json``, ``generation_config.json``, a byte-level BPE ``tokenizer.json`` trained here
on local text, a ``tokenizer_config.json`` with a chat template, and ``model.safetensors``.

Guarantee: the same seed on the same machine writes byte-identical files (the corpus is a
fixed list of license texts shipped by Debian's ``base-files``, with a built-in fallback);
different seeds give different weights. The weights are random, so the model talks nonsense
(printable, license-flavoured, never-ending) - but it talks, which is all a test needs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

HIDDEN = 128
INTERMEDIATE = 256
LAYERS = 2
HEADS = 2
KV_HEADS = 1
HEAD_DIM = HIDDEN // HEADS
VOCAB = 512
MAX_POSITIONS = 2048
EMBED_STD = 0.02
LINEAR_STD = 0.2
QUIET_SCALE = 0.1

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
EOT = "<|eot_id|>"
SPECIAL_TOKENS = (BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", EOT)

# Llama-3 headers, and Hermes-style tools (as Qwen2.5's): with ``tools``, a system turn lists them in
# <tools></tools> and asks for <tool_call>{"name", "arguments"}</tool_call>; assistant tool calls and
# ``tool`` results are rendered back the same way. Without tools the prompt is what it always was.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\n# Tools\\n\\n<tools>' }}"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, '
    '\\"arguments\\": <args-json-object>}\\n</tool_call><|eot_id|>\' }}'
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ (message['content'] or '') | trim }}"
    "{% for call in message.get('tool_calls') or [] %}"
    "{{ '\\n<tool_call>\\n{\\\"name\\\": \\\"' + call['function']['name'] + '\\\", \\\"arguments\\\": ' }}"
    "{{ call['function']['arguments'] if call['function']['arguments'] is string "
    "else call['function']['arguments'] | tojson }}{{ '}\\n</tool_call>' }}"
    "{% endfor %}"
    "{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Stable texts (their wording does not change between Debian releases), in a fixed order.
CORPUS_DIR = Path("/usr/share/common-licenses")
CORPUS_FILES = ("Apache-2.0", "BSD", "GPL-2", "GPL-3", "LGPL-2.1", "MPL-2.0")
FALLBACK_CORPUS = (
    "The quick brown fox jumps over the lazy dog. Hello, world! How are you today? "
    "I am a tiny language model used for testing the local LLM framework. "
    "Models are pulled from the hub, verified, and served by the inference gateway. "
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software. "
) * 20


FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def corpus() -> list[str]:
    """The tokenizer's training text: license texts if present, else the built-in paragraph."""
    texts = [
        (CORPUS_DIR / name).read_text(encoding="utf-8", errors="replace")
        for name in CORPUS_FILES
        if (CORPUS_DIR / name).is_file()
    ]
    return texts or [FALLBACK_CORPUS]


def config() -> dict[str, Any]:
    """``config.json`` as transformers' ``LlamaConfig`` writes it."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": VOCAB,
        "max_position_embeddings": MAX_POSITIONS,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": EMBED_STD,
        "pretraining_tp": 1,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": [SPECIAL_TOKENS.index(EOS), SPECIAL_TOKENS.index(EOT)],
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def generation_config() -> dict[str, Any]:
    return {
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": [SPECIAL_TOKENS.index(EOS), SPECIAL_TOKENS.index(EOT)],
    }


def tokenizer_json() -> str:
    """Train a byte-level BPE with ``VOCAB`` entries (special tokens first, ids 0..4).

    The BPE trainer breaks ties between equally frequent merges by the pair itself, so the
    result does not depend on thread scheduling; the serialized JSON is byte-stable.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_chunks(corpus()), trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    return tokenizer.to_str(pretty=True)


def _chunks(texts: list[str]) -> Iterator[str]:
    for text in texts:
        yield from text.splitlines(keepends=True)


def tokenizer_config() -> dict[str, Any]:
    return {
        "added_tokens_decoder": {
            str(i): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, token in enumerate(SPECIAL_TOKENS)
        },
        "bos_token": BOS,
        "eos_token": EOT,
        "pad_token": EOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MAX_POSITIONS,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def special_tokens_map() -> dict[str, Any]:
    return {"bos_token": BOS, "eos_token": EOT, "pad_token": EOS}


def weights(seed: int, quiet_ids: Collection[int] = ()) -> dict[str, np.ndarray]:
    """Llama's tensor names and shapes: random linears, unit norms, tied embeddings.

    The linears are drawn larger than a real init (``LINEAR_STD``) so the random network
    mixes its input instead of echoing the last prompt token forever; the embedding rows of
    ``quiet_ids`` are shrunk so that greedy decoding rarely picks them (see ``quiet_token_ids``).
    """
    rng = np.random.default_rng(seed)

    def linear(out_features: int, in_features: int, std: float = LINEAR_STD) -> np.ndarray:
        return rng.normal(0.0, std, size=(out_features, in_features)).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(HIDDEN, dtype=np.float32)

    embeddings = linear(VOCAB, HIDDEN, EMBED_STD)
    embeddings[sorted(quiet_ids)] *= QUIET_SCALE
    tensors = {"model.embed_tokens.weight": embeddings}
    for i in range(LAYERS):
        prefix = f"model.layers.{i}"
        tensors[f"{prefix}.self_attn.q_proj.weight"] = linear(HEADS * HEAD_DIM, HIDDEN)
        tensors[f"{prefix}.self_attn.k_proj.weight"] = linear(KV_HEADS * HEAD_DIM, HIDDEN)
        tensors[f"{prefix}.self_attn.v_proj.weight"] = linear(KV_HEADS * HEAD_DIM, HIDDEN)
        tensors[f"{prefix}.self_attn.o_proj.weight"] = linear(HIDDEN, HEADS * HEAD_DIM)
        tensors[f"{prefix}.mlp.gate_proj.weight"] = linear(INTERMEDIATE, HIDDEN)
        tensors[f"{prefix}.mlp.up_proj.weight"] = linear(INTERMEDIATE, HIDDEN)
        tensors[f"{prefix}.mlp.down_proj.weight"] = linear(HIDDEN, INTERMEDIATE)
        tensors[f"{prefix}.input_layernorm.weight"] = norm()
        tensors[f"{prefix}.post_attention_layernorm.weight"] = norm()
    tensors["model.norm.weight"] = norm()
    return tensors


def quiet_token_ids(tokenizer: str) -> set[int]:
    """Special tokens and tokens that are not printable ASCII (control bytes, UTF-8 pieces).

    Shrinking their embeddings keeps the model's nonsense readable and makes end-of-sequence
    practically never chosen: a generation runs to ``max_tokens`` (``finish_reason`` "length").
    """
    byte_of = {char: byte for byte, char in _bytes_to_unicode().items()}
    vocab: dict[str, int] = json.loads(tokenizer)["model"]["vocab"]
    quiet = set(range(len(SPECIAL_TOKENS)))
    for token, token_id in vocab.items():
        if token in SPECIAL_TOKENS or not all(
            ch in byte_of and (32 <= byte_of[ch] < 127 or byte_of[ch] == 10) for ch in token
        ):
            quiet.add(token_id)
    return quiet


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table that byte-level BPE vocabularies are spelled in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write the model into ``out_dir`` (created if needed) and return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "config.json", config())
    _write_json(out_dir / "generation_config.json", generation_config())
    tokenizer = tokenizer_json()
    (out_dir / "tokenizer.json").write_text(tokenizer + "\n", encoding="utf-8")
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config())
    _write_json(out_dir / "special_tokens_map.json", special_tokens_map())
    save_file(weights(seed, quiet_token_ids(tokenizer)), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for path in out_dir.iterdir():
        if path.name in FILES:
            path.chmod(0o644)  # safetensors creates 0600; served and mounted files must be readable
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """``llf-tiny-model OUT [--seed N]``."""
    parser = argparse.ArgumentParser(prog="llf-tiny-model", description="Write a tiny random Llama model directory.")
    parser.add_argument("out", type=Path, help="directory to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    args = parser.parse_args(argv)
    print(write_tiny_model(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
