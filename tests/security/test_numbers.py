"""Findings 1, 2 and 10: a number a tenant sends must never poison a shared batch, open a
limit or break a route for good. Every number that flows into a reservation, a record or a
store call is bounded at the edge, with a 400 naming the field."""

from __future__ import annotations

import concurrent.futures
import json
import math
import subprocess
import sys
import uuid
from collections.abc import Callable

import httpx
import orjson
import pytest

from ironhold.audit.record import encode_record
from tests.helpers import CHAT, assert_openai_error, post
from tests.security.conftest import audit_records, limited_key
from tests.servers import GatewayServer

HUGE = 18446744073709551615  # 2**64 - 1: orjson reads it, and a sum past it cannot be written

#: Values of max_tokens (and the other reservation fields) a hostile tenant might send.
BAD_NUMBERS = [HUGE, 2**63, 2**40, -1, 0, 1.5, 1e308, "100", True, [1]]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n", "best_of"])
def test_reservation_numbers_are_bounded_with_a_400_naming_the_field(
        chat_gateway: Callable[..., GatewayServer], field: str) -> None:
    gw = chat_gateway()
    key = limited_key(gw, rpm=1000, tpm=10**9)
    for value in BAD_NUMBERS:
        raw = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "' + \
            field.encode() + b'": ' + orjson.dumps(value) + b"}"
        error = assert_openai_error(post(gw, key, content=raw,
                                         headers={"Content-Type": "application/json"}), 400)
        assert error["param"] == field, (value, error)
    # The largest allowed values still work.
    assert post(gw, key, {**CHAT, "max_tokens": 8, "n": 1}).status_code == 200


def test_one_poisoned_request_does_not_fail_the_audit_batch_it_shares(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: a limited key's max_tokens 2**64-1 put an unencodable integer in its record and the
    whole group-commit batch failed: 28 of 30 other tenants got 503 audit_unavailable."""
    gw = chat_gateway()
    limited = limited_key(gw, "limited", rpm=1)
    others = [limited_key(gw, f"other-{i}") for i in range(30)]

    def honest(key: str) -> httpx.Response:
        return post(gw, key, CHAT, headers={"x-request-id": f"honest-{uuid.uuid4().hex}"})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        poison = [pool.submit(post, gw, limited, {**CHAT, "max_tokens": HUGE})
                  for _ in range(5)]
        answers = list(pool.map(honest, others))
    assert [a.status_code for a in answers] == [200] * 30
    for answer in answers:
        records = audit_records(gw, answer.headers["x-request-id"])
        assert [r["outcome"] for r in records] == ["ok"]
    for p in poison:
        assert assert_openai_error(p.result(), 400)["param"] == "max_tokens"


def test_an_unwritable_record_is_written_sanitized_not_dropped() -> None:
    """The batch writer's backstop: whatever slips past the edge, a record is always written."""
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    record = {"request_id": "r", "limits": {"reserved_tokens": HUGE + 10}, "content": deep,
              "cost": math.inf}
    data = orjson.loads(encode_record(record, 7))
    assert data["sanitized"] is True and data["seq"] == 7
    assert data["limits"]["reserved_tokens"] == str(HUGE + 10)
    assert "[nested too deeply]" in json.dumps(data["content"])
    # An ordinary record is untouched: no marker.
    assert "sanitized" not in orjson.loads(encode_record({"request_id": "r", "n": 1}, 0))


def test_deeply_nested_bodies_get_a_400_not_a_500(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: a body nested 300 deep passed orjson.loads and failed orjson.dumps in the router."""
    gw = chat_gateway()
    key = gw.create_key()
    nested = "[" * 300 + "]" * 300
    raw = ('{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "x": '
           + nested + "}").encode()
    error = assert_openai_error(post(gw, key, content=raw,
                                     headers={"Content-Type": "application/json"}), 400)
    assert "nested" in str(error["message"])


def test_a_huge_max_tokens_cannot_skip_a_redis_limit(
        chat_gateway: Callable[..., GatewayServer], redis_url: str) -> None:
    """Was: encoding the Lua script's arguments failed before Redis was contacted, the stage
    read that as 'store unavailable' and on_store_error: open admitted: 6 of 6 through a key
    limited to 2 a minute."""
    gw = chat_gateway(state={"url": "sqlite:///state.db", "redis": redis_url},
                      limits={"on_store_error": "open"})
    key = limited_key(gw, rpm=2)
    statuses = [post(gw, key, {**CHAT, "max_tokens": value}).status_code
                for value in (HUGE, 8, HUGE, 8, HUGE, 8, 8)]
    assert statuses.count(200) == 2
    assert statuses == [400, 200, 400, 200, 400, 429, 429]


def test_bad_numbers_on_admin_and_token_routes_are_400s_and_break_nothing(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    gw = chat_gateway()
    admin = gw.create_key("ops", admin=True)
    auth = {"Authorization": f"Bearer {admin}"}
    base = gw.base_url
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": admin, "actor_token": "bot",
            "actor_token_type": "urn:ironhold:params:oauth:token-type:agent"}
    for name, value in (("expires_in", "nan"), ("expires_in", "inf"), ("expires_in", "1e308"),
                        ("rpm", "99999999999999999999999"), ("budget_usd_daily", "nan"),
                        ("tpm", "-5")):
        answer = httpx.post(base + "/oauth/token", data={**form, name: value})
        assert assert_openai_error(answer, 400)["param"] == name
    for path in ("/admin/audit/leaves/" + "9" * 30, "/admin/audit/consistency?first=1&second="
                 + "9" * 30, "/admin/audit/records/x?tree_size=" + "9" * 30):
        answer = httpx.get(base + path, headers=auth)
        assert answer.status_code in (400, 404), answer.text
        assert_openai_error(answer, answer.status_code)
    for body in ({"name": "k", "expires_in": 1e308}, {"name": "k", "rpm": 2**62},
                 {"name": "k", "budget_usd_daily": 1e300}):
        answer = httpx.post(base + "/admin/keys", json=body, headers=auth)
        assert_openai_error(answer, 400)
    # Nothing was created that later breaks the listing, over HTTP or in the CLI.
    assert httpx.get(base + "/admin/keys", headers=auth).status_code == 200
    listed = subprocess.run([sys.executable, "-m", "ironhold", "keys", "list", "-c",
                             str(gw.config.base_dir / "ironhold.yaml"), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert {k["name"] for k in json.loads(listed.stdout)} == {"ops"}
