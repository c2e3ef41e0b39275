"""Settings of the web pages (section ``web`` of the config file, variables ``LLF_WEB_<KEY>``).

The shared keys (``LLF_INFERENCE_URL``, ``LLF_MODELS_URL``, ``LLF_API_KEY`` ...) come from
``LLFSettings``: the web service reaches both services with the same key the browser must enter.
"""

from __future__ import annotations

from llf_common.settings import LLFSettings
from pydantic import Field


class WebSettings(LLFSettings):
    """Where the pages listen and how long they wait for the services behind them."""

    section = "web"

    host: str = Field("127.0.0.1", description="Address the web pages listen on.")
    port: int = Field(8080, description="Port of the web pages.", ge=0, le=65535)
    connect_timeout_s: float = Field(5.0, description="Connecting to the gateway or the registry.", gt=0)
    request_timeout_s: float = Field(
        30.0, description="One non-streaming call to a service (a stream waits as long as it produces).", gt=0
    )
    status_interval_s: float = Field(2.0, description="How often the Status page refreshes itself.", gt=0)
    secure_cookie: bool = Field(False, description="Mark the session cookie Secure (set it behind HTTPS).")
