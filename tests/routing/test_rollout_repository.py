"""One contract for where rollout state and the deciding lease are kept, over SQLite and
PostgreSQL: revisions that refuse a stale write, and a lease one holder has at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironhold.routing.rollout_repository import (
    RolloutRepository,
    RolloutState,
    SqlRolloutRepository,
)
from ironhold.store.sql import open_sql_store

T0 = 1_795_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RolloutRepository]:
    url = (f"sqlite:///{tmp_path / 'rollouts.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = open_sql_store(url, tmp_path)
    yield SqlRolloutRepository(store)
    store.close()


def first(model: str = "chat") -> RolloutState:
    return RolloutState(model, "r1", "candidate", "progressing", 0, 5.0, T0, "started")


def test_a_state_comes_back_whole_and_moves_by_revision(repository: RolloutRepository) -> None:
    assert repository.load("chat") is None
    state = first()
    assert repository.save(state)
    assert repository.load("chat") == state
    assert not repository.save(state)  # a second first revision: someone else started it
    stepped = state.moved(T0 + 30, step=1, percent=25.0, step_started=T0 + 30)
    assert repository.save(stepped)
    assert repository.load("chat") == stepped
    stale = state.moved(T0 + 31, state="rolled_back", percent=0.0)
    assert not repository.save(stale)  # decided over an older revision: dropped
    assert repository.load("chat") == stepped


def test_rollouts_of_groups_gone_are_forgotten(repository: RolloutRepository) -> None:
    assert repository.save(first("chat")) and repository.save(first("embed"))
    repository.forget({"embed"})
    assert repository.load("embed") is None and repository.load("chat") is not None


def test_one_holder_has_the_lease_until_it_expires(repository: RolloutRepository) -> None:
    assert repository.hold_lease("rollouts", "a", T0, 5)
    assert not repository.hold_lease("rollouts", "b", T0 + 1, 5)
    assert repository.hold_lease("rollouts", "a", T0 + 2, 5)  # renewed
    assert not repository.hold_lease("rollouts", "b", T0 + 6, 5)
    assert repository.hold_lease("rollouts", "b", T0 + 8, 5)  # a stopped renewing
    assert not repository.hold_lease("rollouts", "a", T0 + 9, 5)


@pytest.mark.postgres
def test_with_two_replicas_one_decides_and_the_other_follows(postgres_url: str,
                                                             tmp_path: Path) -> None:
    """Two controllers on one PostgreSQL database, as two replicas: one holds the lease and
    starts and moves the rollout; the other applies what it decided."""
    from ironhold.config import parse_config
    from ironhold.routing.rollouts import Rollouts

    config = parse_config({"models": [{"name": "chat", "deployments": [
        {"name": "stable", "url": "http://10.0.0.1/v1"},
        {"name": "candidate", "url": "http://10.0.0.2/v1"}],
        "rollout": {"candidate": "candidate", "steps": [10, 100]}}]}, base_dir=tmp_path)
    stores = [open_sql_store(postgres_url, tmp_path) for _ in range(2)]
    replicas = [Rollouts(SqlRolloutRepository(store), holder=f"replica-{i}")
                for i, store in enumerate(stores)]
    try:
        for replica in replicas:
            replica.configure(config)

        async def both() -> None:
            for replica in replicas:
                await replica.step()

        asyncio.run(both())
        assert [r.leader for r in replicas] == [True, False]
        follower = replicas[1].split("chat")
        assert follower is not None and follower.percent == 10
        asyncio.run(replicas[0].command("chat", "pause", None))
        asyncio.run(both())
        assert replicas[1].listing()[0]["state"] == "paused"
        asyncio.run(replicas[1].command("chat", "promote", None))  # any replica takes commands
        asyncio.run(both())
        leader = replicas[0].split("chat")
        assert leader is not None and leader.percent == 100
        assert replicas[0].listing()[0]["state"] == "promoted"
    finally:
        for store in stores:
            store.close()
