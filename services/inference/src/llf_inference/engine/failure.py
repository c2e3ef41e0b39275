"""Why an engine failed, in words a person can act on: the kind, the reason, and whether a restart helps.

Read from the engine's last log lines and its exit status; the rules are ordered so that the
root cause wins over the noise a dying vLLM prints after it.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """Why an engine failed, for a person: ``kind`` is stable, ``message`` is readable."""

    kind: str
    message: str
    permanent: bool  # restarting the same command cannot help

    def __str__(self) -> str:
        return self.message


# An illegal instruction kills a process with SIGILL (-4): the engine's kernels use an instruction
# this processor (or this process) may not run. Restarting runs the same kernels again; another
# dtype selects other kernels.
UNSUPPORTED_CPU = (
    "the engine's CPU kernels are not supported on this processor: a process of the engine died of SIGILL "
    "(illegal instruction); set LLF_INFERENCE_DTYPE=float32 (or the model's dtype override) and serve it again"
)

_RULES: Sequence[tuple[str, re.Pattern[str], str, bool]] = (
    (
        "unsupported_cpu",
        re.compile(r"died unexpectedly \(exit code: -4\)|Illegal instruction|signal SIGILL|\bSIGILL\b", re.I),
        UNSUPPORTED_CPU,
        True,
    ),
    (
        "out_of_memory",
        re.compile(
            r"out of memory|OutOfMemoryError|MemoryError|Cannot allocate memory|No available memory for the cache"
            r"|larger than the available KV cache memory|insufficient memory|not enough memory"
            r"|less than requested memory|Decrease --kv-cache-memory-bytes",
            re.I,
        ),
        "out of memory: the engine could not fit the model and its KV cache; lower max_model_len, "
        "cpu_kvcache_space or gpu_memory_utilization, or serve a smaller model",
        True,
    ),
    (
        "unsupported_architecture",
        re.compile(
            r"Model architectures? .* (are|is) not supported|not supported (for now|in-tree)"
            r"|was supported in vLLM until"
            r"|Unsupported CPU attention configuration|Unrecognized model|model type .* not recognized",
            re.I,
        ),
        "unsupported model: this vLLM build cannot run the model's architecture or shape",
        True,
    ),
    (
        "bad_weights",
        re.compile(
            r"SafetensorError|HeaderTooLarge|Error while deserializing|safetensors_rust|invalid load key|"
            r"Cannot find any model weights|size mismatch|unexpected EOF|incomplete metadata|"
            r"MetadataIncompleteBuffer|file is not a zip|PytorchStreamReader failed|"
            r"Missing key|no file named .*(safetensors|\.bin)|config\.json.*(not|missing)|JSONDecodeError",
            re.I,
        ),
        "bad weights: the engine could not load the model files; re-verify or re-pull the model",
        True,
    ),
    (
        "engine_missing",
        re.compile(r"No module named '?vllm|llf: cannot start the engine", re.I),
        "the engine cannot start: set LLF_INFERENCE_ENGINE_PYTHON to a Python with vllm, or run `make engine`",
        True,
    ),
    (
        "port_in_use",
        re.compile(r"Address already in use", re.I),
        "the engine's port was taken by another process",
        False,
    ),
)


def classify_failure(lines: Sequence[str], returncode: int | None) -> Failure:
    """Turn an engine's last log lines and exit status into one readable reason.

    The last matching line wins for each rule (the root cause is usually printed last) and
    the first rule in ``_RULES`` order that matches anywhere decides the kind.
    """
    for kind, pattern, message, permanent in _RULES:
        evidence = next((line for line in reversed(lines) if pattern.search(line)), None)
        if evidence is not None:
            return Failure(kind, f"{message} ({_strip_prefix(evidence)[:300]})", permanent)
    if returncode is not None and returncode == -signal.SIGILL:
        return Failure("unsupported_cpu", f"{UNSUPPORTED_CPU} (exit code {returncode})", True)
    if returncode is not None and returncode == -signal.SIGKILL:
        return Failure("killed", "the engine was killed (SIGKILL; possibly the kernel's out-of-memory killer)", False)
    if returncode is not None and returncode < 0:
        return Failure("killed", f"the engine was killed by signal {signal.Signals(-returncode).name}", False)
    last = next((_strip_prefix(line) for line in reversed(lines) if _looks_like_error(line)), None)
    status = f"exited with code {returncode}" if returncode is not None else "stopped answering"
    detail = f": {last[:300]}" if last else ""
    return Failure("crashed", f"the engine {status}{detail}", False)


_PREFIX = re.compile(
    r"^\((?:APIServer|EngineCore\w*|Worker\w*|VllmWorker[-\w]*) pid=\d+\)\s*(?:\w+ \d\d-\d\d [\d:]+ \[[^]]+\] )?"
)


def _strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line).strip()


def _looks_like_error(line: str) -> bool:
    text = _strip_prefix(line)
    return bool(re.match(r"^\w*(Error|Exception)\b|^ERROR|^RuntimeError|^ValueError", text)) or "Error:" in text
