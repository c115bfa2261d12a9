"""The config of the trust layer: identity providers and passports, policy files, limits and
prices, and the audit log. Part of the one config schema (``config.schema.Config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from ironhold.config.durations import Seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyFileConfig(_Strict):
    """A private key in a PEM file. Generated (mode 0600) on first start if it does not exist;
    several replicas must point at the same file."""

    file: Path


class JwksConfig(_Strict):
    """Where the identity provider's public keys come from: exactly one of ``file`` or ``url``.
    A file is re-read when it changes; a URL is fetched again after ``cache_ttl``, or sooner
    (at most every ``min_refresh``) when a token names a key id it has not seen: rotation."""

    file: Path | None = None
    url: AnyHttpUrl | None = None
    cache_ttl: Seconds = 300.0
    min_refresh: Seconds = 30.0

    @model_validator(mode="after")
    def _one_source(self) -> JwksConfig:
        if (self.file is None) == (self.url is None):
            raise ValueError("jwks needs exactly one of 'file' or 'url'")
        return self


#: Signature algorithms an identity provider may use. No HMAC (a shared secret is not an
#: identity provider's key, and HS256 with a public key is the classic key-confusion attack)
#: and never ``none``.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "Ed25519")


class ClaimsConfig(_Strict):
    """Which token claims become which principal attributes."""

    subject: str = "sub"
    name: str = "name"
    tenant: str | None = "tenant"
    groups: str | None = "groups"
    #: Space-separated Ironhold scopes: ``models:a,b``, ``tools:x``, ``ironhold:admin``.
    scopes: str | None = "scope"


class JwtConfig(_Strict):
    """Bearer tokens (JWT) from the organisation's OIDC identity provider."""

    issuer: str = Field(min_length=1)
    audience: str | list[str]
    jwks: JwksConfig
    algorithms: list[str] = Field(default_factory=lambda: list(ASYMMETRIC_ALGORITHMS))
    #: Clock skew tolerated on exp / nbf / iat (bounded: a large leeway extends every token).
    leeway: Annotated[Seconds, Field(le=300)] = 60.0
    claims: ClaimsConfig = Field(default_factory=ClaimsConfig)
    #: Members of these groups get the admin scope.
    admin_groups: list[str] = Field(default_factory=list)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        bad = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not algorithms:
            raise ValueError(f"allowed algorithms are {', '.join(ASYMMETRIC_ALGORITHMS)}; "
                             f"not {', '.join(bad) or 'an empty list'}")
        return algorithms


class PassportConfig(_Strict):
    """Agent passports: short-lived Ed25519-signed tokens issued by ``POST /oauth/token``."""

    enabled: bool = True
    issuer: str = "urn:ironhold:passports"
    #: Default: ``passport-ed25519.pem`` in the state directory.
    signing_key: KeyFileConfig | None = None
    default_ttl: Seconds = 300.0
    max_ttl: Annotated[Seconds, Field(le=86400)] = 3600.0
    #: The most agents one chain may hold (user → agent → agent: depth 2).
    max_depth: int = Field(3, ge=1, le=10)


class IdentityConfig(_Strict):
    jwt: JwtConfig | None = None
    passports: PassportConfig = Field(default_factory=PassportConfig)


class PolicyConfig(_Strict):
    """Cedar policies kept in git: ``*.cedar`` files or folders of them (and optionally one
    ``*.cedarschema``). With policies configured, every request needs a ``permit`` (default
    deny); without, a credential's scopes alone decide."""

    files: list[Path] = Field(min_length=1)


class QuotaConfig(_Strict):
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    concurrency: int | None = Field(None, gt=0)
    budget_usd_daily: float | None = Field(None, gt=0)
    budget_usd_monthly: float | None = Field(None, gt=0)


class PriceConfig(_Strict):
    """US dollars per million tokens."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class LimitsConfig(_Strict):
    """Limits beyond each credential's own: per tenant, and the price table budgets use.
    Counted in-process on one node, in Redis (``state.redis``) across replicas."""

    tenants: dict[str, QuotaConfig] = Field(default_factory=dict)
    #: Per model group; a group without a price costs nothing against budgets.
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    #: Completion tokens reserved at admission when a request sets no ``max_tokens``.
    default_completion_tokens: int = Field(256, ge=0)
    #: How long a concurrency slot is held if its replica dies before releasing it.
    lease_ttl: Seconds = 660.0
    #: When Redis cannot be reached (or no connection to it is free within 2 s): ``closed``
    #: refuses (503), ``open`` admits and logs. Closed by default: limits that give way when
    #: their store is slow are limits a tenant can get around by making it slow.
    on_store_error: Literal["open", "closed"] = "closed"


class AuditNatsConfig(_Strict):
    """Also publish every durable record to a NATS JetStream stream (created if missing). The
    database stays the system of record: a record is acknowledged once it is stored there."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = Field("IRONHOLD_AUDIT", pattern=r"^[A-Za-z0-9_-]+$")
    subject: str = Field("ironhold.audit", pattern=r"^[A-Za-z0-9_.-]+$")


class AuditConfig(_Strict):
    """The tamper-evident audit log: one record per request, leaves of an RFC 6962 Merkle tree
    kept in the state database (``state.url``), with signed checkpoints of its root."""

    enabled: bool = True
    #: How often the tree's root is signed (when it has grown).
    checkpoint_interval: Seconds = Field(10.0, gt=0)
    #: Default: ``audit-ed25519.pem`` in the state directory; replicas must share one key.
    signing_key: KeyFileConfig | None = None
    #: The log's name, signed into every checkpoint (C2SP tlog-checkpoint "origin").
    origin: str = Field("ironhold", min_length=1, pattern=r"^[^\n]+$")
    #: Also keep the request and response bodies, redacted, in the record (off: only their
    #: SHA-256 digests).
    content: bool = False
    #: SQLite: fsync the log at every commit (``synchronous=FULL``): a record survives power
    #: loss. false: a record survives a crash of the gateway (it is in the OS before the
    #: answer) but not of the machine; commits are much cheaper (docs/benchmarks.md).
    fsync: bool = True
    #: Records written per transaction at most (group commit).
    max_batch: int = Field(512, ge=1, le=10_000)
    #: When the log cannot be written: ``closed`` answers 503 instead of the reply (nothing is
    #: answered that is not recorded); ``open`` answers anyway and logs the loss.
    on_store_error: Literal["open", "closed"] = "closed"
    nats: AuditNatsConfig | None = None
