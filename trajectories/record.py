"""The trajectory record format: what is written for a run and for each of its episodes.

A run directory looks like this::

    RUN/
      manifest.json            RunManifest: config, package versions, creation time
      results.jsonl            one EpisodeResult per line, one line per finished episode
      screenshots/<sha256>.png every screenshot once, lossless, named by the SHA-256 of its PNG bytes
      episodes/<episode_id>/
        episode.json           EpisodeRecord: the task and the first observation, written at start
        steps.jsonl            one StepRecord per line, appended (and fsynced) after each step
        result.json            the EpisodeResult, written atomically when the episode ends

`results.jsonl` is the commit point: an episode is finished when its line is there. A
process killed mid-episode leaves an episode directory without that line; the runner's
resume deletes it and runs the episode again.

Everything here is plain pydantic v2 so that exporters and the viewer (and code outside
this project) can read the files with `Model.model_validate_json(line)`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actions.contracts import PolicyOutput, Task
from actions.models import Action
from actions.observation import Observation, Size, png_sha256

# The trajectory store's name for the content address of a screenshot.
screenshot_sha256 = png_sha256

FORMAT_VERSION = 1
"""Bumped when a record changes incompatibly; readers check it."""

TerminatedBy = Literal[
    "terminate", "answer", "done", "max_steps", "time_limit", "parse_errors", "error"
]
"""Why an episode ended:

- ``terminate`` / ``answer``: the policy emitted that terminal action;
- ``done``: the environment ended the episode (Observation.done, e.g. MiniWoB submit);
- ``max_steps``: the step budget was used up;
- ``time_limit``: the episode's wall-clock limit passed (checked between steps);
- ``parse_errors``: too many consecutive policy outputs without a valid action;
- ``error``: the environment crashed or the environment/policy raised (see ``error``).
"""




def episode_key(suite: str, task_id: str, seed: int, sample: int = 0) -> str:
    """Identity of an episode within a run: ``suite/task_id/seed`` (= `Task.key`), with
    ``/sample`` appended for the 2nd, 3rd, ... rollout of the same task and seed."""
    base = f"{suite}/{task_id}/{seed}"
    return base if sample == 0 else f"{base}/{sample}"


def to_json_text(record: BaseModel, *, indent: int | None = None) -> str:
    """Serialize a record so that reading it back always validates.

    pydantic writes non-finite floats of nested models as ``null``, which a ``float``
    field then rejects on reading (a NaN logprob or latency would make the whole step
    line unreadable). Python's json writes them as ``NaN`` / ``Infinity`` / ``-Infinity``,
    which pydantic and Python's json read back. Lone surrogates (from undecodable model
    output) become U+FFFD so the text is valid UTF-8. One line unless `indent` is given.
    """
    text = json.dumps(record.model_dump(mode="python"), ensure_ascii=False, allow_nan=True,
                      indent=indent, separators=None if indent else (",", ":"), default=repr)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def _jsonable(value: Any) -> Any:
    """Make free-form data (Observation.info) JSON-safe; unknown objects become repr()."""
    return json.loads(json.dumps(value, default=repr))


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ObservationMeta(_Record):
    """An observation as recorded: everything but the image bytes (stored by hash)."""

    screenshot_sha256: str = Field(..., description="Name of RUN/screenshots/<sha256>.png.")
    screen_size: Size = Field(..., description="Input space (where actions click), pixels.")
    screenshot_size: Size = Field(..., description="Size of the PNG, pixels.")
    url: str | None = None
    app: str | None = None
    timestamp: float = Field(..., description="Unix time of the capture, seconds.")
    execute_s: float | None = Field(None, description="Seconds executing the action before it.")
    settle_s: float | None = Field(None, description="Seconds waiting for the UI to settle.")
    action_error: str | None = None
    done: bool = False
    instruction: str | None = None
    a11y_tree: str | None = Field(
        None, description="Accessibility tree / DOM text; only kept when the recorder is "
        "asked to (it is large and the prompt that used it is in the step's messages).",
    )
    info: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_observation(
        cls, obs: Observation, *, sha256: str | None = None, keep_a11y: bool = False
    ) -> ObservationMeta:
        return cls(
            screenshot_sha256=sha256 or screenshot_sha256(obs.screenshot_png),
            screen_size=obs.screen_size,
            screenshot_size=obs.screenshot_size,
            url=obs.url,
            app=obs.app,
            timestamp=obs.timestamp,
            execute_s=obs.execute_s,
            settle_s=obs.settle_s,
            action_error=obs.action_error,
            done=obs.done,
            instruction=obs.instruction,
            a11y_tree=obs.a11y_tree if keep_a11y else None,
            info=_jsonable(obs.info),
        )


class ActionExecution(_Record):
    """One action of a step's output and what executing it gave."""

    index: int = Field(..., description="Position of the action in output.actions.")
    action: Action
    observation: ObservationMeta | None = Field(
        None, description="The screen after the action (with its execute/settle timings and "
        "action_error); None for a terminal action given to the environment's "
        "notify_terminal hook (no screenshot taken).",
    )


class StepRecord(_Record):
    """One line of steps.jsonl: one policy call for one episode and its execution.

    `observation` is the screen the policy saw; the screen after the step is the last
    execution's observation (equal to the next step's `observation`). A step whose output
    had no valid action executes nothing and gives `feedback` instead.
    """

    format_version: int = FORMAT_VERSION
    episode_id: str
    index: int = Field(..., ge=0, description="0-based step number within the episode.")
    started_at: float = Field(..., description="Unix time the policy was asked, seconds.")
    observation: ObservationMeta
    output: PolicyOutput
    executions: list[ActionExecution] = Field(default_factory=list)
    feedback: str | None = Field(
        None, description="What the loop told the policy after this step (parse errors, "
        "action errors); the next prompt sees it.",
    )
    policy_s: float = Field(..., description="Wall seconds of the act() call (whole batch).")
    env_s: float = Field(0.0, description="Wall seconds executing this step's actions.")
    error: str | None = Field(None, description="'Type: message' if the step ended the "
                              "episode with a fault.")


class EpisodeRecord(_Record):
    """episode.json: written when the episode starts (after reset, or after a failed reset)."""

    format_version: int = FORMAT_VERSION
    episode_id: str
    key: str
    sample: int = 0
    task: Task
    instruction: str
    policy: str
    platform: str
    started_at: float = Field(..., description="Unix time of the reset call, seconds.")
    reset_s: float | None = Field(None, description="Seconds the reset took.")
    initial_observation: ObservationMeta | None = None


class EpisodeResult(_Record):
    """How one episode ended: result.json, and one line of results.jsonl."""

    format_version: int = FORMAT_VERSION
    episode_id: str
    suite: str
    task_id: str
    seed: int
    sample: int = Field(0, description="Which rollout of this task and seed (0-based).")
    instruction: str = ""
    success: bool
    reward: float
    steps: int = Field(..., description="Policy calls made (including unparsable outputs).")
    parse_errors: int = Field(0, description="Steps whose output had parse errors.")
    action_errors: int = Field(0, description="Actions the environment refused or failed.")
    cut_outputs: int = Field(0, description="Steps whose output the generation budget cut "
                             "(finish_reason 'length'): raise max_new_tokens if not 0.")
    error: str | None = Field(None, description="'ExceptionType: message' of the fault "
                              "that ended the episode, else None.")
    terminated_by: TerminatedBy
    answer: str | None = Field(None, description="Text of the answer action, if any.")
    agent_status: Literal["success", "failure"] | None = Field(
        None, description="What the policy claimed in its terminate action, if any.")
    wall_time_s: float = Field(..., description="Seconds from reset to the end of evaluate.")
    started_at: float
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> str:
        return episode_key(self.suite, self.task_id, self.seed, self.sample)


class RunManifest(_Record):
    """manifest.json: what a run is. `config` is its identity: resuming into a run
    directory requires the same config. `invocations` logs each command that wrote to it."""

    format_version: int = FORMAT_VERSION
    created_at: float
    updated_at: float
    config: dict[str, Any]
    versions: dict[str, str | None]
    invocations: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("config")
    @classmethod
    def _config_is_json(cls, config: dict[str, Any]) -> dict[str, Any]:
        return _jsonable(config)


__all__ = [
    "FORMAT_VERSION", "ActionExecution", "EpisodeRecord", "EpisodeResult", "ObservationMeta",
    "RunManifest", "StepRecord", "TerminatedBy", "episode_key", "screenshot_sha256",
    "to_json_text",
]
