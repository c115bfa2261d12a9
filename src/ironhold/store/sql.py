"""The relational store: SQLite (WAL) on one node, PostgreSQL for several replicas.

One SQLAlchemy engine per process, made here. On open the schema is brought to the latest
alembic revision (``store/migrations/``); on PostgreSQL an advisory lock makes replicas that
start together migrate one at a time. Calls are synchronous and short; async callers run them in
a worker thread so the event loop never blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

from ironhold.core.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Any fixed 64-bit number: the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK = 7_215_011_742

metadata = MetaData()

api_keys = Table(
    "ironhold_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("models", Text, nullable=True),  # JSON list, or NULL for every model
    Column("admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("tenant", String(200), nullable=True),
    Column("tools", Text, nullable=True),  # JSON list, or NULL for every tool
    Column("expires_at", Float, nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("concurrency", Integer, nullable=True),
    Column("budget_usd_daily", Float, nullable=True),
    Column("budget_usd_monthly", Float, nullable=True),
    Index("ix_ironhold_api_keys_hash", "hash", unique=True),
)

passports = Table(
    "ironhold_passports",
    metadata,
    Column("jti", String(40), primary_key=True),
    Column("parent", String(40), nullable=True),  # the passport this one was exchanged from
    Column("subject", String(300), nullable=False),  # the chain's root: a key or a user
    Column("agent", String(300), nullable=False),
    Column("chain", Text, nullable=False),  # JSON list: subject, then each agent in order
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("ix_ironhold_passports_parent", "parent"),
    Index("ix_ironhold_passports_subject", "subject"),
)

_SEQ = BigInteger().with_variant(Integer(), "sqlite")

audit_records = Table(
    "ironhold_audit_records",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("request_id", String(128), nullable=False),
    Column("recorded_at", Float, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    # The perfect subtrees this leaf completed, levels 1, 2, ...: 32 bytes each.
    Column("nodes", LargeBinary, nullable=False),
    # The canonical JSON the leaf hash was computed over, byte for byte.
    Column("record", Text, nullable=False),
    Index("ix_ironhold_audit_records_request_id", "request_id"),
)

audit_checkpoints = Table(
    "ironhold_audit_checkpoints",
    metadata,
    Column("size", _SEQ, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("origin", String(200), nullable=False),
    Column("signed_at", Float, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)

rollouts = Table(
    "ironhold_rollouts",
    metadata,
    Column("model", String(256), primary_key=True),
    # Which rollout (the candidate and its settings): a new one starts from its first step.
    Column("rollout_id", String(64), nullable=False),
    Column("candidate", String(256), nullable=False),
    Column("state", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("percent", Float, nullable=False),
    Column("step_started", Float, nullable=False),
    Column("reason", Text, nullable=False),
    # Bumped by every change: a decision saved over a newer one (an operator's) is dropped.
    Column("revision", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

leases = Table(
    "ironhold_leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)

tool_pins = Table(
    "ironhold_tool_pins",
    metadata,
    # The tool as agents see it: ``server.tool``.
    Column("name", String(200), primary_key=True),
    Column("server", String(64), nullable=False),
    # SHA-256 of the approved definition (name, description, input schema), and the definition.
    Column("digest", String(64), nullable=False),
    Column("definition", Text, nullable=False),
    # ``approved``, or ``quarantined`` while a changed definition waits for an admin.
    Column("status", String(16), nullable=False),
    Column("pending_digest", String(64), nullable=True),
    Column("pending_definition", Text, nullable=True),
    Column("first_seen", Float, nullable=False),
    Column("changed_at", Float, nullable=False),
    Column("approved_by", String(256), nullable=True),
)


@dataclass(frozen=True)
class SqlStore:
    engine: Engine
    #: Where local secrets (the key-hashing secret) live when not given in the config.
    state_dir: Path

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()


def open_sql_store(url: str, base_dir: Path) -> SqlStore:
    """Open (and create if needed) the store named by ``url``."""
    if url.startswith("sqlite:///"):
        raw = url.removeprefix("sqlite:///")
        if raw in ("", ":memory:"):
            raise ConfigError("state.url: an in-memory SQLite database loses keys; use a file")
        path = _sqlite_path(raw, base_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        state_dir = path.parent
    else:
        sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(sa_url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        state_dir = state_dir_for(url, base_dir)
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        # The URL may hold a password: name the engine, not the URL.
        raise ConfigError(
            f"state.url: cannot open the {engine.dialect.name} database: "
            f"{type(getattr(exc, 'orig', None) or exc).__name__}: {_first_line(exc)}"
        ) from exc
    return SqlStore(engine=engine, state_dir=state_dir)


def state_dir_for(url: str, base_dir: Path) -> Path:
    """Where local secrets and keys live for the database at ``url`` (without opening it)."""
    if url.startswith("sqlite:///"):
        return _sqlite_path(url.removeprefix("sqlite:///"), base_dir).parent
    return (base_dir / ".ironhold").resolve()


def _sqlite_path(raw: str, base_dir: Path) -> Path:
    path = Path(raw)
    return path if path.is_absolute() else (base_dir / path).resolve()


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the latest revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def open_durable_engine(store: SqlStore, fsync: bool = True) -> Engine:
    """A second engine on the same database for writes acknowledged to clients (the audit log).
    On SQLite with ``fsync`` its connections commit with ``synchronous=FULL``: the WAL is
    fsynced on every commit, so a record survives power loss, not only a crash of the process
    (``synchronous=NORMAL``, which the other tables use)."""
    if store.dialect == "sqlite":
        # A locked database fails a batch after 5 s (503 for its requests) rather than holding
        # every request for half a minute; the next batch tries again.
        engine = create_engine(store.engine.url, connect_args={"timeout": 5})
        pragmas = _sqlite_durable_pragmas if fsync else _sqlite_pragmas
        event.listen(engine, "connect", pragmas)
        return engine
    return create_engine(store.engine.url, pool_pre_ping=True, pool_size=3, max_overflow=2)


def _sqlite_durable_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
