"""The config schema: pydantic models, strict about unknown keys so typos are caught."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Accept ``30s``, ``250ms``, ``2m``, ``1h`` or a plain number of seconds."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 250ms, 30s, 2m)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Largest accepted request body; larger ones get a 413.
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)


class StateConfig(_Strict):
    #: ``sqlite:///path`` (relative paths are relative to the config file) or ``postgresql://...``.
    url: str = "sqlite:///./.ironhold/ironhold.db"

    @field_validator("url")
    @classmethod
    def _known_engine(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url


class AuthConfig(_Strict):
    #: Secret used to hash API keys. If unset, one is generated into the state directory.
    key_secret: SecretStr | None = None
    #: How long a verified key is trusted before the store is asked again (revocation delay).
    cache_ttl: Seconds = 5.0


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    #: One log line per request (method, path, status, latency; never prompt or completion text).
    access: bool = True


class TimeoutConfig(_Strict):
    connect: Seconds = 5.0
    first_token: Seconds = 60.0
    total: Seconds = 600.0


class LocalModelConfig(_Strict):
    """A GGUF file that Ironhold serves itself with a supervised llama.cpp server."""

    gguf: Path
    sha256: str
    ctx_size: int = Field(2048, gt=0)
    threads: int | None = Field(None, gt=0)
    #: llama.cpp's chat template name (e.g. ``gemma``); default: the one in the GGUF file.
    chat_format: str | None = None
    #: Extra command-line arguments for ``python -m llama_cpp.server``.
    args: list[str] = Field(default_factory=list)
    startup_timeout: Seconds = 120.0

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be a 64-character hex SHA-256 digest")
        return value


class DeploymentConfig(_Strict):
    """One place a model group can be served from: a remote URL or a local GGUF file."""

    name: str | None = None
    url: str | None = None
    local: LocalModelConfig | None = None
    #: The model name to send upstream (defaults to the group's name).
    model: str | None = None
    api_key: SecretStr | None = None
    weight: float = Field(1.0, gt=0)
    #: Pooled connections kept to this deployment.
    max_connections: int = Field(256, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _exactly_one_target(self) -> DeploymentConfig:
        if (self.url is None) == (self.local is None):
            raise ValueError("a deployment needs exactly one of 'url' or 'local'")
        return self


class ModelGroupConfig(_Strict):
    name: str = Field(min_length=1, max_length=256)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    #: Which operations the group serves (an embeddings model need not chat).
    owned_by: str = "ironhold"


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    models: list[ModelGroupConfig] = Field(default_factory=list)
    #: The directory relative paths are resolved against (the config file's); set by the loader.
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for group in self.models:
            if group.name in seen:
                raise ValueError(f"model group {group.name!r} is defined twice")
            seen.add(group.name)
        return self

    def group(self, name: str) -> ModelGroupConfig | None:
        return next((g for g in self.models if g.name == name), None)
