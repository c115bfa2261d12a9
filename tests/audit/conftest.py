from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhold.audit.log import AuditLog
from ironhold.audit.store import AuditStore
from ironhold.store.sql import open_durable_engine, open_sql_store


def open_audit_store(url: str, tmp_path: Path) -> AuditStore:
    sql = open_sql_store(url, tmp_path)  # creates and migrates the database
    store = AuditStore(open_durable_engine(sql))
    sql.close()
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same contract over SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def audit_store(audit_url: str, tmp_path: Path) -> Iterator[AuditStore]:
    store = open_audit_store(audit_url, tmp_path)
    yield store
    store.close()


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_log(store: AuditStore, key: Ed25519PrivateKey, interval: float = 3600) -> AuditLog:
    return AuditLog(store, key, "test-log", interval, max_batch=64)
