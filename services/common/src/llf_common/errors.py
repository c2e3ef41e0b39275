"""One error vocabulary for all services.

Domain code raises these; each service's app maps them to HTTP with a single exception
handler (``llf_common.web``), and the CLI prints ``detail`` as one red line. Messages are
written for the person who will read them: they say what is wrong and how to fix it, and
never contain a secret.
"""

from __future__ import annotations


class LLFError(Exception):
    """Base of every expected failure; ``status_code`` is what HTTP says about it."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class ConfigError(LLFError):
    """The configuration (file or environment) is invalid."""

    status_code = 500
    code = "config_error"


class BadRequest(LLFError):
    status_code = 400
    code = "bad_request"


class Unauthorized(LLFError):
    status_code = 401
    code = "unauthorized"


class NotFound(LLFError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(LLFError):
    status_code = 405
    code = "method_not_allowed"


class Conflict(LLFError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(LLFError):
    status_code = 413
    code = "payload_too_large"


class InsufficientStorage(LLFError):
    status_code = 507
    code = "insufficient_storage"


class Unavailable(LLFError):
    """The service is up but cannot answer yet (engine restarting, Redis down)."""

    status_code = 503
    code = "unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class UpstreamError(LLFError):
    """A dependency (hub, engine, registry) answered with an error we pass on."""

    status_code = 502
    code = "upstream_error"
