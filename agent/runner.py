"""The rollout runner: many episodes of a suite into one run directory, with resume.

`run_suite(config)` takes one `agent.config.RunConfig`, plans its episodes — (task, seed)
pairs with seeds ``seed, seed+1, ...`` per task, optionally several samples of each — opens
the run directory (checking that an existing one was made with the same config), skips the
episodes already in ``results.jsonl``, deletes the partial directories of episodes a killed
run left behind, runs the rest through the engine, and prints a results table.

Resuming is running the same command again: a killed-and-resumed run ends with exactly
one result line per planned episode.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from actions.contracts import Environment, Policy, Task
from agent.config import RESUME_KEYS, RunConfig, redact_options
from agent.engine.episode import (
    EpisodeSpec,
    LoopOptions,
    run_blocking,
    run_engine,
)
from agent.engine.hosts import EnvironmentHost, HostPool, ThreadHost
from agent.engine.policy_service import ExpertPolicy, PolicyService, make_policy_service
from benchmarks.base import Suite, get_suite
from policies.registry import EXPERT_POLICY_NAMES, make_policy
from trajectories.record import EpisodeResult, episode_key, to_json_text
from trajectories.store import RunWriter, atomic_write_bytes

logger = logging.getLogger(__name__)

class RunAborted(RuntimeError):
    """The run stopped early (e.g. every recent episode failed with an error)."""


@dataclass(frozen=True)
class PlannedEpisode:
    """One episode a run must contain: its task, which sample of (task, seed) it is, and
    its deterministic id (also its directory name under RUN/episodes/)."""

    task: Task
    sample: int
    episode_id: str

    @property
    def key(self) -> str:
        return episode_key(self.task.suite, self.task.task_id, self.task.seed, self.sample)


@dataclass
class TaskStats:
    """Aggregates of one task's finished episodes."""

    task_id: str
    episodes: int = 0
    successes: int = 0
    reward_sum: float = 0.0
    steps_sum: int = 0
    errors: int = 0

    def add(self, result: EpisodeResult) -> None:
        self.episodes += 1
        self.successes += int(result.success)
        self.reward_sum += result.reward
        self.steps_sum += result.steps
        self.errors += int(result.error is not None)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.episodes if self.episodes else 0.0

    @property
    def mean_steps(self) -> float:
        return self.steps_sum / self.episodes if self.episodes else 0.0


@dataclass
class RunSummary:
    """What a runner call did. `results` covers every planned episode that is finished
    (from this call or an earlier one); `ran` counts this call's episodes, `skipped` the
    ones found already finished."""

    out_dir: Path
    planned: int
    ran: int
    skipped: int
    results: list[EpisodeResult] = field(default_factory=list)
    wall_time_s: float = 0.0
    worker_report: Any = None  # agent.engine.workers.ParallelReport of a run on workers

    def per_task(self) -> list[TaskStats]:
        stats: dict[str, TaskStats] = {}
        for result in self.results:
            stats.setdefault(result.task_id, TaskStats(result.task_id)).add(result)
        return [stats[k] for k in sorted(stats)]

    def totals(self) -> TaskStats:
        total = TaskStats("total")
        for result in self.results:
            total.add(result)
        return total

    @property
    def complete(self) -> bool:
        return len(self.results) == self.planned


def episode_id_for(task_id: str, seed: int, sample: int = 0) -> str:
    """Deterministic directory-safe id of an episode, e.g. ``click-test_seed3``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", task_id)
    if safe != task_id:  # keep ids unique when sanitizing merged different task ids
        safe = f"{safe}-{hashlib.sha1(task_id.encode()).hexdigest()[:6]}"
    return f"{safe}_seed{seed}" + (f"_sample{sample}" if sample else "")


def plan_episodes(
    suite: Suite,
    task_ids: Sequence[str],
    episodes_per_task: int,
    seed: int,
    *,
    samples_per_seed: int = 1,
    task_overrides: dict[str, Any] | None = None,
) -> list[PlannedEpisode]:
    """Episodes for `task_ids` x seeds ``seed .. seed+episodes_per_task-1`` x samples."""
    if episodes_per_task < 1 or samples_per_seed < 1:
        raise ValueError("episodes per task and samples per seed must be at least 1")
    known = set(suite.list_tasks())
    unknown = [t for t in task_ids if t not in known]
    if unknown:
        raise KeyError(f"unknown {suite.name} task(s): {', '.join(unknown)}; "
                       f"`cua eval {suite.name} --list` shows the {len(known)} tasks")
    overrides = {k: v for k, v in (task_overrides or {}).items() if v is not None}
    planned: list[PlannedEpisode] = []
    for task_id in task_ids:
        for episode_seed in range(seed, seed + episodes_per_task):
            task = suite.make_task(task_id, episode_seed, **overrides)
            for sample in range(samples_per_seed):
                planned.append(PlannedEpisode(task, sample,
                                              episode_id_for(task_id, episode_seed, sample)))
    keys = [p.key for p in planned]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate tasks in the task list")
    return planned


class RunProgress:
    """The progress bar of a run and its error streak: call `on_result` once per finished
    episode; it prints errors and raises RunAborted after `max_consecutive_errors` in a
    row (None or 0: never)."""

    def __init__(self, console: Console, title: str, total: int, *, show: bool = True,
                 summary: RunSummary | None = None,
                 max_consecutive_errors: int | None = None) -> None:
        self.console = console
        self.summary = summary
        self.max_consecutive_errors = max_consecutive_errors
        self.ran = self.successes = self.errors_in_a_row = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("success {task.fields[rate]}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, disable=not show, transient=False,
        )
        self._title, self._total = title, total

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        self._bar = self.progress.add_task(self._title, total=self._total, rate="-")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.__exit__(*exc_info)  # type: ignore[arg-type]

    def on_result(self, result: EpisodeResult) -> None:
        self.ran += 1
        if self.summary is not None:
            self.summary.ran += 1
        self.successes += int(result.success)
        self.progress.update(self._bar, advance=1, rate=f"{self.successes}/{self.ran}")
        if result.error is None:
            self.errors_in_a_row = 0
            return
        self.console.print(f"[yellow]{result.episode_id}: {result.error}[/yellow]")
        self.errors_in_a_row += 1
        if self.max_consecutive_errors and self.errors_in_a_row >= self.max_consecutive_errors:
            raise RunAborted(
                f"{self.errors_in_a_row} episodes in a row ended with an error (last: "
                f"{result.error}); stopping. Fix the cause, then rerun the same command "
                "with --retry-errors to resume.")


def execute_run(
    writer: RunWriter,
    planned: Sequence[PlannedEpisode],
    *,
    make_environment: Callable[[], Environment],
    policy: str | Policy,
    policy_options: dict[str, Any] | None = None,
    make_expert: Callable[[Environment], Policy] | None = None,
    options: LoopOptions | None = None,
    num_envs: int = 1,
    retry_errors: bool = False,
    max_consecutive_errors: int | None = 10,
    console: Console | None = None,
    show_progress: bool = True,
    title: str = "episodes",
    workers: int = 0,
    backend: str = "process",
    backend_options: dict[str, Any] | None = None,
    safety: Any = None,
) -> RunSummary:
    """Run the planned episodes not yet finished in `writer`'s run directory.

    `policy` is a Policy, a registry name (built with `policy_options`), or 'oracle' /
    'expert' (built per environment with `make_expert`). `num_envs` environments run at
    once, their episodes batched into one `policy.act` call per round. With
    `retry_errors`, finished episodes that ended in an error are dropped from
    results.jsonl and run again. `max_consecutive_errors` errored episodes in a row stop
    the run with RunAborted (the environment is likely broken; fix it, then resume).
    `workers` >= 1 runs environments in that many worker processes (`backend`
    'process') or Ray actors ('ray'), see agent.engine.workers; 0 runs them in this process.
    `safety` (agent.safety.SafetyRules) refuses configured actions and redacts secrets.
    """
    console = console or Console()
    if safety is not None:
        from agent.safety import apply_safety

        writer, make_environment, make_expert = apply_safety(
            safety, writer, make_environment, make_expert)
    options = options or LoopOptions()
    started = time.monotonic()
    planned_keys = {p.key for p in planned}
    if retry_errors:
        _drop_errored_results(writer, planned_keys)
    done = {r.key for r in writer.finished_results()}
    todo = [p for p in planned if p.key not in done]
    summary = RunSummary(out_dir=writer.path, planned=len(planned), ran=0,
                         skipped=len(planned) - len(todo))
    if summary.skipped:
        console.print(f"[dim]{writer.path}: {summary.skipped} of {len(planned)} episodes "
                      "already finished; running the rest[/dim]")
    for episode in todo:
        writer.discard_episode(episode.episode_id)

    if todo:
        _run_todo(writer, todo, make_environment=make_environment, policy=policy,
                  policy_options=policy_options or {}, make_expert=make_expert,
                  options=options, num_envs=num_envs, workers=workers, backend=backend,
                  backend_options=backend_options,
                  max_consecutive_errors=max_consecutive_errors, console=console,
                  show_progress=show_progress, title=title, summary=summary)

    summary.results = [r for r in writer.finished_results() if r.key in planned_keys]
    summary.wall_time_s = time.monotonic() - started
    return summary


class Backend(enum.StrEnum):
    """Where environments run: threads of this process (no --workers), worker processes,
    Ray actors (agent.engine.ray_host), or an environment service (agent.service.remote_host)."""

    PROCESS = "process"
    RAY = "ray"
    REMOTE = "remote"


def is_expert_policy(policy: str | Policy) -> bool:
    """Whether `policy` names the suite's scripted expert ('oracle' / 'expert')."""
    return isinstance(policy, str) and policy in EXPERT_POLICY_NAMES


_POLICY_SERVICE_OPTIONS = ("policy_calls", "batch_wait_s", "max_batch", "max_concurrency")


def _run_todo(
    writer: RunWriter,
    todo: list[PlannedEpisode],
    *,
    make_environment: Callable[[], Environment],
    policy: str | Policy,
    policy_options: dict[str, Any],
    make_expert: Callable[[Environment], Policy] | None,
    options: LoopOptions,
    num_envs: int,
    workers: int,
    backend: str,
    backend_options: dict[str, Any] | None,
    max_consecutive_errors: int | None,
    console: Console,
    show_progress: bool,
    title: str,
    summary: RunSummary,
) -> None:
    """Run `todo` through the engine on one kind of environment host: threads of this
    process (`num_envs` of them), worker processes, Ray actors or leases of an
    environment service (`workers`)."""
    backend = Backend(backend)
    in_process = workers == 0 and backend is Backend.PROCESS
    remote = backend is Backend.REMOTE
    if remote and is_expert_policy(policy):
        raise ValueError("scripted experts run beside their environment, so not on remote "
                         "environments; pick a model policy")
    opts = dict(backend_options or {})
    service_opts = {k: opts.pop(k) for k in _POLICY_SERVICE_OPTIONS if k in opts}
    expert = is_expert_policy(policy)
    if expert and make_expert is None:
        raise ValueError(f"policy {policy!r} is a scripted expert, and this environment has "
                         "none; pick a model policy")
    if in_process and opts:
        raise ValueError(f"unknown options for environments in this process: {sorted(opts)}")
    size = max(1, min(num_envs if in_process else max(workers, 1), len(todo)))
    built: Policy | None = None
    if isinstance(policy, str) and not expert:
        # Build the model first: a bad model path fails before browsers start.
        built = make_policy(policy, **policy_options)
    elif not isinstance(policy, str):
        built = policy
    specs = [EpisodeSpec(task=p.task, episode_id=p.episode_id, sample=p.sample,
                         recorder=writer.start_episode(p.episode_id)) for p in todo]

    async def main() -> None:
        worker_hosts: list[Any] = []
        ray_session: Any = None
        client: Any = None
        if in_process:
            async def start_host(index: int) -> EnvironmentHost:
                return await ThreadHost.start(index, make_environment,
                                              make_expert if expert else None)
        elif remote:
            from agent.service.remote_host import RemoteHost, client_from_options

            client = client_from_options(opts)
            if opts:
                raise ValueError(f"unknown remote backend options: {sorted(opts)}")

            async def start_host(index: int) -> EnvironmentHost:
                return await RemoteHost.start(index, client)
        else:
            from agent.engine.workers import EnvironmentFactory, WorkerHost

            screenshots = writer.path / "screenshots"
            common = {k: opts.pop(k) for k in ("call_timeout_s", "start_timeout_s") if k in opts}
            if backend is Backend.RAY:
                from agent.engine.ray_host import RaySession, RayWorker

                shared = bool(opts.pop("shared_storage", False))
                factory = EnvironmentFactory(make_environment, make_expert if expert else None,
                                             screenshots if shared else None,
                                             writer.fsync_screenshots)
                ray_session = await asyncio.to_thread(
                    lambda: RaySession(num_cpus=opts.pop("num_cpus", size), **opts))

                def make_worker(index: int) -> Any:
                    return RayWorker(index, ray_session, factory, **common)
            else:
                from agent.engine.workers import ProcessWorker

                if opts:
                    raise ValueError(f"unknown process backend options: {sorted(opts)}")
                factory = EnvironmentFactory(make_environment, make_expert if expert else None,
                                             screenshots, writer.fsync_screenshots)

                def make_worker(index: int) -> Any:
                    return ProcessWorker(index, factory, **common)

            async def start_host(index: int) -> EnvironmentHost:
                host = await WorkerHost.start(lambda: make_worker(index), screenshots, index)
                worker_hosts.append(host)
                return host

        pool = HostPool(size, start_host)
        service: PolicyService | None = None
        try:
            await pool.start_all()
            if worker_hosts:
                console.print(f"[dim]{size} {backend.value} workers: pids "
                              f"{', '.join(str(h.worker.info.get('pid')) for h in worker_hosts)}"
                              "[/dim]")
            if expert:
                service = ExpertPolicy(getattr(pool.hosts[0], "expert_name", None) or "expert")
            else:
                assert built is not None
                service = make_policy_service(
                    built, calls=service_opts.get("policy_calls"),
                    max_batch=_opt_int(service_opts.get("max_batch")),
                    max_wait_s=_opt_float(service_opts.get("batch_wait_s")),
                    max_concurrency=_opt_int(service_opts.get("max_concurrency")) or 64)
            label = title if in_process else f"{title} ×{size}"
            with RunProgress(console, label, len(todo), show=show_progress, summary=summary,
                             max_consecutive_errors=max_consecutive_errors) as progress:
                if not worker_hosts:
                    await run_engine(pool, service, specs, options=options,
                                     on_result=progress.on_result)
                else:
                    from agent.engine.workers import run_on_worker_hosts, workers_table

                    hosts = sorted(worker_hosts, key=lambda h: h.index)
                    report = await run_on_worker_hosts(pool, hosts, service, specs,
                                                       options=options,
                                                       on_result=progress.on_result)
            if worker_hosts:
                console.print(workers_table(report))
                summary.worker_report = report  # per-worker stats, for benchmarks
        finally:
            if service is not None:
                await service.close()
            await pool.close()
            if ray_session is not None:
                await asyncio.to_thread(ray_session.close)
            if client is not None:
                await client.aclose()

    try:
        run_blocking(main)
    finally:
        if built is not None and isinstance(policy, str):  # we built it: we close it
            try:
                built.close()
            except Exception as exc:  # noqa: BLE001
                logger.warning("closing policy failed: %s", exc)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _drop_errored_results(writer: RunWriter, keys: set[str]) -> None:
    results = writer.finished_results()
    keep = [r for r in results if not (r.key in keys and r.error is not None)]
    if len(keep) == len(results):
        return
    payload = "".join(to_json_text(r) + "\n" for r in keep).encode()
    atomic_write_bytes(writer.path / "results.jsonl", payload, fsync=writer.fsync)
    logger.info("dropped %d errored results to run them again", len(results) - len(keep))


def run_suite(
    config: RunConfig,
    *,
    suite: Suite | None = None,
    policy: Policy | None = None,
    invocation: dict[str, Any] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunSummary:
    """Run `config` (agent.config.RunConfig) into its run directory, resuming it.

    `suite` / `policy`: objects to use instead of building ``config.suite`` /
    ``config.policy`` by name (tests, benchmarks, programs holding a Policy); the config
    still names them (the manifest records the config). `invocation` is logged in the manifest
    (e.g. the command line). Raises RunConfigMismatch if the run directory holds a run whose
    config differs in what an episode means (agent.config.RESUME_KEYS).
    """
    if config.output.out_dir is None:
        raise ValueError("the run config has no output.out_dir: say where to record the run")
    if policy is not None and is_expert_policy(config.policy):
        raise ValueError("a Policy object is given but the config names the scripted expert "
                         f"{config.policy!r}: set config.policy to the policy's name (the "
                         "manifest records it)")
    if suite is None:
        suite = get_suite(config.suite, **config.suite_options)
    if config.record_click_targets:
        from benchmarks.grounding.click_targets import ClickTargetSuite

        suite = ClickTargetSuite(suite)
    task_ids = suite.list_tasks() if config.tasks == "all" else list(config.tasks)
    limits = config.limits
    planned = plan_episodes(suite, task_ids, config.episodes_per_task, config.seed,
                            samples_per_seed=config.samples_per_seed,
                            task_overrides={"max_steps": limits.max_steps,
                                            "time_limit_s": limits.time_limit_s})
    writer = RunWriter(config.output.out_dir, config.stored(), fsync=config.output.fsync,
                       resume_keys=RESUME_KEYS, invocation=dict(invocation or {}))
    options = LoopOptions(max_steps=limits.max_steps, time_limit_s=limits.time_limit_s,
                          max_parse_failures=limits.max_parse_failures,
                          success_threshold=limits.success_threshold, platform=suite.platform)
    engine = config.engine
    return execute_run(
        writer, planned,
        # partial of a bound method: picklable, so worker processes can build environments
        make_environment=functools.partial(suite.make_environment, **config.env_options),
        policy=policy if policy is not None else config.policy,
        policy_options=config.policy_options.factory_options(),
        make_expert=suite.make_expert, options=options, num_envs=engine.num_envs,
        retry_errors=engine.retry_errors,
        max_consecutive_errors=engine.max_consecutive_errors or None, console=console,
        show_progress=show_progress, title=f"{suite.name} / {config.policy}",
        workers=engine.workers, backend=engine.backend, backend_options=dict(engine.options),
        safety=config.safety,
    )


def results_table(summary: RunSummary, *, title: str | None = None) -> Table:
    """The per-task results table (plus totals) printed at the end of a run."""
    table = Table(title=title or f"Results: {summary.out_dir}")
    for column, justify in [("task", "left"), ("episodes", "right"), ("success rate", "right"),
                            ("mean reward", "right"), ("mean steps", "right"),
                            ("errors", "right")]:
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]

    def row(stats: TaskStats, style: str | None = None) -> None:
        table.add_row(stats.task_id, str(stats.episodes), f"{stats.success_rate:.0%}",
                      f"{stats.mean_reward:.3f}", f"{stats.mean_steps:.1f}",
                      str(stats.errors), style=style)

    for stats in summary.per_task():
        row(stats)
    table.add_section()
    row(summary.totals(), style="bold")
    return table


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    console.print(results_table(summary))
    missing = summary.planned - len(summary.results)
    line = (f"{summary.ran} episodes run, {summary.skipped} already done, "
            f"{summary.wall_time_s:.1f}s; records in {summary.out_dir}")
    if missing:
        line += f"; [red]{missing} planned episodes unfinished (rerun to resume)[/red]"
    console.print(line)
    cut = [r for r in summary.results if r.cut_outputs]
    if cut:
        console.print(f"[yellow]{sum(r.cut_outputs for r in cut)} model outputs in {len(cut)} "
                      "episodes were cut by the generation budget (finish_reason 'length'): "
                      "raise it with --policy-option max_new_tokens=N[/yellow]")


__all__ = [
    "PlannedEpisode", "RunAborted", "RunSummary", "TaskStats", "episode_id_for",
    "execute_run", "plan_episodes", "print_summary", "redact_options", "results_table",
    "run_suite",
]
