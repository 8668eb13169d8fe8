"""Environment hosts: one asynchronous interface in front of every place an environment runs.

The episode engine (agent.engine.episode) runs each episode as its own asyncio task and talks to
its environment only through an `EnvironmentHost`: ``reset``/``step``/``evaluate``/
``close`` as coroutines, plus ``notify_terminal`` (terminal actions, no screenshot) and
``expert_act`` (a scripted expert that reads the environment lives next to it). Hosts:

- `ThreadHost` (here): an environment in this process, on its own thread. Playwright's
  sync API and pyautogui are bound to the thread that made them, so the environment is
  built, driven and closed on one dedicated thread; the event loop never blocks on it.
- `agent.engine.workers.WorkerHost`: an environment in a worker process or a Ray actor.
- a remote host over the environment service (`cua serve-env`, agent.service.server).

Hosts are drawn from a `HostPool`: at most `size` hosts exist; an episode holds a
`lease` on one for its whole duration; a host that died (``alive`` False after the
episode, e.g. its worker process was killed) is restarted before its next lease, giving
up after `MAX_RESTARTS_IN_A_ROW` failed restarts (`HostRestartFailed`, which stops the run).

Errors a host raises for the episode in flight are `HostError` (an EnvironmentCrashed:
the engine ends that episode as an error and the run goes on): `HostDied` when the
process/actor/server behind it is gone, `HostHung` when a call passed its timeout.
Exceptions raised by the environment itself come back as themselves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from actions.contracts import (
    Environment,
    EnvironmentCrashed,
    EpisodeState,
    Policy,
    PolicyOutput,
    Task,
)
from actions.models import Action
from actions.observation import Observation

logger = logging.getLogger(__name__)

MAX_RESTARTS_IN_A_ROW = 3

T = TypeVar("T")


class HostError(EnvironmentCrashed):
    """The host of an environment (thread, worker process, Ray actor, remote service)
    failed; the episode in flight ends as an error and the run goes on."""


class HostDied(HostError):
    """The process, actor or server behind the host is gone; it restarts for the next
    episode."""


class HostHung(HostError):
    """The host gave no answer within its call timeout; it was killed and restarts."""


class HostRestartFailed(HostError):
    """A dead host could not be started again `MAX_RESTARTS_IN_A_ROW` times: the run
    stops (finished episodes are kept; rerun to resume)."""


@runtime_checkable
class EnvironmentHost(Protocol):
    """One environment, wherever it runs, seen from the event loop.

    `index`: the host's slot in its pool. `name`: for logs ('thread 0', 'worker 3 pid
    123', 'remote http://...'). `has_notify_terminal`: the environment keeps terminal
    actions (answer/terminate) through `notify_terminal` instead of `step`.
    `has_notify_output`: the environment hears of each policy output (its step index and
    raw text) through `notify_output` before the output's actions (OSWorld's traj.jsonl).
    `has_expert`: `expert_act` works (a scripted expert was built beside the environment).
    `alive`: False once the host knows it is dead (then `restart` before reuse).
    """

    index: int
    name: str
    has_notify_terminal: bool
    has_expert: bool

    @property
    def alive(self) -> bool: ...

    async def reset(self, task: Task) -> Observation: ...

    async def step(self, action: Action) -> Observation: ...

    async def notify_terminal(self, action: Action) -> None: ...

    async def notify_output(self, step_index: int, raw_text: str) -> None: ...

    async def evaluate(self) -> float: ...

    async def expert_act(self, state: EpisodeState) -> PolicyOutput: ...

    async def restart(self) -> None: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- threads


class CallerThreadExecutor(concurrent.futures.Executor):
    """Runs submitted calls on the thread that calls `serve` (the caller of a blocking
    engine run), so that environments and experts built on that thread (a Playwright page
    made by the caller) are only ever driven from it. See `run_blocking`."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]
        self._calls = queue.SimpleQueue()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((future, lambda: fn(*args, **kwargs)))
        return future

    def serve(self, until: threading.Event, poll_s: float = 0.05) -> None:
        """Run queued calls until `until` is set (returns as soon as it is)."""
        while not until.is_set():
            try:
                future, call = self._calls.get(timeout=poll_s)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)
            # KeyboardInterrupt propagates (run_blocking cancels the run; the awaiting task
            # is cancelled with it, so the interrupted episode gets no result line).


def new_env_thread(name: str) -> concurrent.futures.ThreadPoolExecutor:
    """A one-thread executor: every call of one environment runs on the same thread."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)


class ThreadHost:
    """An environment in this process, driven on one thread of its own (`executor`).

    Build it with `ThreadHost.start(...)` (the environment and its expert are made on
    that thread) or wrap an existing environment with `ThreadHost(env=...)` and the
    executor of the thread that made it (`owns_env` False: `close` leaves it open).
    An in-process environment restarts its own browser/X server/device on failure
    (Environment contract), so a ThreadHost is always `alive`.
    """

    def __init__(self, index: int, *, env: Environment, executor: concurrent.futures.Executor,
                 expert: Policy | None = None, owns_env: bool = True,
                 make_environment: Callable[[], Environment] | None = None,
                 make_expert: Callable[[Environment], Policy] | None = None) -> None:
        self.index = index
        self.env = env
        self.expert = expert
        self.executor = executor
        self.owns_env = owns_env
        self.name = f"thread {index}"
        self.has_notify_terminal = callable(getattr(env, "notify_terminal", None))
        self.has_notify_output = callable(getattr(env, "notify_output", None))
        self.has_expert = expert is not None
        self._make_environment = make_environment
        self._make_expert = make_expert

    @classmethod
    async def start(cls, index: int, make_environment: Callable[[], Environment],
                    make_expert: Callable[[Environment], Policy] | None = None) -> ThreadHost:
        """Build the environment (and expert) on a new thread that then drives it."""
        executor = new_env_thread(f"cua-env-{index}")

        def build() -> tuple[Environment, Policy | None]:
            env = make_environment()
            try:
                return env, (make_expert(env) if make_expert is not None else None)
            except BaseException:
                with contextlib.suppress(Exception):
                    env.close()
                raise

        try:
            env, expert = await _on(executor, build)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(index, env=env, executor=executor, expert=expert,
                   make_environment=make_environment, make_expert=make_expert)

    @property
    def alive(self) -> bool:
        return True

    @property
    def expert_name(self) -> str | None:
        return getattr(self.expert, "name", None) if self.expert is not None else None

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the environment's thread (for environment-bound helpers)."""
        return await _on(self.executor, fn)

    async def reset(self, task: Task) -> Observation:
        return await _on(self.executor, lambda: self.env.reset(task))

    async def step(self, action: Action) -> Observation:
        return await _on(self.executor, lambda: self.env.step(action))

    async def notify_terminal(self, action: Action) -> None:
        notify = getattr(self.env, "notify_terminal", None)
        if notify is None:
            raise TypeError(f"{type(self.env).__name__} has no notify_terminal")
        await _on(self.executor, lambda: notify(action))

    async def notify_output(self, step_index: int, raw_text: str) -> None:
        await _on(self.executor, lambda: self.env.notify_output(step_index, raw_text))  # type: ignore[attr-defined]

    async def evaluate(self) -> float:
        return float(await _on(self.executor, self.env.evaluate))

    async def expert_act(self, state: EpisodeState) -> PolicyOutput:
        expert = self.expert
        if expert is None:
            raise RuntimeError(f"{self.name} has no scripted expert")
        return (await _on(self.executor, lambda: expert.act([state])))[0]

    async def restart(self) -> None:
        """Close and rebuild the environment (only for hosts built by `start`)."""
        if self._make_environment is None:
            raise HostRestartFailed(f"{self.name} wraps an environment it cannot rebuild")
        await self.close()
        fresh = await ThreadHost.start(self.index, self._make_environment, self._make_expert)
        self.env, self.expert, self.executor = fresh.env, fresh.expert, fresh.executor
        self.owns_env = True

    async def close(self) -> None:
        if not self.owns_env:
            return

        def close_both() -> None:
            if self.expert is not None:
                try:
                    self.expert.close()
                except Exception as exc:  # noqa: BLE001 - closing must not hide the real error
                    logger.warning("%s: closing the expert failed: %s", self.name, exc)
            self.env.close()

        try:
            await _on(self.executor, close_both)
        except Exception as exc:  # noqa: BLE001
            logger.warning("%s: closing the environment failed: %s", self.name, exc)
        finally:
            if isinstance(self.executor, concurrent.futures.ThreadPoolExecutor):
                self.executor.shutdown(wait=False)


async def _on(executor: concurrent.futures.Executor, fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(executor, fn)


# --------------------------------------------------------------------------- the pool


@dataclass
class HostStats:
    """What one pool slot did (episodes leased, of which ended in an error, restarts)."""

    index: int
    episodes: int = 0
    errors: int = 0
    restarts: int = 0


class HostPool:
    """At most `size` environment hosts, handed out one episode at a time (`lease`).

    `start_host(index)` makes the host of slot `index`; hosts are started on first need
    (concurrently, so N browsers launch in parallel) and reused. Leases are granted in
    request order. A host that is not `alive` when its lease ends is restarted before its
    next lease; `MAX_RESTARTS_IN_A_ROW` failures raise HostRestartFailed to the waiting
    episode (a fatal error for the run).
    """

    def __init__(self, size: int, start_host: Callable[[int], Awaitable[EnvironmentHost]]
                 ) -> None:
        if size < 1:
            raise ValueError("a host pool needs at least one host")
        self.size = size
        self._start_host = start_host
        self.hosts: list[EnvironmentHost | None] = [None] * size
        self.stats = [HostStats(i) for i in range(size)]
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for index in range(size):
            self._free.put_nowait(index)
        self.leased = 0
        self._slot_of: dict[int, int] = {}

    @classmethod
    def of(cls, hosts: list[EnvironmentHost]) -> HostPool:
        """A pool over hosts that already exist."""
        pool = cls(len(hosts), _cannot_start)
        pool.hosts = list(hosts)
        return pool

    async def start_all(self) -> None:
        """Start every host now, concurrently (N browsers launch in parallel); if one
        fails, close the started ones and raise its error."""
        missing = [i for i, host in enumerate(self.hosts) if host is None]
        results = await asyncio.gather(*(self._start_host(i) for i in missing),
                                       return_exceptions=True)
        for index, result in zip(missing, results, strict=True):
            if not isinstance(result, BaseException):
                self.hosts[index] = result
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[EnvironmentHost]:
        """Hold one live host for the duration of the `async with` block."""
        index = await self._free.get()
        try:
            host = await self._ready(index)
            self._slot_of[id(host)] = index
            self.leased += 1
            try:
                yield host
            finally:
                self.leased -= 1
                self.stats[index].episodes += 1
        finally:
            self._free.put_nowait(index)

    def count_error(self, host: EnvironmentHost) -> None:
        """Count an episode that ended in an error on `host` (in its slot's stats)."""
        self.stats[self._slot_of[id(host)]].errors += 1

    async def _ready(self, index: int) -> EnvironmentHost:
        host = self.hosts[index]
        if host is None:
            host = self.hosts[index] = await self._start_host(index)
            return host
        if host.alive:
            return host
        last: BaseException | None = None
        for _ in itertools.repeat(None, MAX_RESTARTS_IN_A_ROW):
            try:
                await host.restart()
                self.stats[index].restarts += 1
                return host
            except HostError as exc:
                logger.warning("%s: restart failed: %s", host.name, exc)
                last = exc
        raise HostRestartFailed(f"{host.name} failed to restart {MAX_RESTARTS_IN_A_ROW} times "
                                f"in a row; stopping (last: {last})")

    async def close(self) -> None:
        """Close every started host (errors are logged, not raised)."""
        hosts = [h for h in self.hosts if h is not None]
        self.hosts = [None] * self.size
        results = await asyncio.gather(*(h.close() for h in hosts), return_exceptions=True)
        for host, result in zip(hosts, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("%s: close failed: %s", host.name, result)


async def _cannot_start(index: int) -> EnvironmentHost:
    raise HostRestartFailed(f"host {index} was given to the pool and cannot be started by it")


__all__ = [
    "MAX_RESTARTS_IN_A_ROW", "CallerThreadExecutor", "EnvironmentHost", "HostDied", "HostError",
    "HostHung", "HostPool", "HostRestartFailed", "HostStats", "ThreadHost", "new_env_thread",
]
