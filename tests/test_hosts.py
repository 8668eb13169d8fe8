"""The environment host interface (agent.engine.hosts): threads, leases, restarts. Plumbing tests
against our scripted environment (conftest_loop.ScriptedEnv)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest_loop import CLICK, ScriptedEnv, task

from agent.engine.hosts import EnvironmentHost, HostDied, HostPool, HostRestartFailed, ThreadHost


class _ThreadRecordingEnv(ScriptedEnv):
    """Remembers the thread of every call (Playwright sync objects are thread-bound)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = {threading.get_ident()}

    def reset(self, t):
        self.threads.add(threading.get_ident())
        return super().reset(t)

    def step(self, action):
        self.threads.add(threading.get_ident())
        return super().step(action)


def test_thread_host_builds_and_drives_its_environment_on_one_other_thread():
    async def main():
        host = await ThreadHost.start(0, _ThreadRecordingEnv)
        assert isinstance(host, EnvironmentHost)
        await host.reset(task())
        await host.step(CLICK)
        assert await host.evaluate() == 1.0
        env = host.env
        await host.close()
        return env

    env = asyncio.run(main())
    assert len(env.threads) == 1 and threading.get_ident() not in env.threads
    assert env.closed


class _FlakyHost:
    """A host whose 'process' can be killed and whose restarts fail `failures` times."""

    has_notify_terminal = has_expert = False

    def __init__(self, index: int, failures: int = 0) -> None:
        self.index, self.name, self.failures = index, f"flaky {index}", failures
        self.alive, self.restarts = True, 0

    async def restart(self) -> None:
        if self.failures:
            self.failures -= 1
            raise HostDied("still broken")
        self.restarts += 1
        self.alive = True

    async def close(self) -> None:
        self.alive = False


def test_pool_leases_in_request_order_and_restarts_dead_hosts():
    async def main():
        started: list[int] = []

        async def start(index):
            started.append(index)
            return _FlakyHost(index, failures=2)

        pool = HostPool(2, start)
        order: list[tuple[int, int]] = []

        async def episode(n):
            async with pool.lease() as host:
                order.append((n, host.index))
                await asyncio.sleep(0)
                if n == 0:
                    host.alive = False  # its worker died during the episode

        await asyncio.gather(*(episode(n) for n in range(5)))
        return started, order, pool

    started, order, pool = asyncio.run(main())
    assert sorted(started) == [0, 1]
    assert [n for n, _ in order] == [0, 1, 2, 3, 4]
    assert pool.stats[0].restarts == 1 and pool.hosts[0].restarts == 1
    assert sum(s.episodes for s in pool.stats) == 5


def test_pool_gives_up_after_repeated_failed_restarts():
    async def main():
        host = _FlakyHost(0, failures=10)
        host.alive = False
        pool = HostPool.of([host])
        async with pool.lease():
            pass

    with pytest.raises(HostRestartFailed, match="3 times"):
        asyncio.run(main())
