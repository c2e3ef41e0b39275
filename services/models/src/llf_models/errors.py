"""The registry's own failures, on top of ``llf_common.errors``.

``Permanent`` marks failures a retry cannot fix (a corrupt file on the hub, a missing repo, a
full disk): the job function turns off RQ's retries before re-raising them, so a bad pull
fails once, with its message, instead of three times.
"""

from __future__ import annotations

from llf_common.errors import InsufficientStorage, LLFError, NotFound


class Permanent:
    """Mixin: retrying the job would fail the same way."""


class ChecksumMismatch(LLFError, Permanent):
    """A downloaded or stored file does not hash to what the manifest or the hub says."""

    status_code = 502
    code = "checksum_mismatch"

    def __init__(self, path: str, expected: str, actual: str, *, algorithm: str = "sha256") -> None:
        super().__init__(f"{path}: {algorithm} mismatch: expected {expected}, got {actual}")
        self.path = path
        self.expected = expected
        self.actual = actual


class CorruptFile(LLFError, Permanent):
    """A file is structurally broken (safetensors header, config.json, wrong size)."""

    status_code = 502
    code = "corrupt_file"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class JobCanceled(LLFError, Permanent):
    """The job was asked to stop (``DELETE /v1/jobs/{id}``)."""

    status_code = 409
    code = "canceled"


class HubFailure(LLFError, Permanent):
    """The hub refused for a reason a retry will not change (404, gated, 401)."""

    status_code = 502
    code = "hub_error"


class LockTimeout(LLFError):
    """Another job kept the repo's write lock for longer than ``lock_wait_s``."""

    status_code = 409
    code = "locked"


class LockLost(LLFError):
    """This job's repo lock expired or was taken over (its worker looked dead): it must not write on.

    Not permanent: the job was handed to another worker, and running it again is harmless.
    """

    status_code = 409
    code = "lock_lost"


class PartialLost(LockLost):
    """Another writer took this download's partial file over (this one was presumed dead)."""


class InvalidInput(LLFError):
    """Well-formed JSON whose values make no sense (relative import path, bad model id in a URL)."""

    status_code = 422
    code = "invalid_request"


class Missing(NotFound, Permanent):
    """What a job was asked to work on does not exist (and will not appear by retrying)."""


class Superseded(LLFError, Permanent):
    """What a job was asked to work on changed while it waited for the repo lock (a newer pull)."""

    status_code = 409
    code = "superseded"


class UnsafeImport(LLFError, Permanent):
    """An imported directory holds a link that leads out of it (a key, a system file)."""

    status_code = 422
    code = "unsafe_import"


class ImportNotAllowed(LLFError, Permanent):
    """The directory to import is not under one of the configured ``import_roots``."""

    status_code = 403
    code = "import_not_allowed"


class DiskFull(InsufficientStorage, Permanent):
    """Not enough free space for the download plus the configured margin."""


class VerifyFailed(LLFError, Permanent):
    """Files of a stored model are missing or do not match their manifest."""

    status_code = 409
    code = "verify_failed"
