"""Environment workers: environments in worker processes (or Ray actors), seen by the engine
as `WorkerHost`s (agent.engine.hosts.EnvironmentHost).

Each worker is a separate process (multiprocessing, start method ``spawn``) that owns one
environment (its browser, X server or adb connection) and, for a scripted expert, the
expert next to it (experts read their environment). The parent keeps the engine
(agent.engine.episode: every episode its own task, the same episode code as in-process runs,
hence the same records), the policy service, and the run directory. Screenshots flow to
disk: a worker writes each screenshot into RUN/screenshots/<sha256>.png itself and sends
only its hash and metadata; the parent reads the file back when the policy needs the
pixels.

Faults: a worker that dies (killed, segfault, out of memory) or stops answering
(`call_timeout_s`) ends its episode in flight with a `WorkerDied`/`WorkerHung` error
(an EnvironmentCrashed, recorded like any crashed episode) and is started again before
its next episode (agent.engine.hosts.HostPool); other episodes go on. An environment crash
inside a worker (the browser died) comes back as the environment's own
`EnvironmentCrashed`. Storage errors (a full disk) stop the run: the finished episodes
are in results.jsonl and rerunning the command resumes.

Memory: every worker reports the resident set size of its process and of its children
(the browser) after each episode; `WorkerStats` keeps the last and the peak values, and
`workers_table` prints them.

The Ray backend (`agent.engine.ray_host`) supplies the same `WorkerHandle` interface with
Ray actors; everything else here is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from rich.table import Table

from actions.contracts import (
    Environment,
    EpisodeState,
    Policy,
    PolicyOutput,
    StepHistory,
    Task,
)
from actions.models import Action
from actions.observation import Observation
from agent.engine.episode import EpisodeSpec, LoopOptions, format_error, run_engine
from agent.engine.hosts import (
    EnvironmentHost,
    HostDied,
    HostError,
    HostHung,
    HostPool,
    new_env_thread,
)
from agent.engine.policy_service import (
    PolicyCalls,
    PolicyService,
)
from trajectories.record import EpisodeResult, screenshot_sha256
from trajectories.store import atomic_write_bytes

logger = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT_S = 300.0
DEFAULT_START_TIMEOUT_S = 120.0
MAX_RESTARTS_IN_A_ROW = 3


class WorkerError(HostError):
    """A worker (process or actor) died, hung, or could not start.

    It is an EnvironmentCrashed: the episode in flight ends as an error, the run goes on.
    """


class WorkerDied(WorkerError, HostDied):
    """The worker process or actor is gone (killed, crashed)."""


class WorkerHung(WorkerError, HostHung):
    """The worker did not answer within its call timeout; it was killed."""


class RemoteError(RuntimeError):
    """An exception from a worker that could not be sent back as itself (unpicklable)."""


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class EnvironmentFactory:
    """What a worker needs to build its environment (and expert); must be picklable.

    `make_environment()` builds the environment; `make_expert(env)` its scripted expert
    (None when the run uses a model policy). `screenshots_dir`: where the worker writes
    screenshots (RUN/screenshots); None sends the PNG bytes to the parent instead (a
    Ray actor on another machine without the run directory mounted).
    """

    make_environment: Callable[[], Environment]
    make_expert: Callable[[Environment], Policy] | None = None
    screenshots_dir: Path | None = None
    fsync: bool = False


@dataclass(frozen=True)
class WireObservation:
    """An Observation as it crosses from a worker to the parent: the PNG bytes are
    replaced by the hash of the file the worker wrote (or kept inline, `sha256=None`)."""

    observation: Observation
    sha256: str | None

    def load(self, screenshots_dir: Path | None) -> Observation:
        """The full Observation, its PNG read back from RUN/screenshots when needed."""
        if self.sha256 is None:
            return self.observation
        if screenshots_dir is None:
            raise RuntimeError("a worker wrote a screenshot to disk but the parent has no "
                               "screenshots directory to read it from")
        png = (screenshots_dir / f"{self.sha256}.png").read_bytes()
        return self.observation.model_copy(update={"screenshot_png": png})


def process_memory(pid: int | None = None) -> tuple[int, int]:
    """(RSS of the process, RSS of the process plus all its descendants), in bytes."""
    import psutil

    process = psutil.Process(pid)
    own = process.memory_info().rss
    total = own
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return own, total


class WorkerCore:
    """The environment side of a worker: serves requests from the parent's driver.

    Requests are ``(op, args)``; replies are ``("ok", value)`` or ``("err", exception)``.
    Ops: reset(task), step(action), notify_terminal(action),
    notify_output(step_index, raw_text), evaluate(),
    expert_act(state), memory(), info(), close().
    """

    def __init__(self, factory: EnvironmentFactory) -> None:
        self.factory = factory
        self.env = factory.make_environment()
        self.expert = factory.make_expert(self.env) if factory.make_expert else None
        self.observation: Observation | None = None
        self._written: set[str] = set()

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(),
                "has_notify_terminal": callable(getattr(self.env, "notify_terminal", None)),
                "has_notify_output": callable(getattr(self.env, "notify_output", None)),
                "has_expert": self.expert is not None,
                "expert_name": getattr(self.expert, "name", None)}

    def _wire(self, obs: Observation) -> WireObservation:
        self.observation = obs
        directory = self.factory.screenshots_dir
        if directory is None:
            return WireObservation(obs, None)
        sha = screenshot_sha256(obs.screenshot_png)
        if sha not in self._written:
            path = directory / f"{sha}.png"
            try:
                if not path.exists():
                    atomic_write_bytes(path, obs.screenshot_png, fsync=self.factory.fsync,
                                       content_addressed=True)
            except OSError as exc:
                # The parent writes it (and meets the same error, which stops the run).
                logger.warning("worker %d: cannot write screenshot %s: %s", os.getpid(), sha,
                               exc)
                return WireObservation(obs, None)
            self._written.add(sha)
        return WireObservation(obs.model_copy(update={"screenshot_png": b""}), sha)

    def handle(self, op: str, args: tuple[Any, ...]) -> Any:
        match op:
            case "reset":
                return self._wire(self.env.reset(args[0]))
            case "step":
                return self._wire(self.env.step(args[0]))
            case "notify_terminal":
                self.env.notify_terminal(args[0])  # type: ignore[attr-defined]
                return None
            case "notify_output":
                self.env.notify_output(*args)  # type: ignore[attr-defined]
                return None
            case "evaluate":
                return float(self.env.evaluate())
            case "expert_act":
                return self._expert_act(args[0])
            case "memory":
                return process_memory()
            case "info":
                return self.info()
            case "close":
                self.close()
                return None
        raise ValueError(f"unknown worker op {op!r}")

    def _expert_act(self, state: EpisodeState) -> PolicyOutput:
        if self.expert is None:
            raise RuntimeError("this worker has no scripted expert")
        if self.observation is not None:  # the parent sent the state without pixels
            state = state.model_copy(update={"observation": self.observation})
        return self.expert.act([state])[0]

    def reply(self, op: str, args: tuple[Any, ...]) -> tuple[str, Any]:
        """handle(), with any exception turned into an ("err", exception) reply."""
        try:
            return "ok", self.handle(op, args)
        except Exception as exc:  # noqa: BLE001 - the parent decides what a failure means
            return "err", exc

    def close(self) -> None:
        if self.expert is not None:
            with contextlib.suppress(Exception):
                self.expert.close()
        self.env.close()


def _send_reply(conn: Connection, reply: tuple[str, Any]) -> None:
    status, value = reply
    if status == "err":
        # Some exception classes pickle but cannot be rebuilt (custom __init__): check,
        # and send those as text so the parent reads "Type: message" either way.
        try:
            pickle.loads(pickle.dumps(value))
        except Exception:  # noqa: BLE001 - any failure means "send it as text"
            reply = (status, RemoteError(format_error(value)))
    try:
        conn.send(reply)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        logger.debug("reply not picklable (%s); sending it as text", exc)
        conn.send((status, RemoteError(format_error(value)) if status == "err" else value))


def _worker_main(conn: Connection, factory: EnvironmentFactory, index: int) -> None:
    """Entry point of a worker process: build the environment, then serve requests
    until 'close' or until the parent goes away (EOF on the pipe)."""
    os.setsid()  # own process group: the parent can kill the worker with its children
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    logging.basicConfig(level=logging.WARNING,
                        format=f"worker {index} %(levelname)s %(name)s: %(message)s")
    try:
        core = WorkerCore(factory)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which gives up
        _send_reply(conn, ("err", exc))
        return
    _send_reply(conn, ("ok", core.info()))
    try:
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):
                break  # the parent died or closed the pipe
            _send_reply(conn, core.reply(op, args))
            if op == "close":
                return
    finally:
        with contextlib.suppress(Exception):
            core.close()


# --------------------------------------------------------------------------- parent side


class WorkerHandle(Protocol):
    """The parent's handle on one environment worker (process or Ray actor)."""

    index: int
    info: dict[str, Any]

    def call(self, op: str, *args: Any, timeout_s: float | None = None) -> Any:
        """Run `op` in the worker; returns its value, re-raises its exception, or raises
        WorkerDied / WorkerHung."""
        ...

    def restart(self) -> None: ...

    def close(self) -> None: ...

    @property
    def alive(self) -> bool: ...


class ProcessWorker:
    """One worker process (spawned) holding one environment; see `WorkerHandle`."""

    def __init__(self, index: int, factory: EnvironmentFactory, *,
                 call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> None:
        self.index = index
        self.factory = factory
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._busy = threading.Lock()  # one request in flight on the pipe at a time
        self.info: dict[str, Any] = {}
        self.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, args=(child_conn, self.factory,
                                                                   self.index),
                                        name=f"cua-worker-{self.index}", daemon=True)
        process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        try:
            self.info = self._receive("start", self.start_timeout_s)
        except WorkerError:
            self._kill()
            raise
        except Exception as exc:
            self._kill()
            raise WorkerError(f"worker {self.index} could not build its environment: "
                              f"{format_error(exc)}") from exc
        logger.info("worker %d started (pid %s)", self.index, process.pid)

    def _receive(self, op: str, timeout_s: float) -> Any:
        assert self._conn is not None and self._process is not None
        ready = wait([self._conn, self._process.sentinel], timeout=timeout_s)
        pipe_closed = False
        if self._conn in ready:
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError):
                status, value, pipe_closed = None, None, True
            if status == "ok":
                return value
            if status == "err":
                raise value
        if pipe_closed:
            # A dying process closes its end of the pipe before the kernel reports its exit:
            # wait for the exit so that a killed worker is reported as dead, not as hung.
            self._process.join(timeout=10)
        if self._process.sentinel in ready or not self._process.is_alive():
            self._process.join(timeout=5)
            code = self._process.exitcode
            self._kill()
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise WorkerDied(f"worker {self.index} (pid {self._process.pid}) died during "
                             f"{op} ({how}); it restarts for the next episode")
        self._kill()
        raise WorkerHung(f"worker {self.index} (pid {self._process.pid}) gave no answer to "
                         f"{op} within {timeout_s:.0f} s; killed, it restarts for the next "
                         "episode")

    def call(self, op: str, *args: Any, timeout_s: float | None = None) -> Any:
        with self._busy:
            if not self.alive or self._conn is None:
                raise WorkerDied(f"worker {self.index} is not running")
            try:
                self._conn.send((op, args))
            except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                self._kill()
                raise WorkerDied(f"worker {self.index} (pid {self.pid}) is gone: "
                                 f"{exc}") from exc
            return self._receive(op, timeout_s or self.call_timeout_s)

    def _kill(self) -> None:
        """Kill the worker's process group (the worker and its browser) and reap it."""
        process = self._process
        if process is None:
            return
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def restart(self) -> None:
        self._kill()
        self.start()

    def close(self) -> None:
        """Ask the worker to close its environment; kill it if it is busy (a driver is
        still waiting on it, e.g. after Ctrl-C) or does not answer."""
        if self.alive and self._conn is not None and self._busy.acquire(timeout=5):
            self._busy.release()
            with contextlib.suppress(Exception):
                self.call("close", timeout_s=30)
        self._kill()



def _without_pixels(state: EpisodeState) -> EpisodeState:
    """The state as sent to a worker's expert: no PNG bytes (the worker has the current
    screen; experts read their environment, not old screenshots)."""
    empty = state.observation.model_copy(update={"screenshot_png": b""})
    history = [StepHistory(index=h.index, output=h.output, feedback=h.feedback,
                           observation=h.observation.model_copy(update={"screenshot_png": b""}))
               for h in state.history]
    return state.model_copy(update={"observation": empty, "history": history})


class WorkerHost:
    """An `EnvironmentHost` (agent.engine.hosts) over one worker (process or Ray actor).

    Blocking calls on the worker's pipe (or `ray.get`) run on a thread of this host, so
    the event loop goes on; screenshots the worker wrote to RUN/screenshots are read back
    from `screenshots_dir`. `stats` keeps the worker's pid and memory for `workers_table`.
    """

    def __init__(self, worker: WorkerHandle, screenshots_dir: Path | None) -> None:
        self.worker = worker
        self.index = worker.index
        self.screenshots_dir = screenshots_dir
        self.stats = WorkerStats(worker.index, worker.info.get("pid"))
        self._thread = new_env_thread(f"cua-worker-{worker.index}")

    @classmethod
    async def start(cls, make_worker: Callable[[], WorkerHandle],
                    screenshots_dir: Path | None, index: int) -> WorkerHost:
        """Start a worker (blocking, so on a thread) and wrap it."""
        executor = new_env_thread(f"cua-worker-start-{index}")
        try:
            worker = await asyncio.get_running_loop().run_in_executor(executor, make_worker)
        finally:
            executor.shutdown(wait=False)
        return cls(worker, screenshots_dir)

    @property
    def name(self) -> str:
        return f"worker {self.index} (pid {self.worker.info.get('pid')})"

    @property
    def has_notify_terminal(self) -> bool:
        return bool(self.worker.info.get("has_notify_terminal"))

    @property
    def has_notify_output(self) -> bool:
        return bool(self.worker.info.get("has_notify_output"))

    @property
    def has_expert(self) -> bool:
        return bool(self.worker.info.get("has_expert"))

    @property
    def expert_name(self) -> str | None:
        return self.worker.info.get("expert_name")

    @property
    def alive(self) -> bool:
        return self.worker.alive

    async def _call(self, op: str, *args: Any, timeout_s: float | None = None) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, lambda: self.worker.call(op, *args, timeout_s=timeout_s))

    async def reset(self, task: Task) -> Observation:
        wire: WireObservation = await self._call("reset", task)
        return wire.load(self.screenshots_dir)

    async def step(self, action: Action) -> Observation:
        wire: WireObservation = await self._call("step", action)
        return wire.load(self.screenshots_dir)

    async def notify_terminal(self, action: Action) -> None:
        await self._call("notify_terminal", action)

    async def notify_output(self, step_index: int, raw_text: str) -> None:
        await self._call("notify_output", step_index, raw_text)

    async def evaluate(self) -> float:
        return float(await self._call("evaluate"))

    async def expert_act(self, state: EpisodeState) -> PolicyOutput:
        return await self._call("expert_act", _without_pixels(state))

    async def measure(self) -> None:
        """Record the worker's memory (after an episode; failures are ignored)."""
        if self.worker.alive:
            with contextlib.suppress(WorkerError, OSError, ImportError):
                self.stats.measured(*await self._call("memory", timeout_s=30))

    async def restart(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.worker.restart)
        self.stats.restarts += 1
        self.stats.pid = self.worker.info.get("pid")

    async def close(self) -> None:
        # Not on the host's thread: after Ctrl-C a call may still hold it; close() kills
        # a busy worker.
        await asyncio.get_running_loop().run_in_executor(None, self.worker.close)
        self._thread.shutdown(wait=False)


@dataclass
class WorkerStats:
    """What one worker slot did; memory in bytes (RSS), None until first measured."""

    index: int
    pid: int | None = None
    episodes: int = 0
    errors: int = 0
    restarts: int = 0
    rss_bytes: int | None = None
    rss_with_children_bytes: int | None = None
    peak_rss_with_children_bytes: int | None = None

    def measured(self, own: int, total: int) -> None:
        self.rss_bytes, self.rss_with_children_bytes = own, total
        self.peak_rss_with_children_bytes = max(total, self.peak_rss_with_children_bytes or 0)


@dataclass
class ParallelReport:
    """What a run on worker hosts did (`run_on_worker_hosts`): per-worker stats and the
    sizes of the policy batches."""

    workers: list[WorkerStats] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0

    @property
    def mean_batch_size(self) -> float:
        return sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0


def workers_table(report: ParallelReport) -> Table:
    """Per-worker episodes, restarts and memory (MiB), printed after the results table."""
    table = Table(title="Workers")
    for column in ("worker", "pid", "episodes", "errors", "restarts", "RSS MiB",
                   "RSS+children MiB", "peak MiB"):
        table.add_column(column, justify="right")

    def mib(value: int | None) -> str:
        return "-" if value is None else f"{value / 2**20:.0f}"

    for stats in report.workers:
        table.add_row(str(stats.index), str(stats.pid or "-"), str(stats.episodes),
                      str(stats.errors), str(stats.restarts), mib(stats.rss_bytes),
                      mib(stats.rss_with_children_bytes),
                      mib(stats.peak_rss_with_children_bytes))
    if report.batch_sizes:
        table.caption = (f"{len(report.batch_sizes)} policy calls, mean batch "
                         f"{report.mean_batch_size:.2f} episodes")
    return table



async def run_on_worker_hosts(pool: HostPool, hosts: Sequence[WorkerHost],
                              service: PolicyService, episodes: Sequence[EpisodeSpec], *,
                              options: LoopOptions,
                              on_result: Callable[[EpisodeResult], None] | None = None,
                              ) -> ParallelReport:
    """`run_engine` on worker hosts, with their per-worker stats as a ParallelReport."""
    report = ParallelReport()

    async def after_episode(host: EnvironmentHost, result: EpisodeResult) -> None:
        assert isinstance(host, WorkerHost)
        host.stats.episodes += 1
        host.stats.errors += int(result.error is not None)
        await host.measure()

    try:
        outcome = await run_engine(pool, service, episodes, options=options,
                                   on_result=on_result, after_episode=after_episode)
        report.steps, report.wall_time_s = outcome.steps, outcome.wall_time_s
    finally:
        report.workers = [h.stats for h in hosts]
        report.batch_sizes = list(service.batch_sizes)
    return report


__all__ = [
    "EnvironmentFactory", "ParallelReport", "PolicyCalls", "ProcessWorker", "RemoteError",
    "WireObservation", "WorkerCore", "WorkerDied", "WorkerError", "WorkerHandle", "WorkerHost",
    "WorkerHung", "WorkerStats", "process_memory", "run_on_worker_hosts", "workers_table",
]
