"""Settings base shared by every llf service.

Precedence, highest first: environment variables > the JSON config file (``LLF_CONFIG``,
default ``$LLF_HOME/config.json`` = ``~/.llf/config.json``) > defaults that work out of the
box on one machine.

One naming rule for environment variables, in every service:

- a shared key (a field of ``LLFSettings``) is ``LLF_<KEY>``: ``LLF_HOME``, ``LLF_API_KEY``;
  plus the ecosystem's own ``REDIS_URL``, ``HF_ENDPOINT``, ``HF_TOKEN``;
- a service's own key is ``LLF_<SERVICE>_<KEY>``: ``LLF_MODELS_PORT``, ``LLF_INFERENCE_DTYPE``,
  ``LLF_CLI_TEMPERATURE``.

Nothing else is read: no bare ``HOST`` or ``PORT`` from the shell. Spellings of an earlier
release (``LLF_DTYPE`` for ``LLF_INFERENCE_DTYPE``) still work for one release, with a warning
logged once per process; the new name wins when both are set.

The config file is one JSON object shared by all services: top-level keys are the common
settings of this base class; each service's own keys live in a section named after the
service (``{"models": {...}, "inference": {...}, "cli": {...}}``), so a key that one
service does not know is still an error for the service that owns the section.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_serializer, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from llf_common.errors import ConfigError

SECTIONS: frozenset[str] = frozenset({"models", "inference", "cli", "web"})
DEFAULT_HOME = Path("~/.llf")
# Shared keys read from the ecosystem's names instead of (or besides) LLF_<KEY>.
ECOSYSTEM_ENV: dict[str, tuple[str, ...]] = {
    "redis_url": ("REDIS_URL", "LLF_REDIS_URL"),
    "hf_endpoint": ("HF_ENDPOINT",),
    "hf_token": ("HF_TOKEN",),
}

log = logging.getLogger(__name__)
_S = TypeVar("_S")
_warned: set[str] = set()


def settings_or_exit(program: str, load: Callable[[], _S]) -> _S:
    """``load()``, or exit 2 with the ``ConfigError`` as one line on stderr: what a program does first.

    The message names the variable or key to fix (``describe_validation_error``); a traceback
    would only bury it. ``program`` is the command's name, the line's prefix (``llf-models: ...``).
    """
    try:
        return load()
    except ConfigError as exc:
        print(f"{program}: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None


def default_home() -> Path:
    """``LLF_HOME`` or ``~/.llf``, expanded; read directly because it locates the file."""
    return Path(os.environ.get("LLF_HOME") or DEFAULT_HOME).expanduser()


def config_path() -> Path:
    """Where the JSON config file is looked for (it need not exist)."""
    explicit = os.environ.get("LLF_CONFIG")
    return Path(explicit).expanduser() if explicit else default_home() / "config.json"


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse the config file; a missing file is an empty config, a broken one an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object, not {type(data).__name__}")
    return data


class JsonConfigSource(PydanticBaseSettingsSource):
    """Feeds the common keys plus this service's section of the config file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.path = path
        section = getattr(settings_cls, "section", None)
        self.data = by_field_name(settings_cls, self._select(read_config_file(path), section, path))

    @staticmethod
    def _select(raw: dict[str, Any], section: str | None, path: Path | None = None) -> dict[str, Any]:
        selected = {k: v for k, v in raw.items() if k not in SECTIONS}
        if section is not None:
            own = raw.get(section, {})
            if not isinstance(own, dict):
                raise ConfigError(f"config file {path or config_path()}: section '{section}' must be a JSON object")
            selected.update(own)
        return selected

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")


def mask_url_password(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://:***@host``: a URL as it may appear in logs and output."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def spellings(cls: type[BaseSettings], *, case_insensitive: bool = False) -> dict[str, str]:
    """Every accepted key of a field (its name and its aliases) -> the field name."""
    names: dict[str, str] = {}
    for name, field in cls.model_fields.items():
        keys = [name]
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys += [choice for choice in alias.choices if isinstance(choice, str)]
        elif isinstance(alias, str):
            keys.append(alias)
        for key in keys:
            names[key.lower() if case_insensitive else key] = name
    return names


def by_field_name(cls: type[BaseSettings], data: dict[str, Any], *, case_insensitive: bool = False) -> dict[str, Any]:
    """Re-key ``data`` by field name, so that sources merge per field whatever alias each one used.

    Without this, ``REDIS_URL`` from the environment and ``redis_url`` from the file would reach
    pydantic as two inputs for one field, and the second would be rejected as an unknown key.
    Unknown keys are kept as they are, so they are still reported.
    """
    names = spellings(cls, case_insensitive=case_insensitive)
    return {names.get(key.lower() if case_insensitive else key, key): value for key, value in data.items()}


def env_names(cls: type[LLFSettings], field_name: str) -> tuple[str, ...]:
    """The variables a field is read from, in order: the current name(s), then old spellings."""
    if field_name in LLFSettings.model_fields:
        return ECOSYSTEM_ENV.get(field_name, (f"LLF_{field_name.upper()}",))
    current = f"LLF_{(cls.section or '').upper()}_{field_name.upper()}"
    return (current, *legacy_env_names(cls, field_name))


def legacy_env_names(cls: type[LLFSettings], field_name: str) -> tuple[str, ...]:
    """Spellings of a service key from an earlier release (accepted with a warning)."""
    return (f"LLF_{field_name.upper()}",) if field_name in cls.legacy_env_fields else ()


class _Environment(EnvSettingsSource):
    """Reads each field from exactly the variables ``env_names`` gives, keyed by field name.

    pydantic-settings would also read every validation alias as a variable name (``host`` ->
    ``HOST``, which shells set to the machine's name); here only ``LLF_*`` and the three
    ecosystem names count. Values are decoded by pydantic-settings as usual (JSON for lists).
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        settings_cls: type[LLFSettings] = self.settings_cls  # type: ignore[assignment]
        names = env_names(settings_cls, field_name)
        for name in names:
            value = self.env_vars.get(name if self.case_sensitive else name.lower())
            if value is not None:
                if name in legacy_env_names(settings_cls, field_name):
                    warn_old_name(name, names[0])
                return value, field_name, False
        return None, field_name, False


def warn_old_name(old: str, new: str) -> None:
    """Log once per process that ``old`` was read where ``new`` is the current name."""
    if old in _warned:
        return
    _warned.add(old)
    log.warning(
        "environment variable %s is an old name: set %s instead (%s stops working in the next release)",
        old,
        new,
        old,
    )


class LLFSettings(BaseSettings):
    """Settings every service shares; services subclass it and set ``section``."""

    section: ClassVar[str | None] = None
    legacy_env_fields: ClassVar[frozenset[str]] = frozenset()
    """This service's keys that an earlier release read from ``LLF_<KEY>`` (see ``env_names``)."""

    model_config = SettingsConfigDict(
        env_prefix="LLF_",
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home, description="Root of llf's own files.")
    models_dir: Path | None = Field(None, description="Model store (HF cache layout). Default: $LLF_HOME/models.")
    run_dir: Path | None = Field(None, description="PIDs, sockets and logs of local mode. Default: $LLF_HOME/run.")
    inference_url: str = Field("http://127.0.0.1:8000", description="The inference gateway.")
    models_url: str = Field("http://127.0.0.1:8001", description="The model registry.")
    api_key: SecretStr | None = Field(None, description="Bearer key required by the services when set.")
    default_model: str = Field("Qwen/Qwen2.5-0.5B-Instruct", description="Model pulled and served on first run.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "LLF_REDIS_URL", "redis_url"),
        description="Redis for the job queue and index.",
    )
    redis_password_file: Path | None = Field(
        None,
        description="A file holding Redis's password (local mode writes one, 0600, in the run dir); "
        "used when redis_url names none, so the password is in no URL, command line or conf file.",
    )
    hf_endpoint: str = Field(
        "https://huggingface.co",
        validation_alias=AliasChoices("HF_ENDPOINT", "hf_endpoint"),
        description="Hugging Face Hub (or a mirror).",
    )
    hf_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HF_TOKEN", "hf_token"), description="Hub token for gated repos."
    )
    log_format: Literal["console", "json"] = Field("console", description="console for humans, json in containers.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("home", "models_dir", "run_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("inference_url", "models_url", "hf_endpoint", mode="after")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_serializer("redis_url", when_used="json")
    def _mask_redis_password(self, value: str) -> str:
        """``llf config show`` and JSON dumps never print a password given inside ``REDIS_URL``."""
        return mask_url_password(value)

    def redis_connection_url(self) -> str:
        """``redis_url`` with the password of ``redis_password_file`` when the URL has none.

        What the services connect with; never log it (``mask_url_password`` if a URL must be shown).
        The file is read on every call, so a password rotated by ``make up`` needs no new settings.
        """
        if self.redis_password_file is None or _URL_PASSWORD.search(self.redis_url):
            return self.redis_url
        password = self.redis_password_file.expanduser().read_text(encoding="utf-8").strip()
        scheme, sep, rest = self.redis_url.partition("://")
        if not sep or not password:
            return self.redis_url
        return f"{scheme}://:{quote(password, safe='')}@{rest.rpartition('@')[2]}"

    @cached_property
    def models_path(self) -> Path:
        """The model store, defaulted under ``home``."""
        return self.models_dir or self.home / "models"

    @cached_property
    def run_path(self) -> Path:
        """Run-time files of local mode, defaulted under ``home``."""
        return self.run_dir or self.home / "run"

    def ensure_dirs(self) -> None:
        """Create the directories a service writes to (idempotent)."""
        for path in (self.home, self.models_path, self.run_path):
            path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Environment(settings_cls), JsonConfigSource(settings_cls, config_path()))

    def __repr_args__(self) -> Any:
        """Like pydantic's, but a password inside a URL (``redis://:pw@host``) is masked too."""
        for name, value in super().__repr_args__():
            yield name, (mask_url_password(value) if isinstance(value, str) else value)

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Build settings, turning validation errors into one readable ``ConfigError``."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(cls, exc)) from exc


def describe_validation_error(cls: type[LLFSettings], exc: ValidationError) -> str:
    """Name the variable or file and the key of each problem, in one line.

    A variable that is set wins over the file (that is the precedence), so it is blamed first.
    """
    path = config_path()
    try:
        file_keys = set(by_field_name(cls, JsonConfigSource._select(read_config_file(path), cls.section, path)))
    except ConfigError:
        file_keys = set()
    names = spellings(cls, case_insensitive=True)
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "?"
        top = str(error["loc"][0]) if error["loc"] else key
        field = names.get(top.lower(), top)
        variable = env_var_in_use(cls, field) if field in cls.model_fields else None
        if variable is not None:
            where = f"environment variable {variable}"
        elif field in file_keys:
            where = f"config file {path}"
            if cls.section and field not in LLFSettings.model_fields:
                key = f"{cls.section}.{key}"
        else:
            where = f"environment variable {env_name(cls, field)}"
        problems.append(f"{where}: key '{key}': {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def env_var_in_use(cls: type[LLFSettings], field_name: str) -> str | None:
    """The environment variable that is actually set for a field, if any (names are case-insensitive)."""
    present = {name.upper(): name for name in os.environ}
    for candidate in env_names(cls, field_name):
        if candidate.upper() in present:
            return present[candidate.upper()]
    return None


def env_name(cls: type[LLFSettings], field_name: str) -> str:
    """The current environment variable of a field (what the docs and error messages name)."""
    if field_name not in cls.model_fields:
        return f"LLF_{field_name.upper()}"
    return env_names(cls, field_name)[0]
