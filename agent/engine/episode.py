"""The episode engine: every episode its own asyncio task, at its own pace.

An episode: lease an environment host from the pool (agent.engine.hosts), ``reset(task)``, then
repeatedly ask the policy service (agent.engine.policy_service) for the next actions, execute
them, observe, until one of these ends it (`EpisodeResult.terminated_by`):

- the policy emits ``terminate`` or ``answer`` (actions.models.TERMINAL_ACTION_TYPES;
  a task whose reference runner goes on after some of them lists the ones that end it
  in ``task.config['terminal_actions']``, and the others are stepped like any action);
- the environment says the episode is over (``Observation.done``);
- the step budget (``max_steps``, default ``task.max_steps``) is used up;
- the wall-clock limit (``time_limit_s``, default ``task.time_limit_s``) has passed,
  checked before each policy call;
- ``max_parse_failures`` consecutive outputs had no valid action (``parse_errors``);
  a task may set its own (``task.config['max_parse_failures']``; None: never, as
  OSWorld's runner steps on to the budget);
- the environment crashed, its host died or hung, or the environment or policy raised
  (``error``, with the exception type and message in ``EpisodeResult.error``). The run
  goes on.

Terminal actions go to the environment too, so that it can keep the answer for its
evaluator: through its optional ``notify_terminal(action)`` hook when it has one (no
screenshot taken), else through ``step(action)``. An environment with the optional
``notify_output(step_index, raw_text)`` hook hears of every policy output before its
actions run, those without actions included (OSWorld writes the model's text and the
predict call's number into traj.jsonl, as its runner does).

Parse errors and action errors (``Observation.action_error``) are fed back to the policy
as ``StepHistory.feedback`` and counted. The reward comes from ``evaluate()`` after the
episode; success is ``reward >= success_threshold`` when a threshold is given (or
``task.config['success_threshold']``), else ``reward >= 1.0`` (a full score).

No episode waits for another: a slow environment step holds only its own episode, and
the policy service decides how requests share the model (dynamic batching in-process,
concurrent requests to a server). Fatal errors stop the whole run: storage failures
(OSError from a recorder, e.g. a full disk), an exception from `on_result` (RunAborted),
a host that cannot be restarted; episodes in flight then get no result line (resume
reruns them). Recording happens on the event loop's thread, so the recorder needs no
locks.

`run_blocking` runs an engine coroutine from synchronous code (the runner behind the CLI,
the AndroidWorld adapter), serving calls that must run on the caller's thread meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actions.contracts import EnvironmentCrashed, EpisodeState, PolicyOutput, StepHistory, Task
from actions.models import TERMINAL_ACTION_TYPES
from actions.observation import Observation
from agent.engine.hosts import CallerThreadExecutor, EnvironmentHost, HostError, HostPool
from agent.engine.policy_service import PolicyContractError, PolicyService
from trajectories.record import (
    ActionExecution,
    EpisodeRecord,
    EpisodeResult,
    ObservationMeta,
    StepRecord,
    TerminatedBy,
    episode_key,
)
from trajectories.store import EpisodeRecorder, NullRecorder

logger = logging.getLogger(__name__)

DEFAULT_MAX_PARSE_FAILURES = 3
# Success is a full score unless a suite declares a threshold (task.config or run option).
DEFAULT_SUCCESS_THRESHOLD = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class LoopOptions:
    """Settings shared by all episodes of a run.

    `max_steps` / `time_limit_s` override the task's own values when not None.
    `max_parse_failures`: consecutive outputs without a valid action that end an episode.
    `success_threshold`: reward at or above which an episode counts as a success (None:
    the task's config 'success_threshold', else DEFAULT_SUCCESS_THRESHOLD = 1.0).
    `platform`: 'web', 'desktop' or 'mobile', passed to the policy (picks its tool schema).
    """

    max_steps: int | None = None
    time_limit_s: float | None = None
    max_parse_failures: int = DEFAULT_MAX_PARSE_FAILURES
    success_threshold: float | None = None
    platform: str = "web"


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: the task, its id, which sample of (task, seed) it is, and
    where to record it (None: not recorded)."""

    task: Task
    episode_id: str
    sample: int = 0
    recorder: EpisodeRecorder | None = None


def format_error(exc: BaseException) -> str:
    """'ExceptionType: message', the form stored in `EpisodeResult.error`."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass
class EpisodeRun:
    """The state of one running episode and its phases (begin, apply, finish), driven
    through its environment host.

    Trainers drive these phases themselves (agent.trainers: their generations are the
    policy), so that their episodes follow the same rule and write the same records. A
    host that builds the task it resets to (a trainer's dataset row sent to the
    environment service) reports it as ``started_task``: the episode then runs and records
    that task instead of `task`.
    """

    task: Task
    episode_id: str
    sample: int
    host: EnvironmentHost
    recorder: EpisodeRecorder
    options: LoopOptions
    policy_name: str
    started_at: float = field(default_factory=time.time)
    start_monotonic: float = field(default_factory=time.monotonic)
    instruction: str = ""
    observation: Observation | None = None
    observation_meta: ObservationMeta | None = None
    history: list[StepHistory] = field(default_factory=list)
    parse_errors: int = 0
    action_errors: int = 0
    cut_outputs: int = 0
    consecutive_parse_failures: int = 0
    terminated_by: TerminatedBy | None = None
    error: str | None = None
    answer: str | None = None
    agent_status: str | None = None

    @property
    def ended(self) -> bool:
        return self.terminated_by is not None

    @property
    def max_steps(self) -> int:
        return self.options.max_steps or self.task.max_steps

    @property
    def max_parse_failures(self) -> int | None:
        return self.task.config.get("max_parse_failures", self.options.max_parse_failures)

    @property
    def terminal_action_types(self) -> frozenset[str]:
        return frozenset(self.task.config.get("terminal_actions", TERMINAL_ACTION_TYPES))

    @property
    def time_limit_s(self) -> float | None:
        return self.options.time_limit_s or self.task.time_limit_s

    def end(self, how: TerminatedBy, error: str | None = None) -> None:
        if self.terminated_by is None:
            self.terminated_by = how
            self.error = error

    async def begin(self) -> None:
        """Reset the environment and write episode.json (also when the reset failed)."""
        reset_started = time.monotonic()
        try:
            obs: Observation | None = await self.host.reset(self.task)
        except Exception as exc:  # noqa: BLE001 - any env fault ends only this episode
            logger.warning("episode %s: reset failed: %s", self.episode_id, format_error(exc))
            self.end("error", format_error(exc))
            obs = None
        reset_s = time.monotonic() - reset_started
        started = getattr(self.host, "started_task", None)
        if obs is not None and isinstance(started, Task):
            self.task = started  # the host built the task (a trainer's dataset row)
        if obs is not None:
            self._set_observation(obs)
            self.instruction = obs.instruction or self.task.instruction
        else:
            self.instruction = self.task.instruction
        self.recorder.start(EpisodeRecord(
            episode_id=self.episode_id, sample=self.sample, task=self.task,
            key=episode_key(self.task.suite, self.task.task_id, self.task.seed, self.sample),
            instruction=self.instruction, policy=self.policy_name,
            platform=self.options.platform, started_at=self.started_at, reset_s=reset_s,
            initial_observation=self.observation_meta,
        ))
        if obs is not None and obs.done:
            self.end("done")

    async def run(self, act: Callable[[EpisodeState], Awaitable[PolicyOutput | None]], *,
                  on_step: Callable[[], None] | None = None) -> None:
        """The episode rule's loop: reset, then (limits checked before each call) ask
        `act` for the next output and apply it, until the episode ends. `finish()` is
        left to the caller. The engine passes its policy service as `act`, a trainer its
        own generation; `act` returning None ends the episode as ``max_steps`` (the
        caller's own budget, e.g. a trainer's token budget, is used up). An exception
        from `act` ends this episode as an error."""
        await self.begin()
        while not self.ended:
            self.check_limits()
            if self.ended:
                break
            step_started_at, act_started = time.time(), time.monotonic()
            try:
                output = await act(self.state())
            except Exception as exc:  # noqa: BLE001 - ends this episode only
                if not isinstance(exc, HostError):
                    logger.warning("policy %s raised: %s", self.policy_name, format_error(exc),
                                   exc_info=logger.isEnabledFor(logging.DEBUG))
                self.end("error", format_error(exc))
                break
            if output is None:
                self.end("max_steps")
                break
            await self.apply(output, step_started_at=step_started_at,
                             policy_s=time.monotonic() - act_started)
            if on_step is not None:
                on_step()

    def check_limits(self) -> None:
        if len(self.history) >= self.max_steps:
            self.end("max_steps")
        elif (self.time_limit_s is not None
              and time.monotonic() - self.start_monotonic > self.time_limit_s):
            self.end("time_limit")

    def state(self) -> EpisodeState:
        assert self.observation is not None
        return EpisodeState(
            episode_id=self.episode_id, task=self.task, instruction=self.instruction,
            observation=self.observation, history=list(self.history),
            platform=self.options.platform,
        )

    async def apply(self, output: PolicyOutput, *, step_started_at: float,
                    policy_s: float) -> None:
        """Execute one policy output, record the step, and update the episode."""
        assert self.observation is not None and self.observation_meta is not None
        seen, seen_meta = self.observation, self.observation_meta
        executions: list[ActionExecution] = []
        feedback: list[str] = []
        step_error: str | None = None
        env_started = time.monotonic()

        if output.parse_errors:
            self.parse_errors += 1
        if output.finish_reason == "length":
            self.cut_outputs += 1
        if getattr(self.host, "has_notify_output", False):
            try:
                await self.host.notify_output(len(self.history), output.raw_text)
            except Exception as exc:  # noqa: BLE001 - env faults end only this episode
                step_error = format_error(exc)
                self.end("error", step_error)
        if step_error is not None:
            pass  # the environment failed before the output's actions: none run
        elif output.error and not output.actions:
            step_error = f"PolicyBackendError: {output.error}"
            self.end("error", step_error)
        elif not output.actions:
            self.consecutive_parse_failures += 1
            reasons = "; ".join(output.parse_errors) or "no action found in the output"
            feedback.append(f"Your last output had no valid action ({reasons}). "
                            "Reply with exactly one valid tool call.")
            limit = self.max_parse_failures
            if limit is not None and self.consecutive_parse_failures >= limit:
                self.end("parse_errors")
        else:
            self.consecutive_parse_failures = 0
            if output.parse_errors:
                feedback.append("Some of your tool calls could not be parsed and were "
                                "skipped: " + "; ".join(output.parse_errors))
            terminal_types = self.terminal_action_types
            for index, action in enumerate(output.actions):
                terminal = action.type in terminal_types
                notify = terminal and self.host.has_notify_terminal
                try:
                    obs = None
                    if notify:
                        await self.host.notify_terminal(action)
                    else:
                        obs = await self.host.step(action)
                except Exception as exc:  # noqa: BLE001 - env faults end only this episode
                    kind = "crashed" if isinstance(exc, EnvironmentCrashed) else "raised"
                    logger.warning("episode %s step %d: environment %s: %s", self.episode_id,
                                   len(self.history), kind, format_error(exc))
                    step_error = format_error(exc)
                    self.end("error", step_error)
                    break
                meta = self._set_observation(obs) if obs is not None else None
                executions.append(ActionExecution(index=index, action=action, observation=meta))
                if terminal:
                    if action.type == "answer":
                        self.answer = action.text
                        self.end("answer")
                    else:
                        self.agent_status = action.status
                        self.end("terminate")
                    break
                assert obs is not None
                if obs.action_error:
                    self.action_errors += 1
                    feedback.append(f"Action {index + 1} ({action.type}) failed: "
                                    f"{obs.action_error}")
                    break
                if obs.done:
                    self.end("done")
                    break

        text = "\n".join(feedback) or None
        self.recorder.step(StepRecord(
            episode_id=self.episode_id, index=len(self.history), started_at=step_started_at,
            observation=seen_meta, output=output, executions=executions, feedback=text,
            policy_s=policy_s, env_s=time.monotonic() - env_started, error=step_error,
        ))
        self.history.append(StepHistory(index=len(self.history), observation=seen,
                                        output=output, feedback=text))

    async def finish(self) -> EpisodeResult:
        """Evaluate (unless the episode ended in a fault) and record the result."""
        reward = 0.0
        if self.terminated_by != "error":
            try:
                reward = float(await self.host.evaluate())
                if not math.isfinite(reward):
                    raise ValueError(f"evaluate() returned a non-finite reward ({reward})")
            except Exception as exc:  # noqa: BLE001
                logger.warning("episode %s: evaluate failed: %s", self.episode_id,
                               format_error(exc))
                self.terminated_by, self.error = "error", format_error(exc)
                reward = 0.0
        threshold = self.options.success_threshold
        if threshold is None:
            threshold = self.task.config.get("success_threshold")
        # A partial score (a fuzzy ratio, an averaged `and` of metrics) is no success.
        success = self.error is None and reward >= (
            threshold if threshold is not None else DEFAULT_SUCCESS_THRESHOLD)
        assert self.terminated_by is not None
        result = EpisodeResult(
            episode_id=self.episode_id, suite=self.task.suite, task_id=self.task.task_id,
            seed=self.task.seed, sample=self.sample, instruction=self.instruction,
            success=success, reward=reward, steps=len(self.history),
            parse_errors=self.parse_errors, action_errors=self.action_errors,
            cut_outputs=self.cut_outputs, error=self.error,
            terminated_by=self.terminated_by, answer=self.answer,
            agent_status=self.agent_status,  # type: ignore[arg-type]
            wall_time_s=time.monotonic() - self.start_monotonic, started_at=self.started_at,
        )
        self.recorder.finish(result)
        return result

    def observe(self, obs: Observation) -> None:
        """Set what the next policy call sees, for a driver that reads the screen on its
        own schedule (the AndroidWorld adapter: its runner decides when)."""
        self._set_observation(obs)

    def _set_observation(self, obs: Observation) -> ObservationMeta:
        self.observation = obs
        self.observation_meta = self.recorder.observation(obs)
        return self.observation_meta


@dataclass
class EngineReport:
    """What `run_engine` did: results in the order of the specs (None: not finished,
    only after a fatal error), policy steps taken, wall time."""

    results: list[EpisodeResult | None]
    steps: int = 0
    wall_time_s: float = 0.0


async def run_engine(
    pool: HostPool,
    policy: PolicyService,
    specs: Sequence[EpisodeSpec],
    *,
    options: LoopOptions,
    on_start: Callable[[EpisodeSpec, EnvironmentHost], None] | None = None,
    on_result: Callable[[EpisodeResult], None] | None = None,
    after_episode: Callable[[EnvironmentHost, EpisodeResult], Awaitable[None]] | None = None,
) -> EngineReport:
    """Run every spec as its own task on hosts leased from `pool`, asking `policy`.

    Episodes start in the order of `specs` as hosts become free (at most `pool.size` at
    once). `on_start(spec, host)` runs before an episode's reset, `on_result(result)`
    after each episode is recorded, `after_episode(host, result)` before the host's lease
    ends (e.g. to read its memory). Raises the first fatal error after cancelling the
    other episodes (see the module docstring).
    """
    started = time.monotonic()
    report = EngineReport(results=[None] * len(specs))
    unfinished = len(specs)
    policy.episodes_active(min(pool.size, unfinished))

    async def one(index: int, spec: EpisodeSpec) -> None:
        nonlocal unfinished
        async with pool.lease() as host:
            if on_start is not None:
                on_start(spec, host)
            episode = EpisodeRun(task=spec.task, episode_id=spec.episode_id,
                                 sample=spec.sample, host=host,
                                 recorder=spec.recorder or NullRecorder(), options=options,
                                 policy_name=policy.name)
            def count_step() -> None:
                report.steps += 1

            try:
                await episode.run(lambda state: policy.act(state, host), on_step=count_step)
            finally:
                unfinished -= 1
                policy.episodes_active(min(pool.size, unfinished))
            result = await episode.finish()
            if result.error is not None:
                pool.count_error(host)
            if after_episode is not None:
                await after_episode(host, result)
        report.results[index] = result
        if on_result is not None:
            on_result(result)

    tasks = [asyncio.create_task(one(i, spec), name=f"episode {spec.episode_id}")
             for i, spec in enumerate(specs)]
    try:
        if tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:  # in plan order: the first fatal error of the run
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        report.wall_time_s = time.monotonic() - started
    return report


def run_blocking(main: Callable[[], Coroutine[Any, Any, T]], *,
                 caller: CallerThreadExecutor | None = None) -> T:
    """Run the coroutine `main()` to completion from synchronous code.

    The event loop runs on a thread of its own while this thread serves `caller` (calls
    that must run here, e.g. on an environment this thread built). Ctrl-C here cancels
    the run; its clean-up (closing hosts) still runs, then KeyboardInterrupt is raised.
    """
    caller = caller or CallerThreadExecutor()
    done = threading.Event()
    outcome: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    main_task: asyncio.Task[T] | None = None
    cancel_requested = threading.Event()

    async def wrapped() -> T:
        nonlocal main_task
        main_task = asyncio.current_task()  # type: ignore[assignment]
        if cancel_requested.is_set():
            raise asyncio.CancelledError
        return await main()

    def cancel() -> None:
        cancel_requested.set()
        if main_task is not None:
            main_task.cancel()

    def run_loop() -> None:
        try:
            outcome["value"] = loop.run_until_complete(wrapped())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            outcome["error"] = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                done.set()

    thread = threading.Thread(target=run_loop, name="cua-engine", daemon=True)
    thread.start()
    interrupted: BaseException | None = None
    while not done.is_set():
        try:
            caller.serve(done)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt: cancel, clean up
            interrupted = interrupted or exc
            loop.call_soon_threadsafe(cancel)
    thread.join()
    if interrupted is not None:
        raise interrupted
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


__all__ = [
    "DEFAULT_MAX_PARSE_FAILURES", "DEFAULT_SUCCESS_THRESHOLD", "EngineReport", "EpisodeRun", "EpisodeSpec", "LoopOptions",
    "PolicyContractError", "format_error", "run_blocking", "run_engine",
]
