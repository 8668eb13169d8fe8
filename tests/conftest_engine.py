"""Episodes on environments a test built, through the engine (agent.engine.episode).

The project runs episodes one way: `agent.runner.run_suite(config)` -> the engine. Tests
that hold an environment they made themselves (a page, a virtual phone, a recording
stand-in) use these two helpers, which compose the engine's public pieces and add no rule
of their own: `ThreadHost`s driven on the calling thread (a Playwright page is bound to
the thread that made it), a `BatchingPolicy` service, `run_engine`, `run_blocking`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from actions.contracts import Environment, Policy, Task
from agent.engine.episode import (
    DEFAULT_MAX_PARSE_FAILURES,
    DEFAULT_SUCCESS_THRESHOLD,
    EpisodeRun,
    EpisodeSpec,
    LoopOptions,
    format_error,
    run_blocking,
    run_engine,
)
from agent.engine.hosts import CallerThreadExecutor, HostPool, ThreadHost
from agent.engine.policy_service import BatchingPolicy, PolicyContractError
from trajectories.record import EpisodeResult
from trajectories.store import EpisodeRecorder


def new_episode_id(task: Task) -> str:
    """A readable, unique id for an ad-hoc episode (runs use deterministic ids)."""
    return f"{task.task_id}-seed{task.seed}-{uuid.uuid4().hex[:8]}"


def run_episodes_batched(
    envs: Sequence[Environment],
    policy: Policy,
    episodes: Sequence[EpisodeSpec | Task],
    *,
    options: LoopOptions | None = None,
    on_start: Callable[[EpisodeSpec, int], None] | None = None,
    on_result: Callable[[EpisodeResult], None] | None = None,
    max_wait_s: float = 0.05,
    **option_overrides: object,
) -> list[EpisodeResult]:
    """Run `episodes` on `envs` (each runs one episode at a time), asking `policy`.

    Up to ``len(envs)`` episodes are live at once; results come back in the order of
    `episodes`. `on_start(spec, env_index)` is called before an episode's reset on
    ``envs[env_index]``, `on_result` after each episode ends. Policy requests that arrive
    together are batched (a batch leaves when every live episode waits, or `max_wait_s`
    after its first request). `option_overrides` are LoopOptions fields (max_steps=...).
    Storage failures (OSError from a recorder) and exceptions from the callbacks stop
    the run and propagate.
    """
    if not envs:
        raise ValueError("run_episodes_batched needs at least one environment")
    if options is None:
        options = LoopOptions(**option_overrides)  # type: ignore[arg-type]
    elif option_overrides:
        raise TypeError("pass either options= or option keywords, not both")
    run_options = options
    specs = [e if isinstance(e, EpisodeSpec) else EpisodeSpec(task=e, episode_id=new_episode_id(e))
             for e in episodes]
    caller = CallerThreadExecutor()

    async def main() -> list[EpisodeResult]:
        hosts = [ThreadHost(i, env=env, executor=caller, owns_env=False)
                 for i, env in enumerate(envs)]
        service = BatchingPolicy(policy, max_wait_s=max_wait_s, executor=caller)
        try:
            report = await run_engine(
                HostPool.of(list(hosts)), service, specs, options=run_options,
                on_start=(lambda spec, host: on_start(spec, host.index)) if on_start else None,
                on_result=on_result)
        finally:
            await service.close()
        return [r for r in report.results if r is not None]

    return run_blocking(main, caller=caller)


def run_episode(
    env: Environment,
    policy: Policy,
    task: Task,
    *,
    recorder: EpisodeRecorder | None = None,
    max_steps: int | None = None,
    episode_id: str | None = None,
    time_limit_s: float | None = None,
    max_parse_failures: int = DEFAULT_MAX_PARSE_FAILURES,
    success_threshold: float | None = None,
    platform: str = "web",
    sample: int = 0,
) -> EpisodeResult:
    """Run one episode of `task` on `env` with `policy`; never raises for env/policy faults.

    Returns the EpisodeResult (also recorded through `recorder` when given).
    """
    spec = EpisodeSpec(task=task, episode_id=episode_id or new_episode_id(task), sample=sample,
                       recorder=recorder)
    options = LoopOptions(max_steps=max_steps, time_limit_s=time_limit_s,
                          max_parse_failures=max_parse_failures,
                          success_threshold=success_threshold, platform=platform)
    return run_episodes_batched([env], policy, [spec], options=options)[0]


__all__ = [
    "DEFAULT_MAX_PARSE_FAILURES", "DEFAULT_SUCCESS_THRESHOLD", "EpisodeResult", "EpisodeRun", "EpisodeSpec", "LoopOptions",
    "PolicyContractError", "format_error", "new_episode_id", "run_episode",
    "run_episodes_batched",
]
