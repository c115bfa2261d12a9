"""Rate limits, token and concurrency quotas, spend budgets: in-process or shared in Redis."""

from ironhold.limits.redis_store import RedisLimitStore
from ironhold.limits.stage import LimitsStage
from ironhold.limits.store import Admission, Ask, Charge, LimitStore, MemoryLimitStore

__all__ = ["Admission", "Ask", "Charge", "LimitStore", "LimitsStage", "MemoryLimitStore",
           "RedisLimitStore"]
