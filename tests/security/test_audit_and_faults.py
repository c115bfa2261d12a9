"""Findings 8 and 9: one audit record for every request that reached a model, however it
ended; and a request's own injected faults change nothing other callers see."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhold.audit.log import PENDING_BATCHES, AuditLog
from ironhold.audit.store import AuditStore
from ironhold.core.errors import AuditUnavailableError
from ironhold.store.sql import open_durable_engine, open_sql_store
from tests.helpers import CHAT, Entry, assert_openai_error, metric, post, wait_until
from tests.security.conftest import audit_records
from tests.servers import GatewayServer


def test_a_client_that_leaves_before_the_answer_is_still_audited(
        make_gateway: Callable[..., GatewayServer], make_simulator: Callable[..., Any]) -> None:
    """Was: a client that left before the answer left no record, though the model was called."""
    sim = make_simulator(ttft={"distribution": "fixed", "ms": 1500})
    gw = make_gateway([{"name": "chat", "deployments": [{"url": sim.url}]}])
    key = gw.create_key()
    for stream in (False, True):
        request_id = f"leaves-early-{stream}"
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw.v1 + "/chat/completions", json={**CHAT, "stream": stream},
                       timeout=0.4, headers={"Authorization": f"Bearer {key}",
                                             "x-request-id": request_id})
        assert wait_until(partial(lambda rid: bool(audit_records(gw, rid)), request_id), 10)
        [record] = audit_records(gw, request_id)
        assert record["outcome"] == "client_closed" and record["status"] is None
        assert record["principal"]["name"] == "test"


def test_the_audit_queue_is_bounded(tmp_path: Path) -> None:
    """Was (from reading): a stuck store held every request behind an unbounded queue. Past
    PENDING_BATCHES batches, an append fails at once (the stage answers 503)."""
    sql = open_sql_store(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path)
    store = AuditStore(open_durable_engine(sql))

    async def fill() -> int:
        log = AuditLog(store, Ed25519PrivateKey.generate(), "test", 60.0, max_batch=2)
        queued = 0  # the writer is not started: nothing drains
        with pytest.raises(AuditUnavailableError):
            while True:
                log.enqueue(Entry(str(queued)))
                queued += 1
        return queued

    assert asyncio.run(fill()) == 2 * PENDING_BATCHES
    store.engine.dispose()
    sql.close()


def test_a_locked_audit_database_answers_503_in_seconds(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was (from reading): a locked database held requests for up to 30 s."""
    gw = chat_gateway()
    key = gw.create_key()
    database = gw.config.base_dir / "state" / "ironhold.db"
    locker = sqlite3.connect(database, timeout=1)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        answer = post(gw, key, CHAT)  # the helper gives up after 10 s
    finally:
        locker.rollback()
        locker.close()
    assert assert_openai_error(answer, 503)["code"] == "audit_unavailable"
    assert post(gw, key, CHAT).status_code == 200


def test_an_injected_429_does_not_park_the_deployment_for_others(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: one admin's 'abort 429, retry_after 300' parked the shared deployment for every
    tenant for five minutes."""
    gw = chat_gateway()
    admin = gw.create_key("ops", admin=True)
    tenant = gw.create_key("tenant")
    fault = orjson.dumps({"kind": "abort", "status": 429, "retry_after": 300}).decode()
    assert post(gw, admin, CHAT, headers={"x-ironhold-fault": fault}).status_code == 429
    assert post(gw, tenant, CHAT).status_code == 200


def test_injected_failures_eject_nothing(chat_gateway: Callable[..., GatewayServer]) -> None:
    gw = chat_gateway()
    admin = gw.create_key("ops", admin=True)
    fault = orjson.dumps({"kind": "abort", "status": 503}).decode()
    for _ in range(8):  # more than outlier.consecutive_failures (5)
        assert post(gw, admin, CHAT, headers={"x-ironhold-fault": fault}).status_code >= 500
    assert metric(gw, "ironhold_injected_faults_total") >= 8
    assert metric(gw, "ironhold_outlier_ejections_total") == 0
    assert post(gw, gw.create_key("tenant"), CHAT).status_code == 200
