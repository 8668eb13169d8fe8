"""The perceive-think-act loop: one episode, or several episodes batched through one policy.

An episode: ``env.reset(task)``, then repeatedly ask the policy for the next actions,
execute them, observe, until one of these ends it (`EpisodeResult.terminated_by`):

- the policy emits ``terminate`` or ``answer`` (actions.models.TERMINAL_ACTION_TYPES);
- the environment says the episode is over (``Observation.done``);
- the step budget (``max_steps``, default ``task.max_steps``) is used up;
- the wall-clock limit (``time_limit_s``, default ``task.time_limit_s``) has passed,
  checked before each policy call;
- ``max_parse_failures`` consecutive outputs had no valid action (``parse_errors``);
- the environment crashed or the environment or policy raised (``error``, with the
  exception type and message in ``EpisodeResult.error``). The run goes on.

Terminal actions go to the environment too, so that it can keep the answer for its
evaluator: through its optional ``notify_terminal(action)`` hook when it has one (no
screenshot taken), else through ``step(action)``.

Parse errors and action errors (``Observation.action_error``) are fed back to the policy
as ``StepHistory.feedback`` and counted. The reward comes from ``env.evaluate()`` after
the episode; success is ``reward >= success_threshold`` when a threshold is given (or
``task.config['success_threshold']``), else ``reward >= 1.0`` (a full score).

`run_episodes_batched` runs many episodes on several environments and calls
``policy.act`` once per round on every live episode, which is what lets a local model
batch its inference; `run_episode` is its batch-of-one case. Storage failures
(OSError from a recorder, e.g. a full disk) are not episode faults: they propagate and
stop the run.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from actions.contracts import (
    Environment,
    EnvironmentCrashed,
    EpisodeState,
    Policy,
    PolicyOutput,
    StepHistory,
    Task,
)
from actions.models import TERMINAL_ACTION_TYPES
from actions.observation import Observation
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


class PolicyContractError(RuntimeError):
    """The policy broke its contract (e.g. returned a different number of outputs)."""


@dataclass(frozen=True)
class LoopOptions:
    """Settings of the loop shared by all episodes of a call.

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


def format_error(exc: BaseException) -> str:
    """'ExceptionType: message', the form stored in `EpisodeResult.error`."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def new_episode_id(task: Task) -> str:
    """A readable, unique id for an ad-hoc episode (runs use deterministic ids)."""
    return f"{task.task_id}-seed{task.seed}-{uuid.uuid4().hex[:8]}"


@dataclass
class EpisodeRun:
    """The mutable state of one running episode: the step logic both the in-process loop
    and the worker drivers (agent.workers) run."""

    task: Task
    episode_id: str
    sample: int
    env: Environment
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
    def time_limit_s(self) -> float | None:
        return self.options.time_limit_s or self.task.time_limit_s

    def end(self, how: TerminatedBy, error: str | None = None) -> None:
        if self.terminated_by is None:
            self.terminated_by = how
            self.error = error

    # -- phases

    def begin(self) -> None:
        """Reset the environment and write episode.json (also when the reset failed)."""
        reset_started = time.monotonic()
        try:
            obs = self.env.reset(self.task)
        except Exception as exc:  # noqa: BLE001 - any env fault ends only this episode
            logger.warning("episode %s: reset failed: %s", self.episode_id, format_error(exc))
            self.end("error", format_error(exc))
            obs = None
        reset_s = time.monotonic() - reset_started
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

    def apply(self, output: PolicyOutput, *, step_started_at: float, policy_s: float) -> None:
        """Execute one policy output, record the step, and update the episode."""
        assert self.observation is not None and self.observation_meta is not None
        seen, seen_meta = self.observation, self.observation_meta
        executions: list[ActionExecution] = []
        feedback: list[str] = []
        step_error: str | None = None
        env_started = time.monotonic()

        if output.parse_errors:
            self.parse_errors += 1
        if output.error and not output.actions:
            step_error = f"PolicyBackendError: {output.error}"
            self.end("error", step_error)
        elif not output.actions:
            self.consecutive_parse_failures += 1
            reasons = "; ".join(output.parse_errors) or "no action found in the output"
            feedback.append(f"Your last output had no valid action ({reasons}). "
                            "Reply with exactly one valid tool call.")
            if self.consecutive_parse_failures >= self.options.max_parse_failures:
                self.end("parse_errors")
        else:
            self.consecutive_parse_failures = 0
            if output.parse_errors:
                feedback.append("Some of your tool calls could not be parsed and were "
                                "skipped: " + "; ".join(output.parse_errors))
            for index, action in enumerate(output.actions):
                terminal = action.type in TERMINAL_ACTION_TYPES
                notify = getattr(self.env, "notify_terminal", None) if terminal else None
                try:
                    obs = None if callable(notify) else self.env.step(action)
                    if callable(notify):
                        notify(action)
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

    def finish(self) -> EpisodeResult:
        """Evaluate (unless the episode ended in a fault) and record the result."""
        reward = 0.0
        if self.terminated_by != "error":
            try:
                reward = float(self.env.evaluate())
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
            parse_errors=self.parse_errors, action_errors=self.action_errors, error=self.error,
            terminated_by=self.terminated_by, answer=self.answer,
            agent_status=self.agent_status,  # type: ignore[arg-type]
            wall_time_s=time.monotonic() - self.start_monotonic, started_at=self.started_at,
        )
        self.recorder.finish(result)
        return result

    def _set_observation(self, obs: Observation) -> ObservationMeta:
        self.observation = obs
        self.observation_meta = self.recorder.observation(obs)
        return self.observation_meta


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: the task, its id, which sample of (task, seed) it is, and
    where to record it (None: not recorded)."""

    task: Task
    episode_id: str
    sample: int = 0
    recorder: EpisodeRecorder | None = None


def run_episodes_batched(
    envs: Sequence[Environment],
    policy: Policy,
    episodes: Sequence[EpisodeSpec | Task],
    *,
    options: LoopOptions | None = None,
    on_start: Callable[[EpisodeSpec, int], None] | None = None,
    on_result: Callable[[EpisodeResult], None] | None = None,
    **option_overrides: object,
) -> list[EpisodeResult]:
    """Run `episodes` on `envs`, asking `policy.act` once per round for all live episodes.

    Each environment runs one episode at a time; an environment that finishes an episode
    takes the next queued one, so up to ``len(envs)`` episodes are live at once. Results
    come back in the order of `episodes`. `on_start(spec, env_index)` is called before an
    episode's reset on ``envs[env_index]``, and `on_result` after each episode ends (e.g. to advance a progress bar).
    `option_overrides` are LoopOptions fields (max_steps=..., time_limit_s=...).
    """
    if not envs:
        raise ValueError("run_episodes_batched needs at least one environment")
    if options is None:
        options = LoopOptions(**option_overrides)  # type: ignore[arg-type]
    elif option_overrides:
        raise TypeError("pass either options= or option keywords, not both")
    specs = [e if isinstance(e, EpisodeSpec) else EpisodeSpec(task=e, episode_id=new_episode_id(e))
             for e in episodes]
    policy_name = getattr(policy, "name", type(policy).__name__)
    results: list[EpisodeResult | None] = [None] * len(specs)
    queue = list(range(len(specs)))
    slots: list[tuple[int, EpisodeRun] | None] = [None] * len(envs)

    def finish(slot: int) -> None:
        held = slots[slot]
        assert held is not None
        index, episode = held
        result = episode.finish()
        results[index] = result
        slots[slot] = None
        if on_result is not None:
            on_result(result)

    while queue or any(s is not None for s in slots):
        # Give every free environment the next queued episode.
        for slot, env in enumerate(envs):
            while slots[slot] is None and queue:
                index = queue.pop(0)
                spec = specs[index]
                if on_start is not None:
                    on_start(spec, slot)
                episode = EpisodeRun(
                    task=spec.task, episode_id=spec.episode_id, sample=spec.sample, env=env,
                    recorder=spec.recorder or NullRecorder(), options=options,
                    policy_name=policy_name,
                )
                slots[slot] = (index, episode)
                episode.begin()
                if episode.ended:
                    finish(slot)
        live: list[tuple[int, EpisodeRun]] = []
        for slot, held in enumerate(slots):
            if held is None:
                continue
            held[1].check_limits()
            if held[1].ended:
                finish(slot)
            else:
                live.append((slot, held[1]))
        if not live:
            continue

        step_started_at = time.time()
        act_started = time.monotonic()
        try:
            outputs = policy.act([episode.state() for _, episode in live])
            if len(outputs) != len(live):
                raise PolicyContractError(
                    f"policy {policy_name!r} returned {len(outputs)} outputs for "
                    f"{len(live)} episode states")
        except Exception as exc:  # noqa: BLE001 - a policy fault ends the live episodes
            logger.warning("policy %s raised: %s", policy_name, format_error(exc))
            for slot, episode in live:
                episode.end("error", format_error(exc))
                finish(slot)
            continue
        policy_s = time.monotonic() - act_started
        for (slot, episode), output in zip(live, outputs, strict=True):
            episode.apply(output, step_started_at=step_started_at, policy_s=policy_s)
            if episode.ended:
                finish(slot)

    return [r for r in results if r is not None]


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
    "DEFAULT_MAX_PARSE_FAILURES", "EpisodeResult", "EpisodeRun", "EpisodeSpec", "LoopOptions",
    "PolicyContractError", "format_error", "new_episode_id", "run_episode",
    "run_episodes_batched",
]
