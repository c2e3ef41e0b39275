"""Verification of a model's files, in two independent halves.

- ``hashing``: every file is byte for byte what the hub published (sha256 / git blob sha1).
- ``structure``: the bytes form a model an engine can load (safetensors headers that tile their
  data section, a ``config.json`` object, a known architecture), and what that tells us
  (parameters, dtype, weight memory, context length).

The names the registry uses are re-exported here.
"""

from llf_models.verify.hashing import READ_BYTES, FileProblem, Hasher, compare_files, hash_file
from llf_models.verify.structure import (
    SUPPORTED_ARCHITECTURES,
    TensorStats,
    architecture_of,
    architecture_warning,
    check_config,
    check_safetensors,
    context_length_of,
    summarize,
)

__all__ = [
    "READ_BYTES",
    "SUPPORTED_ARCHITECTURES",
    "FileProblem",
    "Hasher",
    "TensorStats",
    "architecture_of",
    "architecture_warning",
    "check_config",
    "check_safetensors",
    "compare_files",
    "context_length_of",
    "hash_file",
    "summarize",
]
