"""The config of the MCP tool gateway (``mcp:``). Part of the one config schema
(``config.schema.Config``).

```yaml
mcp:
  resource: "https://gateway.example.com/mcp"       # this endpoint's canonical URI (RFC 8707)
  authorization_servers: ["https://login.example.com"]
  limits: {rpm: 120, concurrency: 8}                 # per caller and tool
  servers:
    - name: files
      url: "http://127.0.0.1:9000/mcp"
      headers: {Authorization: "Bearer ${FILES_TOKEN}"}   # the server's own credential
    - {name: git, command: ["python", "-m", "some_mcp_server"], env: {GIT_DIR: /srv/repo}}
```
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ironhold.config.durations import Seconds
from ironhold.config.guard import ScannerConfig, Side, scanner_options

__all__ = ["McpConfig", "McpGuardConfig", "McpServerConfig", "ToolConfig", "ToolLimits"]

#: A server's name prefixes its tools' (``files.read_file``): no dots, so the split is certain.
_SERVER_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: What each side scans unless the config says otherwise: secrets in arguments blocked and
#: personal data flagged; injected instructions in results blocked, secrets redacted.
ARGUMENTS_DEFAULT: dict[str, dict[str, Any]] = {
    "secrets": {"action": "block"},
    "pii": {"action": "flag"},
}
RESULTS_DEFAULT: dict[str, dict[str, Any]] = {
    "injection": {"action": "block"},
    "secrets": {"action": "redact"},
}
_ARGUMENT_SCANNERS = ("secrets", "pii")
_RESULT_SCANNERS = ("injection", "secrets", "pii")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _scanners(where: str, raw: Any, known: tuple[str, ...]) -> dict[str, ScannerConfig]:
    """Tool arguments leave for a tool server (scanned like a model's answer); tool results go
    into an agent's model (scanned like a prompt). ``reroute`` has no meaning here."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of scanner names to settings")
    for name in raw:
        if name not in known:
            raise ValueError(f"{where} has no scanner {name!r} (known: {', '.join(known)})")
    side: Side = "input" if where.endswith("results") else "output"
    options = scanner_options(side, raw)
    for name, option in options.items():
        if option.action == "reroute":
            raise ValueError(f"{where}.{name}: 'reroute' applies to model requests only")
    return options


class McpGuardConfig(_Strict):
    """The guard on tool calls, both ways. A server's or tool's ``guard`` replaces the scanners
    it names; name one with ``action: off`` to turn it off there."""

    arguments: dict[str, ScannerConfig] = Field(default_factory=dict)
    results: dict[str, ScannerConfig] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, raw: Any) -> dict[str, ScannerConfig]:
        return _scanners("guard.arguments", raw, _ARGUMENT_SCANNERS)

    @field_validator("results", mode="before")
    @classmethod
    def _results(cls, raw: Any) -> dict[str, ScannerConfig]:
        return _scanners("guard.results", raw, _RESULT_SCANNERS)


class ToolLimits(_Strict):
    """Calls per minute and calls at once, counted per caller and tool."""

    rpm: int | None = Field(None, ge=1, le=1_000_000)
    concurrency: int | None = Field(None, ge=1, le=10_000)


class ToolConfig(_Strict):
    """One tool's own settings (``servers[].tools.<tool name>``)."""

    guard: McpGuardConfig | None = None
    limits: ToolLimits | None = None


class McpServerConfig(_Strict):
    """An upstream MCP server: remote (``url``, Streamable HTTP) or a local child process
    (``command``, stdio), supervised and restarted when it dies."""

    name: str
    url: str | None = None
    #: Credentials for the tool server: the client's own token never goes upstream.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    #: The longest one call (or listing) may take.
    timeout: Seconds = 60.0
    #: How long to wait for the server to answer its first listing when the gateway starts.
    connect_timeout: Seconds = 20.0
    guard: McpGuardConfig | None = None
    limits: ToolLimits | None = None
    tools: dict[str, ToolConfig] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(_SERVER_NAME, name):
            raise ValueError(f"{name[:40]!r}: a server's name is 1 to 32 of a-z, 0-9, '_' and "
                             "'-', starting with a letter or digit (its tools are named "
                             "name.tool, so no dots)")
        return name

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.url is None) == (self.command is None):
            raise ValueError(f"mcp server {self.name!r} needs exactly one of 'url' (Streamable "
                             "HTTP) or 'command' (a stdio child process)")
        if self.command is not None and not self.command:
            raise ValueError(f"mcp server {self.name!r}: 'command' is empty")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"mcp server {self.name!r}: 'url' must be http:// or https://")
        if self.headers and self.url is None:
            raise ValueError(f"mcp server {self.name!r}: 'headers' apply to 'url' servers")
        return self

    @property
    def transport(self) -> Literal["http", "stdio"]:
        return "http" if self.url is not None else "stdio"


class McpConfig(_Strict):
    """The MCP tool gateway at ``/mcp`` (on when ``servers`` names any)."""

    servers: list[McpServerConfig] = Field(default_factory=list)
    #: This endpoint's canonical URI: OIDC tokens used here must name it in ``aud`` (RFC 8707),
    #: and the protected resource metadata (RFC 9728) names it. Default: the request's own URL.
    resource: str | None = None
    #: The OAuth authorization servers clients get tokens for this resource from (RFC 9728).
    #: Default: the OIDC issuer (``identity.jwt.issuer``), if there is one.
    authorization_servers: list[str] = Field(default_factory=list)
    guard: McpGuardConfig = Field(default_factory=McpGuardConfig)
    #: Per caller and tool, unless a server or tool says otherwise.
    limits: ToolLimits = Field(default_factory=ToolLimits)
    #: How often each server's tool list is read again (a changed definition is quarantined).
    refresh: Seconds = 60.0
    #: The largest tool result passed back (bytes of its JSON); larger ones are refused.
    max_result_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: Sessions idle this long are forgotten; at most ``max_sessions`` are kept.
    session_ttl: Seconds = 3600.0
    max_sessions: int = Field(10_000, ge=10, le=1_000_000)

    @model_validator(mode="after")
    def _defaults(self) -> McpConfig:
        names = [s.name for s in self.servers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"mcp server {twice[0]!r} is defined twice")
        guard = McpGuardConfig.model_validate({
            "arguments": {**ARGUMENTS_DEFAULT, **self.guard.arguments},
            "results": {**RESULTS_DEFAULT, **self.guard.results}})
        object.__setattr__(self, "guard", guard)
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.servers)
