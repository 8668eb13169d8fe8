"""What the trainers share: a dataset row names a task, and an episode whose actions a
trainer generates runs under the engine's episode rule.

A trainer's episode is an `agent.engine.episode.EpisodeRun`, the object `cua eval` runs:
the same step budget (the row's ``max_steps``, else the task's), time limit, stop after
``max_parse_failures`` outputs without an action, terminal actions kept for the
evaluator, feedback wording, success rule and records. Only who generates differs: verl's
server manager (`agent.trainers.verl_loop`) or TRL's generation loop
(`agent.trainers.trl_env`). `RowHost` puts the row's task on whatever host the trainer
has (an in-process environment plus its suite, or a `cua serve-env` lease, whose service
builds the task), and `output_for` turns generated text into the PolicyOutput a policy
would have returned for it (parsed in the prompt profile's dialect, on the current
screen).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EpisodeState, PolicyOutput, Task
from actions.observation import Observation
from agent.engine.episode import EpisodeRun, LoopOptions
from agent.engine.hosts import EnvironmentHost
from agent.service.protocol import ResetRequest, TaskOverrides
from policies.profiles import get_profile
from policies.prompting import BuiltPrompt, PromptConfig, build_prompt, parse_output
from trajectories.store import EpisodeRecorder, NullRecorder, RunWriter

# Every screenshot stays in a trainer's context (both trainers append turns): when a
# prompt is rebuilt for the record or the parser, all of them are replayed.
ALL_SCREENSHOTS = 1_000_000


class RowTask(BaseModel):
    """The task a dataset row names (top-level columns, or inside verl's ``extra_info``):
    `task_id`, `seed`, and optional overrides of the suite's `max_steps` /
    `time_limit_s`; `tool_call_target` is the tool-call reward's per-task target
    (agent.trainers.rewards), set offline."""

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(..., min_length=1)
    seed: int = 0
    max_steps: int | None = Field(None, ge=1)
    time_limit_s: float | None = Field(None, gt=0)
    tool_call_target: int | None = Field(None, ge=1)

    @classmethod
    def of(cls, row: dict[str, Any]) -> RowTask:
        extra = row.get("extra_info") or {}
        fields = {**extra, **{k: v for k, v in row.items() if v is not None}}
        if "task_id" not in fields:
            raise ValueError("the dataset row names no task: give it a 'task_id' column (or "
                             "extra_info.task_id), plus optional 'seed', 'max_steps', "
                             "'time_limit_s' and 'tool_call_target'")
        return cls.model_validate({k: fields[k] for k in cls.model_fields if k in fields})

    def request(self) -> ResetRequest:
        """The service's reset request for this row (its overrides reach the task)."""
        return ResetRequest(task_id=self.task_id, seed=self.seed, overrides=TaskOverrides(
            max_steps=self.max_steps, time_limit_s=self.time_limit_s))

    def make_task(self, suite: Any) -> Task:
        """The task as `suite` builds it, with the row's overrides."""
        overrides = {k: v for k, v in (("max_steps", self.max_steps),
                                       ("time_limit_s", self.time_limit_s)) if v is not None}
        return suite.make_task(self.task_id, self.seed, **overrides)


class RowHost:
    """An EnvironmentHost whose reset starts the task a row names.

    With a `suite`, the suite builds the task (row overrides applied) and the inner host
    resets to it; without one, the inner host's environment is a `cua serve-env` lease
    (`RemoteHost`, or a ThreadHost over a `RemoteEnvironment`) and the service builds it
    from the row's ResetRequest. Either way `started_task` is the task that started,
    which `EpisodeRun.begin` adopts. Everything else is the inner host's.
    """

    def __init__(self, inner: EnvironmentHost, row: RowTask, suite: Any = None) -> None:
        self.inner = inner
        self.row = row
        self.suite = suite
        self.started_task: Task | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reset(self, task: Task) -> Observation:
        if self.suite is not None:
            started = self.row.make_task(self.suite)
            observation = await self.inner.reset(started)
        else:
            observation = await self.inner.reset(self.row.request())  # type: ignore[arg-type]
            started = getattr(getattr(self.inner, "env", None), "task", None)
            if not isinstance(started, Task):
                raise TypeError(f"{self.inner.name}: the service did not say which task it "
                                "started; give the environment's suite (suite=...)")
        self.started_task = started
        return observation


def start_episode(host: EnvironmentHost, row: RowTask, *, suite: Any = None,
                  suite_name: str = "", platform: str = "web", policy_name: str = "trainer",
                  options: LoopOptions | None = None,
                  run_writer: RunWriter | None = None) -> EpisodeRun:
    """An EpisodeRun (not begun) of the row's task on `host`, recorded in `run_writer`'s
    run directory when given (the records `cua eval` writes). `options` are the run's
    LoopOptions (default: the engine's, on `platform`)."""
    options = options or LoopOptions(platform=platform)
    placeholder = Task(suite=suite_name or getattr(suite, "name", "") or "remote",
                       task_id=row.task_id, seed=row.seed)
    episode_id = uuid.uuid4().hex
    recorder: EpisodeRecorder = (run_writer.start_episode(episode_id) if run_writer is not None
                                 else NullRecorder())
    return EpisodeRun(task=placeholder, episode_id=episode_id, sample=0,
                      host=RowHost(host, row, suite), recorder=recorder,
                      options=options, policy_name=policy_name)


def open_run(record_dir: str | None, trainer: str, settings: dict[str, Any]) -> RunWriter | None:
    """The run directory a trainer records its episodes in (None: no records). Every
    rollout worker of one training run opens it with the same `settings`."""
    if not record_dir:
        return None
    return RunWriter(record_dir, {"trainer": trainer, **settings})


def episode_prompt(state: EpisodeState, config: PromptConfig) -> BuiltPrompt:
    """The prompt profile's rendering of the episode so far, every screenshot replayed
    (what a trainer's append-only context holds)."""
    return build_prompt(state, config.model_copy(update={"history_images": ALL_SCREENSHOTS}))


def output_for(raw_text: str, state: EpisodeState, config: PromptConfig,
               **fields: Any) -> PolicyOutput:
    """The PolicyOutput for text a trainer generated in answer to `state`: parsed in the
    profile's dialect onto the current screen, as a policy's output would be."""
    return parse_output(raw_text, episode_prompt(state, config), **fields)


def reference_profile(platform: str) -> str:
    """The reference prompt profile for a platform: the Qwen3-VL cookbook the checkpoints
    were published with (computer use for web/desktop, the mobile agent for Android)."""
    from policies.profiles import default_profile_for_suite

    return default_profile_for_suite("android" if platform == "mobile" else platform)


def prompt_config(profile: str | None, platform: str) -> PromptConfig:
    """The PromptConfig of `profile` (default: `reference_profile(platform)`)."""
    return PromptConfig.for_profile(get_profile(profile or reference_profile(platform)).name)


__all__ = ["ALL_SCREENSHOTS", "RowHost", "RowTask", "episode_prompt", "open_run", "output_for",
           "prompt_config", "reference_profile", "start_episode"]
