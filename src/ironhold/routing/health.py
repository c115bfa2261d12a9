"""Active health checks: the second outlier signal.

Every ``interval`` each deployment gets ``GET <base url><path>``. After ``unhealthy_threshold``
failed checks in a row it is taken out of rotation (as if ejected, but for as long as checks
fail); after ``healthy_threshold`` passed checks it is back. Passive outlier detection catches
deployments that fail real requests; active checks catch the ones that get none (ejected or
idle) and confirm a restarted one before traffic returns.
"""

from __future__ import annotations

import asyncio
import logging

from ironhold.config.schema import HealthCheckConfig
from ironhold.core.tasks import Background
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup

log = logging.getLogger("ironhold.routing")


class HealthChecker:
    def __init__(self, group: ModelGroup, config: HealthCheckConfig):
        self._group = group
        self._config = config
        self._failed = {d.name: 0 for d in group.deployments}
        self._passed = {d.name: 0 for d in group.deployments}
        self._checks = Background(self._run, f"health:{group.name}")

    def start(self) -> None:
        self._checks.start()

    async def stop(self) -> None:
        await self._checks.stop()

    async def check_once(self) -> None:
        await asyncio.gather(*(self._check(d) for d in self._group.deployments))

    async def _run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._config.interval)

    async def _check(self, d: Deployment) -> None:
        if not d.available:
            return  # a managed server that is (re)starting: its supervisor knows better
        try:
            ok = await d.transport.check(self._config.path, self._config.timeout)
        except Exception:
            log.exception("health check crashed", extra={"deployment": d.name})
            ok = False
        group = self._group
        if ok:
            self._failed[d.name] = 0
            self._passed[d.name] += 1
            if d.check_failed and self._passed[d.name] >= self._config.healthy_threshold:
                d.check_failed = False
                group.metrics.set_ejected(group.name, d.name, d.ejected)
                log.info("deployment passes health checks again",
                         extra={"model": group.name, "deployment": d.name})
        else:
            self._passed[d.name] = 0
            self._failed[d.name] += 1
            if not d.check_failed and self._failed[d.name] >= self._config.unhealthy_threshold:
                d.check_failed = True
                group.metrics.ejection(group.name, d.name, "health_check")
                group.metrics.set_ejected(group.name, d.name, True)
                log.warning("deployment fails health checks", extra={
                    "model": group.name, "deployment": d.name,
                    "failed_checks": self._failed[d.name]})
