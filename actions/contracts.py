"""The contracts between packages: tasks, environments, policies, episode state.

Dependencies point one way (see DESIGN.md): environments and policies import these
definitions; they never import each other.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from actions.models import Action
from actions.observation import Observation, Size


class Task(BaseModel):
    """One episode's task: what to do and how the environment sets it up.

    `config` is suite-specific setup data (a URL, OSWorld `config` steps, an Android
    task template's parameters); environments and benchmark adapters read it.
    """

    model_config = ConfigDict(frozen=True)

    suite: str = Field(..., description="e.g. 'miniwob', 'desktop', 'android', 'web'")
    task_id: str
    seed: int = 0
    instruction: str = ""
    max_steps: int = Field(30, ge=1)
    time_limit_s: float | None = Field(None, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable identity of an episode in a run: suite/task_id/seed."""
        return f"{self.suite}/{self.task_id}/{self.seed}"


class EnvironmentError_(RuntimeError):
    """Base for environment faults the run survives (crash, lost device)."""


class EnvironmentCrashed(EnvironmentError_):
    """The environment's process (browser, X server, adb device) died or hung.

    The environment has restarted it (or will on the next reset); the episode in flight
    is over and must be recorded as an error.
    """


@runtime_checkable
class Environment(Protocol):
    """A GUI the agent drives. Kept gymnasium-small.

    `step` returns once the UI has settled (screen stable, network quiet) or a bound
    passes; never after a fixed sleep. Raises EnvironmentCrashed on a fault that ends the
    episode; problems with one action (refused navigation, ...) come back as
    `Observation.action_error` instead.
    """

    def reset(self, task: Task) -> Observation: ...

    def step(self, action: Action) -> Observation: ...

    def evaluate(self) -> float: ...

    def close(self) -> None: ...


class ImageRef(BaseModel):
    """Which screenshot a prompt included: the step it came from and its content hash."""

    model_config = ConfigDict(frozen=True)

    step: int
    sha256: str


class PolicyOutput(BaseModel):
    """Everything a policy produced for one step of one episode.

    Token ids are kept exactly as generated (never re-templated); logprobs are those of
    the sampled tokens, where the backend gives them.
    """

    raw_text: str
    thought: str = ""
    think: str | None = Field(None, description="Content of <think> blocks, if any.")
    actions: list[Action] = Field(default_factory=list)
    parse_errors: list[str] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The exact chat messages sent; images replaced by {'type': 'image', "
        "'sha256': ...} references.",
    )
    images: list[ImageRef] = Field(default_factory=list)
    prompt_token_ids: list[int] | None = None
    response_token_ids: list[int] | None = None
    response_logprobs: list[float] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    model: str | None = None
    error: str | None = Field(None, description="Backend failure (server down, ...), if any.")
    finish_reason: str | None = Field(
        None, description="Why generation stopped: 'stop' (end of turn) or 'length' (cut by "
        "the max_new_tokens budget); None when the backend did not say.")
    prompt_profile: str | None = Field(
        None, description="The prompt profile (policies.profiles) the prompt was built with.")
    prompt_profile_hash: str | None = Field(
        None, description="Hash of that profile's templates (changes when any template does).")


class StepHistory(BaseModel):
    """A finished step, as later steps' prompts may need it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int
    observation: Observation = Field(..., description="What the policy saw before acting.")
    output: PolicyOutput
    feedback: str | None = Field(
        None, description="What the agent told the policy after this step (parse errors, "
        "action errors).",
    )


class EpisodeState(BaseModel):
    """What a policy gets to decide the next step of one episode."""

    episode_id: str
    task: Task
    instruction: str
    observation: Observation = Field(..., description="The current screen.")
    history: list[StepHistory] = Field(default_factory=list)
    platform: str = Field("web", description="'web', 'desktop' or 'mobile': picks the tool.")

    @property
    def step_index(self) -> int:
        return len(self.history)


@runtime_checkable
class Policy(Protocol):
    """Decides actions for a batch of episodes at once."""

    name: str

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]: ...

    def close(self) -> None: ...


__all__ = [
    "Environment", "EnvironmentCrashed", "EnvironmentError_", "EpisodeState", "ImageRef",
    "Policy", "PolicyOutput", "Size", "StepHistory", "Task",
]
