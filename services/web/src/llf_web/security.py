"""Who may use the pages, and which requests may change something: no framework here.

- **Session.** With ``LLF_API_KEY`` set, the login form sends the key once; the reply sets a
  cookie holding ``HMAC(key, "llf-web-session")`` (HttpOnly, SameSite=Strict), so the key itself
  never travels again and no page script can read the cookie. The token is derived from the key
  alone: a restarted web service still accepts it, and changing the key logs everyone out.
- **CSRF.** A state-changing request must carry the page's CSRF token (``X-CSRF-Token`` header
  or the login form's ``csrf`` field) and, when the browser names an ``Origin``, come from this
  origin. SameSite=Strict already keeps the cookie off cross-site requests; the token also covers
  the case without a key, where there is no cookie to withhold.
- **CSP.** Scripts and styles only from this origin, no inline script or handler, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from pydantic import SecretStr

SESSION_COOKIE = "llf_session"
CSRF_HEADER = "X-CSRF-Token"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    # Not no-referrer: under it Chromium sends "Origin: null" with same-origin form posts.
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


def _mac(key: bytes, label: bytes) -> str:
    return hmac.new(key, label, hashlib.sha256).hexdigest()


class Guard:
    """Checks sessions and CSRF tokens for one web service process."""

    def __init__(self, api_key: SecretStr | None, csrf_secret: bytes | None = None) -> None:
        self._key = api_key.get_secret_value().encode() if api_key else None
        # With a key the CSRF token is derived from it (pages stay valid across restarts);
        # without one a per-process secret is enough: a restart only asks for a reload.
        self._csrf_key = csrf_secret or (self._key if self._key else secrets.token_bytes(32))

    @property
    def required(self) -> bool:
        """Whether the pages need a login (``LLF_API_KEY`` is set)."""
        return self._key is not None

    def key_matches(self, given: str) -> bool:
        return self._key is not None and hmac.compare_digest(given.encode(), self._key)

    def session_token(self) -> str:
        assert self._key is not None, "no session without an API key"
        return _mac(self._key, b"llf-web-session")

    def session_ok(self, cookie: str | None) -> bool:
        """True without a key; with one, the cookie must hold this key's session token."""
        if self._key is None:
            return True
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session_token().encode())

    def csrf_token(self) -> str:
        return _mac(self._csrf_key, b"llf-web-csrf")

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf_token().encode())


def same_origin(origin: str | None, host: str | None, fetch_site: str | None = None) -> bool:
    """Whether a request's ``Origin`` (if the browser sent one) is the host it was sent to.

    ``Sec-Fetch-Site: cross-site`` or ``same-site`` (another port or subdomain) is refused outright;
    a request without ``Origin`` (curl, old browsers) is left to the CSRF token.
    """
    if fetch_site in {"cross-site", "same-site"}:
        return False
    if not origin:
        return True
    if origin == "null":  # an opaque origin: only the browser's own same-origin label vouches for it
        return fetch_site == "same-origin"
    if not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
