"""Limits shared by every replica: the in-process algorithm (``limits.store``) as Lua scripts
run atomically by Redis. One round trip to admit, one to settle.

Keys, per counter ``C``: ``ih:lim:C:rpm`` and ``ih:lim:C:tpm`` (hashes: second -> amount),
``ih:lim:C:conc`` (sorted set: request id -> lease expiry), ``ih:lim:C:bd:DAY`` and
``ih:lim:C:bm:YYYYMM`` (micro-dollars). Every key expires on its own once idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ironhold.core.errors import ConfigError
from ironhold.limits.store import (
    WINDOW,
    Admission,
    Ask,
    Charge,
    RateState,
    StoreUnavailableError,
    day_of,
    micros,
    month_of,
    until_next_day,
    until_next_month,
)

_PREFIX = "ih:lim:"

# KEYS: five per charge (rpm, tpm, conc, bd, bm). ARGV[1]: JSON
# {now, rid, tokens, cost, lease_exp, window, limits: [[rpm, tpm, conc, bd, bm], ...]}
# (0 = no limit of that kind). Returns JSON {ok, kind, idx, wait, req, tok, left}.
_ADMIT = """
local a = cjson.decode(ARGV[1])
local now = a.now
local sec = math.floor(now)
local floor = sec - a.window - 1

local function window(key)
  local fields = redis.call('HGETALL', key)
  local used, oldest, stale, buckets = 0, nil, {}, {}
  for i = 1, #fields, 2 do
    local s = tonumber(fields[i])
    local v = tonumber(fields[i + 1])
    if s <= floor then
      stale[#stale + 1] = fields[i]
    else
      used = used + v
      buckets[#buckets + 1] = {s, v}
      if oldest == nil or s < oldest then oldest = s end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if used < 0 then used = 0 end
  return used, oldest, buckets
end

local function wait_for(buckets, excess)
  table.sort(buckets, function(x, y) return x[1] < y[1] end)
  local freed = 0
  for _, b in ipairs(buckets) do
    freed = freed + b[2]
    if freed >= excess then return math.max(0.001, b[1] + a.window + 1 - now) end
  end
  return a.window
end

local function reset(oldest)
  if oldest == nil then return 0 end
  return math.max(0, oldest + a.window + 1 - now)
end

local req, tok, left = nil, nil, nil
for i, lim in ipairs(a.limits) do
  local base = (i - 1) * 5
  local rpm, tpm, conc, bd, bm = lim[1], lim[2], lim[3], lim[4], lim[5]
  if rpm > 0 then
    local used, oldest, buckets = window(KEYS[base + 1])
    if used + 1 > rpm then
      local wait = wait_for(buckets, used + 1 - rpm)
      return cjson.encode({ok = false, kind = 'rpm', idx = i, wait = wait,
                           req = {rpm, math.max(0, rpm - used), reset(oldest)}})
    end
    if req == nil or rpm - used - 1 < req[2] then req = {rpm, rpm - used - 1, reset(oldest)} end
  end
  if tpm > 0 then
    local used, oldest, buckets = window(KEYS[base + 2])
    if used + a.tokens > tpm then
      local wait = a.window
      if a.tokens <= tpm then wait = wait_for(buckets, used + a.tokens - tpm) end
      return cjson.encode({ok = false, kind = 'tpm', idx = i, wait = wait,
                           tok = {tpm, math.max(0, tpm - used), reset(oldest)}})
    end
    if tok == nil or tpm - used - a.tokens < tok[2] then
      tok = {tpm, tpm - used - a.tokens, reset(oldest)}
    end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[base + 3], '-inf', now)
    if redis.call('ZCARD', KEYS[base + 3]) >= conc then
      return cjson.encode({ok = false, kind = 'concurrency', idx = i, wait = 1})
    end
  end
  for j, kind in ipairs({'budget_usd_daily', 'budget_usd_monthly'}) do
    local cap = lim[3 + j]
    if cap > 0 then
      local spent = tonumber(redis.call('GET', KEYS[base + 3 + j]) or '0')
      if spent >= cap or spent + a.cost > cap then
        return cjson.encode({ok = false, kind = kind, idx = i, wait = a.budget_wait[j]})
      end
      local l = cap - spent - a.cost
      if left == nil or l < left then left = l end
    end
  end
end

for i, lim in ipairs(a.limits) do
  local base = (i - 1) * 5
  if lim[1] > 0 then
    redis.call('HINCRBY', KEYS[base + 1], sec, 1)
    redis.call('EXPIRE', KEYS[base + 1], a.window + 2)
  end
  if lim[2] > 0 then
    redis.call('HINCRBY', KEYS[base + 2], sec, a.tokens)
    redis.call('EXPIRE', KEYS[base + 2], a.window + 2)
  end
  if lim[3] > 0 then
    redis.call('ZADD', KEYS[base + 3], a.lease_exp, a.rid)
    redis.call('EXPIRE', KEYS[base + 3], math.ceil(a.lease_exp - now) + 1)
  end
  if lim[4] > 0 then
    redis.call('INCRBY', KEYS[base + 4], a.cost)
    redis.call('EXPIRE', KEYS[base + 4], 2 * 86400)
  end
  if lim[5] > 0 then
    redis.call('INCRBY', KEYS[base + 5], a.cost)
    redis.call('EXPIRE', KEYS[base + 5], 32 * 86400)
  end
end
return cjson.encode({ok = true, req = req, tok = tok, left = left})
"""

# KEYS as for admit. ARGV[1]: JSON {now, at, rid, tokens, cost, window, limits}.
_SETTLE = """
local a = cjson.decode(ARGV[1])
local at = math.floor(a.at)
for i, lim in ipairs(a.limits) do
  local base = (i - 1) * 5
  if lim[2] > 0 and a.tokens ~= 0 and at > math.floor(a.now) - a.window - 1 then
    if redis.call('HEXISTS', KEYS[base + 2], at) == 1 then
      redis.call('HINCRBY', KEYS[base + 2], at, a.tokens)
    end
  end
  if lim[3] > 0 then redis.call('ZREM', KEYS[base + 3], a.rid) end
  if a.cost ~= 0 then
    for j = 4, 5 do
      if lim[j] > 0 and redis.call('EXISTS', KEYS[base + j]) == 1 then
        local v = redis.call('INCRBY', KEYS[base + j], a.cost)
        if v < 0 then redis.call('SET', KEYS[base + j], 0, 'KEEPTTL') end
      end
    end
  end
end
return 1
"""


#: Connections kept to Redis by one process. A burst larger than this waits for a free one
#: (a script takes well under a millisecond) rather than failing.
POOL_SIZE = 64
#: How long a request waits for a free connection before the store counts as unavailable.
POOL_WAIT = 2.0


class RedisLimitStore:
    def __init__(self, url: str, pool_size: int = POOL_SIZE, pool_wait: float = POOL_WAIT):
        try:
            # Blocking: a busy gateway is not an unavailable store. The default pool raises
            # at once when every connection is in use, which read as "Redis is down".
            pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=pool_size, timeout=pool_wait, socket_timeout=2,
                socket_connect_timeout=2)
        except ValueError as exc:
            raise ConfigError(f"state.redis: {exc}") from None
        self._redis = redis.Redis(connection_pool=pool)
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)

    @staticmethod
    def _keys(charges: Sequence[Charge], now: float) -> list[str]:
        keys: list[str] = []
        day, month = day_of(now), month_of(now)
        for c in charges:
            base = _PREFIX + c.counter
            keys += [f"{base}:rpm", f"{base}:tpm", f"{base}:conc", f"{base}:bd:{day}",
                     f"{base}:bm:{month}"]
        return keys

    @staticmethod
    def _limits(charges: Sequence[Charge]) -> list[list[int]]:
        return [[q.rpm or 0, q.tpm or 0, q.concurrency or 0,
                 micros(q.budget_usd_daily) if q.budget_usd_daily else 0,
                 micros(q.budget_usd_monthly) if q.budget_usd_monthly else 0]
                for q in (c.quota for c in charges)]

    async def admit(self, charges: Sequence[Charge], ask: Ask) -> Admission:
        args = {"now": ask.now, "rid": ask.lease_id, "tokens": ask.tokens,
                "cost": ask.cost_micros, "lease_exp": ask.now + ask.lease_ttl,
                "window": WINDOW, "limits": self._limits(charges),
                "budget_wait": [until_next_day(ask.now), until_next_month(ask.now)]}
        encoded = orjson.dumps(args)  # outside the try: a local failure is not the store's
        try:
            raw = await self._admit(keys=self._keys(charges, ask.now), args=[encoded])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"redis: {type(exc).__name__}") from exc
        result: dict[str, Any] = orjson.loads(raw)
        requests = _rate(result.get("req"))
        tokens = _rate(result.get("tok"))
        if not result["ok"]:
            return Admission(False, refused_by=result["kind"],
                             counter=charges[int(result["idx"]) - 1].counter,
                             retry_after=float(result["wait"]), requests=requests, tokens=tokens)
        left = result.get("left")
        return Admission(True, requests=requests, tokens=tokens,
                         budget_left_micros=int(left) if left is not None else None)

    async def settle(self, charges: Sequence[Charge], lease_id: str, admitted_at: float,
                     token_delta: int, cost_delta_micros: int, now: float) -> None:
        args = {"now": now, "at": admitted_at, "rid": lease_id,
                "tokens": token_delta, "cost": cost_delta_micros, "window": WINDOW,
                "limits": self._limits(charges)}
        await self._settle(keys=self._keys(charges, admitted_at), args=[orjson.dumps(args)])

    async def budget_left(self, charges: Sequence[Charge], now: float) -> int | None:
        keys, caps = [], []
        for c, lim in zip(charges, self._limits(charges), strict=True):
            base = _PREFIX + c.counter
            for cap, key in ((lim[3], f"{base}:bd:{day_of(now)}"),
                             (lim[4], f"{base}:bm:{month_of(now)}")):
                if cap:
                    keys.append(key)
                    caps.append(cap)
        if not keys:
            return None
        spent = await self._redis.mget(keys)
        return min(cap - int(s or 0) for cap, s in zip(caps, spent, strict=True))

    async def close(self) -> None:
        # The pool was passed in, so the client does not close it by itself.
        await self._redis.aclose(close_connection_pool=True)


def _rate(raw: Any) -> RateState | None:
    if not raw:
        return None
    return RateState(int(raw[0]), int(raw[1]), float(raw[2]))

