"""Parallel rollouts: environments in worker processes (or Ray actors), one policy in the parent.

`run_parallel` runs the episodes of a run on N environment workers. Each worker is a
separate process (multiprocessing, start method ``spawn``) that owns one environment
(its browser, X server or adb connection) and, for a scripted expert, the expert next to
it (experts read their environment). The parent keeps:

- a shared task queue, drained by one *driver thread* per worker. A driver runs the
  agent loop's episode logic (`agent.loop.EpisodeRun`: the same code as in-process runs,
  hence the same records) against a proxy environment that forwards every call to its
  worker over a pipe;
- the policy. For a model policy the drivers' pending observations are gathered into
  ONE `policy.act()` call (`PolicyCalls.BATCHED`, the default for local models: a batch
  is sent when every driver in an episode is waiting, or `batch_wait_s` after the first
  request); servers get concurrent requests instead (`PolicyCalls.CONCURRENT`, the
  default for `OpenAICompatPolicy`); `PolicyCalls.SERIAL` asks one state at a time;
- the run directory: episode directories and results.jsonl are written by the parent
  exactly as in-process runs write them. Screenshots flow to disk: a worker writes each
  screenshot into RUN/screenshots/<sha256>.png itself and sends only its hash and
  metadata; the parent reads the file back when the policy needs the pixels.

Faults: a worker that dies (killed, segfault, out of memory) or stops answering
(`call_timeout_s`) ends its episode in flight with an `EnvironmentCrashed` error (recorded
like any crashed episode) and is started again before its next episode; other workers
go on. An environment crash inside a worker (the browser died) comes back as the
environment's own `EnvironmentCrashed`. Storage errors (a full disk) stop the run: the
finished episodes are in results.jsonl and rerunning the command resumes.

Memory: every worker reports the resident set size of its process and of its children
(the browser) after each episode; `WorkerStats` keeps the last and the peak values, and
`workers_table` prints them.

The Ray backend (`agent.ray_backend`) supplies the same `WorkerHandle` interface with
Ray actors; everything else here is shared.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from rich.table import Table

from actions.contracts import (
    Environment,
    EnvironmentCrashed,
    EpisodeState,
    Policy,
    PolicyOutput,
    StepHistory,
    Task,
)
from actions.models import Action
from actions.observation import Observation
from agent.loop import EpisodeRun, EpisodeSpec, LoopOptions, format_error
from trajectories.record import EpisodeResult, screenshot_sha256
from trajectories.store import NullRecorder, atomic_write_bytes

logger = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT_S = 300.0
DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_BATCH_WAIT_S = 1.0
MAX_RESTARTS_IN_A_ROW = 3


class WorkerError(EnvironmentCrashed):
    """A worker (process or actor) died, hung, or could not start.

    It is an EnvironmentCrashed: the episode in flight ends as an error, the run goes on.
    """


class WorkerDied(WorkerError):
    """The worker process or actor is gone (killed, crashed)."""


class WorkerHung(WorkerError):
    """The worker did not answer within its call timeout; it was killed."""


class RemoteError(RuntimeError):
    """An exception from a worker that could not be sent back as itself (unpicklable)."""


class PolicyCalls(enum.StrEnum):
    """How drivers reach a model policy (see the module docstring)."""

    BATCHED = "batched"
    CONCURRENT = "concurrent"
    SERIAL = "serial"


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
    Ops: reset(task), step(action), notify_terminal(action), evaluate(),
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
        if self._conn in ready:
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError):
                status, value = None, None
            if status == "ok":
                return value
            if status == "err":
                raise value
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


class WorkerEnvironment:
    """An Environment in the parent that forwards every call to a worker.

    Implements `notify_terminal` exactly when the worker's environment does, so the
    agent loop records terminal actions the same way as in-process.
    """

    def __init__(self, worker: WorkerHandle, screenshots_dir: Path | None) -> None:
        self.worker = worker
        self.screenshots_dir = screenshots_dir
        if worker.info.get("has_notify_terminal"):
            self.notify_terminal = self._notify_terminal

    def reset(self, task: Task) -> Observation:
        wire: WireObservation = self.worker.call("reset", task)
        return wire.load(self.screenshots_dir)

    def step(self, action: Action) -> Observation:
        wire: WireObservation = self.worker.call("step", action)
        return wire.load(self.screenshots_dir)

    def _notify_terminal(self, action: Action) -> None:
        self.worker.call("notify_terminal", action)

    def evaluate(self) -> float:
        return float(self.worker.call("evaluate"))

    def close(self) -> None:
        self.worker.close()


def _without_pixels(state: EpisodeState) -> EpisodeState:
    """The state as sent to a worker's expert: no PNG bytes (the worker has the current
    screen; experts read their environment, not old screenshots)."""
    empty = state.observation.model_copy(update={"screenshot_png": b""})
    history = [StepHistory(index=h.index, output=h.output, feedback=h.feedback,
                           observation=h.observation.model_copy(update={"screenshot_png": b""}))
               for h in state.history]
    return state.model_copy(update={"observation": empty, "history": history})


class BatchingBroker:
    """Gathers drivers' policy requests into batched `policy.act()` calls on one thread.

    A batch goes out when every registered driver (one that still has episodes to run)
    is waiting, or `batch_wait_s` after its first request or after the previous batch
    came back, whichever is later (a driver busy resetting or a slow environment step
    does not hold the others longer). Records the batch sizes.
    """

    def __init__(self, policy: Policy, batch_wait_s: float = DEFAULT_BATCH_WAIT_S) -> None:
        self.policy = policy
        self.batch_wait_s = batch_wait_s
        self.batch_sizes: list[int] = []
        self._pending: list[tuple[EpisodeState, Future[PolicyOutput]]] = []
        self._registered = 0
        self._first_at: float | None = None
        self._free_at = 0.0  # when the last batch came back (drivers then need a moment)
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="cua-policy-batcher",
                                        daemon=True)
        self._thread.start()

    def register(self) -> None:
        with self._cond:
            self._registered += 1

    def unregister(self) -> None:
        with self._cond:
            self._registered -= 1
            self._cond.notify_all()

    def act(self, state: EpisodeState) -> PolicyOutput:
        future: Future[PolicyOutput] = Future()
        with self._cond:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append((state, future))
            self._cond.notify_all()
        return future.result()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._pending:
                        since = max(self._first_at or 0.0, self._free_at)
                        waited = time.monotonic() - since
                        if (len(self._pending) >= self._registered
                                or waited >= self.batch_wait_s):
                            break
                        self._cond.wait(timeout=self.batch_wait_s - waited)
                    else:
                        self._cond.wait()
                batch, self._pending = self._pending, []
            self.batch_sizes.append(len(batch))
            try:
                outputs = self.policy.act([state for state, _ in batch])
                if len(outputs) != len(batch):
                    raise RuntimeError(f"policy returned {len(outputs)} outputs for "
                                       f"{len(batch)} episode states")
            except Exception as exc:  # noqa: BLE001 - every waiting episode gets it
                with self._cond:
                    self._free_at = time.monotonic()
                for _, future in batch:
                    future.set_exception(exc)
                continue
            with self._cond:
                self._free_at = time.monotonic()
            for (_, future), output in zip(batch, outputs, strict=True):
                future.set_result(output)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)


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
    """What `run_parallel` did: per-worker stats and the sizes of the policy batches."""

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


class _RunState:
    """Shared state of the drivers: the queue, the first fatal error, the stop flag."""

    def __init__(self, specs: Sequence[EpisodeSpec]) -> None:
        self.queue: deque[EpisodeSpec] = deque(specs)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.fatal: BaseException | None = None

    def next_spec(self) -> EpisodeSpec | None:
        with self.lock:
            if self.stop.is_set() or not self.queue:
                return None
            return self.queue.popleft()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()


def run_parallel(
    workers: Sequence[WorkerHandle],
    policy: Policy | None,
    episodes: Sequence[EpisodeSpec],
    *,
    options: LoopOptions,
    screenshots_dir: Path | None,
    on_result: Callable[[EpisodeResult], None] | None = None,
    policy_calls: PolicyCalls | str | None = None,
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
) -> ParallelReport:
    """Run `episodes` on `workers`; `policy` None means each worker's scripted expert.

    Blocks until every episode finished, or re-raises the first fatal error (a storage
    error, an exception from `on_result` such as RunAborted, KeyboardInterrupt) after
    stopping the drivers; unfinished episodes then have no result (resume reruns them).
    """
    if not workers:
        raise ValueError("run_parallel needs at least one worker")
    started = time.monotonic()
    if policy is None:
        if not all(w.info.get("has_expert") for w in workers):
            raise ValueError("no policy given and the workers have no scripted expert")
        policy_name = workers[0].info.get("expert_name") or "expert"
    else:
        policy_name = getattr(policy, "name", type(policy).__name__)
    calls = PolicyCalls(policy_calls) if policy_calls else _default_calls(policy)
    broker = (BatchingBroker(policy, batch_wait_s)
              if policy is not None and calls is PolicyCalls.BATCHED else None)
    serial_lock = threading.Lock()
    state = _RunState(episodes)
    report = ParallelReport(workers=[WorkerStats(w.index, w.info.get("pid")) for w in workers])
    report_lock = threading.Lock()

    def decide(worker: WorkerHandle, episode_state: EpisodeState) -> PolicyOutput:
        if policy is None:
            return worker.call("expert_act", _without_pixels(episode_state))
        if broker is not None:
            return broker.act(episode_state)
        if calls is PolicyCalls.SERIAL:
            with serial_lock:
                return policy.act([episode_state])[0]
        return policy.act([episode_state])[0]

    def _restart(worker: WorkerHandle, spec: EpisodeSpec) -> None:
        last: WorkerError | None = None
        for _ in range(MAX_RESTARTS_IN_A_ROW):
            try:
                worker.restart()
                return
            except WorkerError as exc:
                logger.warning("worker %d: restart failed: %s", worker.index, exc)
                last = exc
        with state.lock:
            state.queue.appendleft(spec)
        raise WorkerError(f"worker {worker.index} failed to restart "
                          f"{MAX_RESTARTS_IN_A_ROW} times in a row; stopping (last: {last})")

    def drive(slot: int) -> None:
        worker, stats = workers[slot], report.workers[slot]
        env = WorkerEnvironment(worker, screenshots_dir)
        while (spec := state.next_spec()) is not None:
            if not worker.alive:
                _restart(worker, spec)
                env = WorkerEnvironment(worker, screenshots_dir)
                stats.restarts += 1
                stats.pid = worker.info.get("pid")
            episode = EpisodeRun(task=spec.task, episode_id=spec.episode_id, sample=spec.sample,
                               env=env, recorder=spec.recorder or NullRecorder(), options=options,
                               policy_name=policy_name)
            episode.begin()
            while not episode.ended:
                if state.stop.is_set():
                    return  # abandoned: no result line, resume reruns it
                episode.check_limits()
                if episode.ended:
                    break
                step_started_at, act_started = time.time(), time.monotonic()
                try:
                    output = decide(worker, episode.state())
                except WorkerError as exc:
                    episode.end("error", format_error(exc))
                    break
                except Exception as exc:  # noqa: BLE001 - a policy fault ends the episode
                    logger.warning("policy %s raised: %s", policy_name, format_error(exc),
                                   exc_info=logger.isEnabledFor(logging.DEBUG))
                    episode.end("error", format_error(exc))
                    break
                episode.apply(output, step_started_at=step_started_at,
                              policy_s=time.monotonic() - act_started)
                with report_lock:
                    report.steps += 1
            result = episode.finish()
            with report_lock:
                stats.episodes += 1
                stats.errors += int(result.error is not None)
            if worker.alive:
                with contextlib.suppress(WorkerError, OSError, ImportError):
                    stats.measured(*worker.call("memory", timeout_s=30))
            if on_result is not None:
                with state.lock:
                    on_result(result)

    def guarded(slot: int) -> None:
        try:
            drive(slot)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            state.fail(exc)
        finally:
            if broker is not None:
                broker.unregister()

    threads = [threading.Thread(target=guarded, args=(slot,), name=f"cua-driver-{slot}",
                                daemon=True) for slot in range(len(workers))]
    # A driver counts for batching from the start until it runs out of episodes.
    for _ in threads:
        if broker is not None:
            broker.register()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    except BaseException as exc:  # KeyboardInterrupt: stop the drivers, keep what finished
        state.fail(exc)
        raise
    finally:
        state.stop.set()
        if broker is not None:
            report.batch_sizes = list(broker.batch_sizes)
            broker.close()
        report.wall_time_s = time.monotonic() - started
    if state.fatal is not None:
        raise state.fatal
    return report


def _default_calls(policy: Policy | None) -> PolicyCalls:
    try:
        from policies.openai_compat import OpenAICompatPolicy
    except ImportError:  # pragma: no cover - optional pieces missing
        return PolicyCalls.BATCHED
    return PolicyCalls.CONCURRENT if isinstance(policy, OpenAICompatPolicy) else \
        PolicyCalls.BATCHED


def start_process_workers(count: int, factory: EnvironmentFactory, *,
                          call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
                          start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> list[ProcessWorker]:
    """Start `count` worker processes (closing the started ones if one fails)."""
    started: list[ProcessWorker] = []
    try:
        for index in range(count):
            started.append(ProcessWorker(index, factory, call_timeout_s=call_timeout_s,
                                         start_timeout_s=start_timeout_s))
    except BaseException:
        for worker in started:
            worker.close()
        raise
    return started


__all__ = [
    "BatchingBroker", "EnvironmentFactory", "ParallelReport", "PolicyCalls", "ProcessWorker",
    "RemoteError", "WireObservation", "WorkerCore", "WorkerDied", "WorkerEnvironment",
    "WorkerError", "WorkerHandle", "WorkerHung", "WorkerStats", "process_memory",
    "run_parallel", "start_process_workers", "workers_table",
]


# --------------------------------------------------------------------------- runner hook


class Backend(enum.StrEnum):
    """Where environment workers run: local processes, or Ray actors (agent.ray_backend)."""

    PROCESS = "process"
    RAY = "ray"


def run_todo_parallel(
    writer: Any,
    todo: Sequence[Any],
    *,
    make_environment: Callable[[], Environment],
    make_expert: Callable[[Environment], Policy] | None,
    policy: str | Policy,
    policy_options: dict[str, Any],
    options: LoopOptions,
    workers: int,
    backend: Backend | str = Backend.PROCESS,
    backend_options: dict[str, Any] | None = None,
    max_consecutive_errors: int | None = 10,
    console: Any = None,
    show_progress: bool = True,
    title: str = "episodes",
    summary: Any = None,
) -> ParallelReport:
    """The runner's multi-worker path (`agent.runner.execute_run` with workers >= 1).

    `writer` is the run's RunWriter and `todo` its unfinished PlannedEpisodes. The
    environment factory (and expert factory) must be picklable (a suite's bound methods
    are). `backend_options`: process backend: call_timeout_s, start_timeout_s,
    policy_calls ('batched'/'concurrent'/'serial'), batch_wait_s; Ray backend: those
    plus address, actor_options (e.g. {"num_cpus": 1, "resources": {"android": 1}}),
    init_options, shared_storage (see agent.ray_backend).
    """
    from rich.console import Console

    from agent.runner import RunProgress
    from policies.registry import EXPERT_POLICY_NAMES, make_policy

    console = console or Console()
    opts = dict(backend_options or {})
    backend = Backend(backend)
    expert = isinstance(policy, str) and policy in EXPERT_POLICY_NAMES
    if expert and make_expert is None:
        raise ValueError(f"policy {policy!r} is a scripted expert, and this environment has "
                         "none; pick a model policy")
    built: Policy | None = None
    handles: list[Any] = []
    ray_session: Any = None
    try:
        if isinstance(policy, str) and not expert:
            built = make_policy(policy, **policy_options)  # a bad model fails before workers
        elif not isinstance(policy, str):
            built = policy
        common = {k: opts.pop(k) for k in ("call_timeout_s", "start_timeout_s") if k in opts}
        calls = opts.pop("policy_calls", None)
        batch_wait_s = float(opts.pop("batch_wait_s", DEFAULT_BATCH_WAIT_S))
        count = max(1, min(workers, len(todo)))
        if backend is Backend.RAY:
            from agent.ray_backend import RaySession

            shared = bool(opts.pop("shared_storage", False))
            factory = EnvironmentFactory(make_environment, make_expert if expert else None,
                                         writer.path / "screenshots" if shared else None,
                                         getattr(writer, "fsync_screenshots", False))
            ray_session = RaySession(num_cpus=opts.pop("num_cpus", count), **opts)
            handles = ray_session.start_workers(count, factory, **common)
        else:
            if opts:
                raise ValueError(f"unknown process backend options: {sorted(opts)}")
            factory = EnvironmentFactory(make_environment, make_expert if expert else None,
                                         writer.path / "screenshots",
                                         getattr(writer, "fsync_screenshots", False))
            handles = start_process_workers(count, factory, **common)
        console.print(f"[dim]{len(handles)} {backend.value} workers: pids "
                      f"{', '.join(str(h.info.get('pid')) for h in handles)}[/dim]")

        specs = [EpisodeSpec(task=p.task, episode_id=p.episode_id, sample=p.sample,
                             recorder=writer.start_episode(p.episode_id)) for p in todo]
        with RunProgress(console, f"{title} ×{len(handles)}", len(todo), show=show_progress,
                         summary=summary,
                         max_consecutive_errors=max_consecutive_errors) as progress:
            report = run_parallel(handles, built, specs, options=options,
                                  screenshots_dir=writer.path / "screenshots",
                                  on_result=progress.on_result, policy_calls=calls,
                                  batch_wait_s=batch_wait_s)
        console.print(workers_table(report))
        if summary is not None:
            summary.worker_report = report  # per-worker stats and batch sizes, for benchmarks
        for stats in report.workers:
            logger.info("worker %d: %d episodes, %d restarts, RSS %s bytes (with children %s)",
                        stats.index, stats.episodes, stats.restarts, stats.rss_bytes,
                        stats.rss_with_children_bytes)
        return report
    finally:
        for handle in handles:
            with contextlib.suppress(Exception):
                handle.close()
        if ray_session is not None:
            ray_session.close()
        if built is not None and isinstance(policy, str):
            with contextlib.suppress(Exception):
                built.close()
