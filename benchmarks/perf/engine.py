"""Rollout throughput: the old lockstep loop against the asynchronous engine, side by side.

Two parts, each run both ways in one invocation:

(a) REAL environments at the scale this machine holds: MiniWoB on Chromium and the
    Android suite on virtual devices (the adb wire protocol over TCP, screens rendered by
    headless Chromium; see benchmarks/android/virtual_device), driven by the suites'
    scripted experts whose answers are delayed by the SIMULATED served policy below (so
    the environments do real work and the policy costs what a model costs).
(b) SIMULATED environments (a thread per environment sleeping for step times drawn from
    the step times part (a) measured on the real environments, or from the defaults
    below when (a) is skipped) and a SIMULATED served policy: a request takes
    ``base_s + per_request_s * n`` seconds, n being the requests in flight when it
    arrives (a server that batches continuously gets slower per request as its batch
    grows), by default 1.0 s + 0.03 s x n, scaled by --time-scale.

Both sides use the same hosts, episode code, policy service and server model; only the
scheduling differs. "lockstep" is the loop the engine replaced (`run_episodes_batched`
before the engine): every round asks the policy for all live episodes and waits for the
slowest answer, then steps every environment and waits for the slowest step, then refills
free environments. Here a round's steps run in parallel, which is kinder to lockstep than
the old in-process loop (it stepped them one after another). "engine" is agent.engine.episode:
each episode at its own pace, the policy as a concurrent service.

Printed per setup: steps/s, the fraction of wall time the policy server had work (at
least one request in flight), mean environment idle time (fraction of wall time an
environment was not resetting/stepping/evaluating), and the engine's speed-up.

    python -m benchmarks.perf.engine                  # (a) and (b), a few minutes
    python -m benchmarks.perf.engine --skip-real --episodes 32,128
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from actions.contracts import Environment, EpisodeState, PolicyOutput, Task
from actions.models import Action, Click
from actions.observation import Observation, Size
from agent.engine.episode import EpisodeRun, EpisodeSpec, LoopOptions, run_engine
from agent.engine.hosts import EnvironmentHost, HostPool, ThreadHost
from agent.engine.policy_service import ConcurrentPolicy

# Step times (s) of the real environments, deciles of what part (a) measured on this
# machine (2 cores shared with other jobs, load average ~30; 2026-12-02): used by part (b)
# when part (a) is skipped. Quiet machines step faster; see docs/rollouts.md.
DEFAULT_STEP_TIMES_S = {
    "web": [0.06, 0.28, 0.39, 0.48, 0.57, 0.59, 0.65, 0.77, 1.01, 1.47],
    "android": [0.33, 0.79, 0.97, 1.06, 1.24, 1.39, 1.55, 2.06, 2.16, 2.49],
}


# --------------------------------------------------------------------------- the server


class SimulatedServer:
    """A stand-in for a continuously batching model server (vLLM/SGLang): a request
    takes ``base_s + per_request_s * n`` s, n the requests in flight on arrival. Keeps
    the time during which at least one request was in flight (`busy_s`)."""

    def __init__(self, base_s: float, per_request_s: float) -> None:
        self.base_s, self.per_request_s = base_s, per_request_s
        self.in_flight = 0
        self.requests = 0
        self.busy_s = 0.0
        self._busy_since = 0.0
        self._lock = threading.Lock()

    def serve(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            if self.in_flight == 1:
                self._busy_since = time.monotonic()
            latency = self.base_s + self.per_request_s * self.in_flight
        time.sleep(latency)  # the simulated decoding time of this request
        with self._lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.busy_s += time.monotonic() - self._busy_since


class ClickingServedPolicy:
    """A Policy whose every answer is one click, delivered after the simulated server's
    latency (the policy of part (b))."""

    name = "simulated-server"

    def __init__(self, server: SimulatedServer) -> None:
        self.server = server

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        assert len(states) == 1, "served requests are one state each"
        self.server.serve()
        return [PolicyOutput(raw_text="click", actions=[Click(x=10, y=10)])]

    def close(self) -> None:
        return None


class ExpertBehindServer:
    """A PolicyService for part (a): the environment's scripted expert decides (it reads
    the real environment) and the answer arrives after the simulated server's latency."""

    def __init__(self, server: SimulatedServer) -> None:
        self.name = "expert+simulated-server"
        self.batch_sizes: list[int] = []
        self._server = ConcurrentPolicy(_Waiter(server))

    def episodes_active(self, count: int) -> None:
        return None

    async def act(self, state: EpisodeState, host: EnvironmentHost) -> PolicyOutput:
        output = await host.expert_act(state)
        await self._server.act(state, host)
        return output

    async def close(self) -> None:
        await self._server.close()


class _Waiter:
    name = "server"

    def __init__(self, server: SimulatedServer) -> None:
        self.server = server

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        self.server.serve()
        return [PolicyOutput(raw_text="")]

    def close(self) -> None:
        return None


def _clicking_service(server: SimulatedServer) -> ConcurrentPolicy:
    return ConcurrentPolicy(ClickingServedPolicy(server), max_concurrency=256)


# --------------------------------------------------------------------------- environments


@dataclass
class BusyClock:
    """Time an environment spent inside reset/step/evaluate."""

    busy_s: float = 0.0
    steps: int = 0


class TimedEnvironment:
    """Wraps an Environment and measures the time spent in its calls."""

    def __init__(self, env: Any, clock: BusyClock) -> None:
        self.env, self.clock = env, clock
        self.step_times_s: list[float] = []
        if callable(getattr(env, "notify_terminal", None)):
            self.notify_terminal = env.notify_terminal

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def _timed(self, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return fn()
        finally:
            self.clock.busy_s += time.monotonic() - started

    def reset(self, task: Task) -> Observation:
        return self._timed(lambda: self.env.reset(task))

    def step(self, action: Action) -> Observation:
        self.clock.steps += 1
        started = time.monotonic()
        try:
            return self._timed(lambda: self.env.step(action))
        finally:
            self.step_times_s.append(time.monotonic() - started)

    def evaluate(self) -> float:
        return self._timed(self.env.evaluate)

    def close(self) -> None:
        self.env.close()


def _png(size: Size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size.width, size.height), (200, 200, 200)).save(buffer, "PNG")
    return buffer.getvalue()


class SimulatedEnvironment:
    """A stand-in environment: each step sleeps for a time drawn from `step_times_s`
    (on its own thread, as a real driver blocks), a reset for `reset_s`."""

    SIZE = Size(width=64, height=48)

    def __init__(self, step_times_s: Sequence[float], reset_s: float, seed: int) -> None:
        self.step_times_s, self.reset_s = list(step_times_s), reset_s
        self.random = random.Random(seed)
        self.png = _png(self.SIZE)

    def _obs(self) -> Observation:
        return Observation(screenshot_png=self.png, screen_size=self.SIZE,
                           screenshot_size=self.SIZE)

    def reset(self, task: Task) -> Observation:
        time.sleep(self.reset_s)
        return self._obs()

    def step(self, action: Action) -> Observation:
        time.sleep(self.random.choice(self.step_times_s))
        return self._obs()

    def evaluate(self) -> float:
        return 1.0

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------- schedulers


async def lockstep(groups: Sequence[tuple[EnvironmentHost, list[EpisodeSpec]]],
                   service: Any, options: LoopOptions) -> int:
    """The replaced loop: rounds of (policy for every live episode, wait for all; step
    every live episode, wait for all; refill). `groups`: each host with the episodes it
    runs. Returns the number of policy steps."""
    queues = [list(specs) for _, specs in groups]
    live: list[EpisodeRun | None] = [None] * len(groups)
    steps = 0

    async def begin(slot: int) -> None:
        host = groups[slot][0]
        while live[slot] is None and queues[slot]:
            spec = queues[slot].pop(0)
            episode = EpisodeRun(task=spec.task, episode_id=spec.episode_id, sample=spec.sample,
                                 host=host, recorder=_null(), options=options,
                                 policy_name=service.name)
            await episode.begin()
            if episode.ended:
                await episode.finish()
            else:
                live[slot] = episode

    while any(queues) or any(live):
        await asyncio.gather(*(begin(slot) for slot in range(len(groups))))
        for slot, episode in enumerate(live):
            if episode is not None:
                episode.check_limits()
                if episode.ended:
                    await episode.finish()
                    live[slot] = None
        active = [(slot, e) for slot, e in enumerate(live) if e is not None]
        if not active:
            continue
        started_at, started = time.time(), time.monotonic()
        outputs = await asyncio.gather(*(service.act(e.state(), groups[slot][0])
                                         for slot, e in active))
        policy_s = time.monotonic() - started
        await asyncio.gather(*(e.apply(o, step_started_at=started_at, policy_s=policy_s)
                               for (_, e), o in zip(active, outputs, strict=True)))
        steps += len(active)
        for slot, episode in active:
            if episode.ended:
                await episode.finish()
                live[slot] = None
    return steps


def _null() -> Any:
    from trajectories.store import NullRecorder

    return NullRecorder()


async def engine(groups: Sequence[tuple[EnvironmentHost, list[EpisodeSpec]]], service: Any,
                 options: LoopOptions) -> int:
    """agent.engine.episode: one pool per kind of environment, all sharing one policy service
    (each episode runs on a host of its own kind)."""
    by_kind: dict[str, tuple[list[EnvironmentHost], list[EpisodeSpec]]] = {}
    for host, specs in groups:
        hosts, kind_specs = by_kind.setdefault(specs[0].task.suite if specs else "none",
                                               ([], []))
        hosts.append(host)
        kind_specs.extend(specs)
    reports = await asyncio.gather(*(
        run_engine(HostPool.of(hosts), service, specs, options=options)
        for hosts, specs in by_kind.values()))
    return sum(r.steps for r in reports)


# --------------------------------------------------------------------------- one setup


@dataclass
class Figures:
    label: str
    scheduler: str
    envs: int
    episodes: int
    steps: int
    wall_s: float
    server_busy: float
    env_idle: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s


async def measure(label: str, scheduler: str, groups: list[tuple[EnvironmentHost,
                                                                 list[EpisodeSpec]]],
                  clocks: list[BusyClock], server: SimulatedServer, service: Any,
                  options: LoopOptions) -> Figures:
    for clock in clocks:
        clock.busy_s, clock.steps = 0.0, 0
    server.busy_s = 0.0
    run = lockstep if scheduler == "lockstep" else engine
    started = time.monotonic()
    steps = await run(groups, service, options)
    wall_s = time.monotonic() - started
    idle = [1 - min(1.0, c.busy_s / wall_s) for c in clocks]
    return Figures(label, scheduler, len(groups), sum(len(s) for _, s in groups), steps, wall_s,
                   min(1.0, server.busy_s / wall_s), sum(idle) / len(idle))


# --------------------------------------------------------------------------- part (b)


def simulated_kinds(step_times: dict[str, list[float]], envs: int) -> list[str]:
    """Mixed fleet: two web environments for every Android one."""
    return ["android" if i % 3 == 2 else "web" for i in range(envs)]


async def part_b(episodes: int, step_times: dict[str, list[float]], args: argparse.Namespace
                 ) -> list[Figures]:
    scale = args.time_scale
    scaled = {k: [t * scale for t in v] for k, v in step_times.items()}
    per_env = args.episodes_per_env
    if episodes % per_env:
        raise SystemExit(f"--episodes {episodes} is not a multiple of --episodes-per-env")
    kinds = simulated_kinds(scaled, episodes // per_env)
    out: list[Figures] = []
    for scheduler in ("lockstep", "engine"):
        server = SimulatedServer(args.base_s * scale, args.per_request_s * scale)
        clocks = [BusyClock() for _ in kinds]
        hosts = [await ThreadHost.start(
            i, lambda i=i, k=k, clock=clocks[i]: TimedEnvironment(
                SimulatedEnvironment(scaled[k], reset_s=0.5 * scale, seed=i), clock))
            for i, k in enumerate(kinds)]
        rng = random.Random(episodes)
        groups = []
        for i, host in enumerate(hosts):
            specs = [EpisodeSpec(task=Task(suite="sim", task_id=f"{kinds[i]}-{i}", seed=n,
                                           max_steps=rng.randint(args.min_steps,
                                                                 args.max_steps)),
                                 episode_id=f"sim-{i}-{n}") for n in range(per_env)]
            groups.append((host, specs))
        service = _clicking_service(server)
        try:
            out.append(await measure(f"simulated, {episodes} episodes", scheduler, groups,
                                     clocks, server, service, LoopOptions()))
        finally:
            await service.close()
            await asyncio.gather(*(h.close() for h in hosts))
    return out


# --------------------------------------------------------------------------- part (a)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def part_a(args: argparse.Namespace, root: Path, console: Console
                 ) -> tuple[list[Figures], dict[str, list[float]]]:
    from benchmarks.android.suite import AndroidSuite
    from benchmarks.miniwob import MiniWoBSuite

    adb = shutil.which("adb") or "/usr/bin/adb"
    port = _free_port()
    subprocess.run([adb, "-P", str(port), "start-server"], check=True, capture_output=True,
                   timeout=60, env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})
    miniwob, android = MiniWoBSuite(), AndroidSuite(adb_port=port)
    scale = 1.0  # real environments cannot be scaled, so neither is the server here
    out: list[Figures] = []
    measured: dict[str, list[float]] = {"web": [], "android": []}
    hosts: list[ThreadHost] = []
    try:
        clocks = [BusyClock() for _ in range(args.web_envs + args.android_envs)]
        kinds = ["web"] * args.web_envs + ["android"] * args.android_envs

        def maker(i: int) -> Callable[[], Environment]:
            suite = miniwob if kinds[i] == "web" else android
            return lambda: TimedEnvironment(suite.make_environment(), clocks[i])

        def expert(env: Any) -> Any:
            suite = miniwob if isinstance(env.env, _miniwob_env_type()) else android
            return suite.make_expert(env.env)

        console.print(f"[dim](a) starting {args.web_envs} Chromium + {args.android_envs} "
                      "virtual Android devices ...[/dim]")
        hosts = list(await asyncio.gather(*(ThreadHost.start(i, maker(i), expert)
                                            for i in range(len(kinds)))))
        web_tasks = ["click-button", "click-checkboxes", "enter-text", "focus-text",
                     "login-user"]
        android_tasks = sorted(android.list_tasks())[:4]

        def plan(round_: int) -> list[tuple[EnvironmentHost, list[EpisodeSpec]]]:
            groups = []
            for i, host in enumerate(hosts):
                names = web_tasks if kinds[i] == "web" else android_tasks
                suite = miniwob if kinds[i] == "web" else android
                specs = [EpisodeSpec(task=suite.make_task(names[(i + n) % len(names)],
                                                          100 + 10 * i + n),
                                     episode_id=f"{round_}-{i}-{n}")
                         for n in range(args.real_episodes)]
                groups.append((host, specs))
            return groups

        for scheduler in ("lockstep", "engine"):
            server = SimulatedServer(args.base_s * scale, args.per_request_s * scale)
            service = ExpertBehindServer(server)
            figures = await measure(f"real: {args.web_envs} MiniWoB + {args.android_envs} "
                                    "Android", scheduler, plan(len(out)), clocks, server,
                                    service, LoopOptions())
            out.append(figures)
            await service.close()
        for i, host in enumerate(hosts):
            measured[kinds[i]].extend(_step_times(host))
    finally:
        await asyncio.gather(*(h.close() for h in hosts), return_exceptions=True)
        subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True, timeout=30)
    return out, measured


def _miniwob_env_type() -> type:
    from benchmarks.miniwob.environment import MiniWoBEnvironment

    return MiniWoBEnvironment


def _step_times(host: ThreadHost) -> list[float]:
    env = host.env
    assert isinstance(env, TimedEnvironment)
    return list(getattr(env, "step_times_s", []))


# --------------------------------------------------------------------------- printing


def table(rows: list[Figures], title: str) -> Table:
    out = Table(title=title)
    for column in ("setup", "scheduler", "envs", "episodes", "steps", "wall s", "steps/s",
                   "server busy", "env idle", "speed-up"):
        out.add_column(column, justify="right")
    base: dict[str, float] = {}
    for row in rows:
        if row.scheduler == "lockstep":
            base[row.label] = row.steps_per_s
    for row in rows:
        ratio = row.steps_per_s / base[row.label] if row.label in base else float("nan")
        out.add_row(row.label, row.scheduler, str(row.envs), str(row.episodes), str(row.steps),
                    f"{row.wall_s:.1f}", f"{row.steps_per_s:.2f}", f"{row.server_busy:.0%}",
                    f"{row.env_idle:.0%}", f"{ratio:.2f}x")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", default="32,64",
                        help="(b) simulated episode counts (one environment each)")
    parser.add_argument("--time-scale", type=float, default=0.25,
                        help="multiply every simulated time (server and environments) by this "
                        "to finish sooner; ratios do not depend on it")
    parser.add_argument("--base-s", type=float, default=1.0,
                        help="simulated server: seconds per request at an empty server")
    parser.add_argument("--per-request-s", type=float, default=0.03,
                        help="simulated server: extra seconds per request in flight")
    parser.add_argument("--episodes-per-env", type=int, default=1,
                        help="(b) episodes each simulated environment runs in turn "
                        "(1: as many environments as episodes)")
    parser.add_argument("--min-steps", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--skip-real", action="store_true", help="skip part (a)")
    parser.add_argument("--web-envs", type=int, default=4)
    parser.add_argument("--android-envs", type=int, default=2)
    parser.add_argument("--real-episodes", type=int, default=2,
                        help="(a) episodes per environment and scheduler")
    parser.add_argument("--step-times-from", type=Path,
                        help="(b) step times from the JSON of an earlier run (its part (a))")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    console = Console()
    rows: list[Figures] = []
    step_times = DEFAULT_STEP_TIMES_S
    source = "defaults (docs/rollouts.md)"
    if args.step_times_from:
        step_times = json.loads(args.step_times_from.read_text())["step_times_s"]
        source = str(args.step_times_from)
    with tempfile.TemporaryDirectory(prefix="perf-async-") as tmp:
        if not args.skip_real:
            real, measured = asyncio.run(part_a(args, Path(tmp), console))
            rows += real
            console.print(table(real, "(a) real environments, expert actions behind the "
                                "simulated server"))
            if all(len(v) >= 5 for v in measured.values()):
                step_times, source = measured, "part (a)"
    console.print(f"[dim](b) step times from {source}: " + ", ".join(
        f"{k} median {sorted(v)[len(v) // 2]:.2f} s (n={len(v)})"
        for k, v in step_times.items()) + "[/dim]")
    simulated: list[Figures] = []
    for count in (int(c) for c in args.episodes.split(",")):
        console.print(f"[dim](b) {count} simulated episodes ...[/dim]")
        simulated += asyncio.run(part_b(count, step_times, args))
    rows += simulated
    console.print(table(simulated, "(b) simulated environments (measured step times) and "
                        "simulated served policy"))
    figures = {"rows": [{**r.__dict__, "steps_per_s": r.steps_per_s} for r in rows],
               "step_times_source": source, "step_times_s": step_times,
               "server": {"base_s": args.base_s, "per_request_s": args.per_request_s,
                          "time_scale": args.time_scale}}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
