"""TRL environments: GUI episodes as `GRPOTrainer(environment_factory=...)` classes, run
under the engine's episode rule.

TRL (>= 1.16) builds environment instances (pooled and reused across batches), exposes
their public methods as tools, calls `reset(**row)` with the dataset row before
generating, runs the tool calls the model makes (appending what a tool returns as a
`tool` message; a list of content blocks may carry images), and, when the class has
`get_reward()`, uses it as a reward column.

Each instance holds one `agent.engine.episode.EpisodeRun` per rollout, the object
`cua eval` runs: `reset` begins it on the task the row names (``task_id``, ``seed``, and
the row's ``max_steps`` / ``time_limit_s`` reach the task), each tool call is one step
(the call, parsed in the prompt profile's dialect, applied through `EpisodeRun.apply`:
the same feedback, parse-failure stop, terminal actions and records), the limits are
checked before a call executes and after it (so that the model is told the episode is
over), and `get_reward` finishes the episode (the evaluator) and composes the reward
terms of `agent.trainers.rewards`. A rollout TRL stops while the episode goes on (the
model wrote no tool call, or TRL's ``max_tool_calling_iterations`` /
``max_completion_length`` ran out) ends as ``max_steps``: the trainer's budget.

The tool is the prompt profile's (`environment_class(platform, profile=...)`; default the
reference profile: Qwen3-VL's computer-use cookbook for web/desktop, its mobile agent for
Android), built from `actions.schemas` as the policies show it, its method signature and
docstring made from the tool so that transformers' `get_json_schema` rebuilds it. The
first user turn holds the profile's instruction text and the screenshot in its order.
`ComputerUseEnvironment` and `MobileUseEnvironment` are the reference classes.

``record_dir`` records every rollout's episode there as `cua eval` records its episodes
(one run directory for the training run; `cua view` reads it).

The environment behind it is a `cua serve-env` service (``env_url``/``env_token``, or
$CUA_ENV_URL/$CUA_ENV_TOKEN), or any `Environment` plus its suite (``environment=`` /
``suite=``). Bind the options with `functools.partial` (TRL calls the factory without
arguments). Calls run on the trainer's thread (an in-process Playwright environment is
bound to the thread that made it): the episode's coroutines run through
`agent.engine.episode.run_blocking`.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from actions.contracts import Environment
from actions.observation import Size
from actions.schemas import tool_name_for_platform
from agent.engine.episode import EpisodeRun, LoopOptions, run_blocking
from agent.engine.hosts import CallerThreadExecutor, ThreadHost
from agent.service.protocol import TOKEN_ENV_VAR
from agent.trainers.episodes import (
    RowTask,
    open_run,
    output_for,
    prompt_config,
    start_episode,
)
from agent.trainers.rewards import RewardConfig, RewardTerms, reward_terms
from policies.profiles import get_profile
from policies.prompting import PromptConfig
from trajectories.record import EpisodeResult

T = TypeVar("T")

EPISODE_OVER = "The episode is over; no further actions are executed."
POLICY_NAME = "trl"

_GRID = Size(width=1000, height=1000)  # the tool text does not depend on the screen size
_PY_TYPES: dict[str, type] = {"string": str, "array": list, "number": float, "integer": int,
                              "boolean": bool, "object": dict}


def _docstring(tool: dict[str, Any]) -> str:
    """A Google-style docstring from which transformers' get_json_schema rebuilds `tool`
    (description, parameter descriptions and enums)."""
    function = tool["function"]
    lines = [function["description"], "", "Args:"]
    for name, spec in function["parameters"]["properties"].items():
        description = " ".join(spec["description"].split())
        if "enum" in spec:
            description += f" (choices: {json.dumps(spec['enum'])})"
        lines.append(f"    {name}: {description}")
    lines += ["", "Returns:", "    The screen after the action (a screenshot), or what went wrong."]
    return "\n".join(lines)


def tool_method(tool: dict[str, Any]) -> Callable[..., Any]:
    """The method TRL exposes for `tool`: named after it, one keyword parameter per
    property (required ones without default), typed, with a docstring that
    `get_json_schema` turns back into the tool."""
    function = tool["function"]
    properties = function["parameters"]["properties"]
    required = set(function["parameters"].get("required", []))
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = _PY_TYPES[spec["type"]]
        annotations[name] = kind if name in required else kind | None
        parameters.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=annotations[name],
            default=inspect.Parameter.empty if name in required else None))
    annotations["return"] = list | str

    def call(self: _GUIEnvironment, **arguments: Any) -> list | str:
        return self._act(arguments)

    call.__name__ = call.__qualname__ = function["name"]
    call.__doc__ = _docstring(tool)
    call.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    call.__annotations__ = annotations
    return call


class _GUIEnvironment:
    """One rollout at a time on one environment, under the engine's episode rule."""

    platform = "web"
    profile = ""
    tool: dict[str, Any] = {}

    def __init__(self, *, env_url: str | None = None, env_token: str | None = None,
                 environment: Environment | None = None, suite: Any = None,
                 rewards: RewardConfig | None = None, options: LoopOptions | None = None,
                 record_dir: str | None = None) -> None:
        self._suite = suite
        if environment is not None:
            if suite is None:
                raise ValueError("give the suite whose tasks `environment` runs (suite=...)")
            self._env: Any = environment
        else:
            from agent.service.client import RemoteEnvironment

            url = env_url or os.environ.get("CUA_ENV_URL")
            token = env_token or os.environ.get(TOKEN_ENV_VAR)
            if not url or not token:
                raise ValueError(f"give env_url and env_token (or $CUA_ENV_URL and "
                                 f"${TOKEN_ENV_VAR}) of a `cua serve-env` service, or an "
                                 "environment and its suite")
            self._env = RemoteEnvironment(url, token)
        self._caller = CallerThreadExecutor()
        self._host = ThreadHost(0, env=self._env, executor=self._caller, owns_env=False)
        self.rewards = rewards or RewardConfig()
        self.options = options or LoopOptions(platform=self.platform)
        self.prompt_config: PromptConfig = prompt_config(self.profile, self.platform)
        self._run_writer = open_run(record_dir, POLICY_NAME, {
            "profile": self.profile, "platform": self.platform,
            "rewards": self.rewards.model_dump(mode="json")})
        self.episode: EpisodeRun | None = None
        self.row: RowTask | None = None
        self.result: EpisodeResult | None = None
        self.reward_terms: RewardTerms | None = None

    @classmethod
    def dataset_prompt(cls) -> list[dict[str, Any]]:
        """A row's ``prompt`` column for this profile: its system text (TRL's chat
        template puts the tools block after it) and an empty user turn that `reset` fills."""
        profile = get_profile(cls.profile)
        system = (profile.system_head.strip() + "\n\n" + profile.response_format.strip()).strip()
        user = {"role": "user", "content": ""}
        return [{"role": "system", "content": system}, user] if system else [user]

    def _run(self, coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return run_blocking(coroutine, caller=self._caller)

    @property
    def steps(self) -> int:
        """Tool calls applied in the current episode."""
        return len(self.episode.history) if self.episode is not None else 0

    def reset(self, **row: Any) -> list[dict[str, Any]]:
        """Begin the episode of the task the row names; returns the first user turn's
        content (the profile's instruction text and the first screenshot), which TRL
        appends to the row's last user message."""
        self.row = RowTask.of(row)
        self.result = self.reward_terms = None
        self.episode = start_episode(self._host, self.row, suite=self._suite,
                                     options=self.options, policy_name=POLICY_NAME,
                                     run_writer=self._run_writer)
        episode = self.episode
        self._run(episode.begin)
        if episode.observation is None:
            return [{"type": "text", "text": f"The environment failed ({episode.error}); "
                     f"{EPISODE_OVER}"}]
        profile = get_profile(self.prompt_config.profile)
        text = {"type": "text", "text": profile.instruction_text(episode.instruction, [])}
        image = {"type": "image", "image": episode.observation.image().convert("RGB")}
        return [image, text] if profile.image_first else [text, image]

    def _act(self, arguments: dict[str, Any]) -> list[dict[str, Any]] | str:
        episode = self.episode
        if episode is None or episode.ended:
            return EPISODE_OVER
        episode.check_limits()
        if episode.ended:
            return EPISODE_OVER
        call = json.dumps({"name": self.tool["function"]["name"],
                           "arguments": {k: v for k, v in arguments.items() if v is not None}})
        output = output_for(f"<tool_call>\n{call}\n</tool_call>", episode.state(),
                            self.prompt_config, model=POLICY_NAME)
        started_at = time.time()
        self._run(lambda: episode.apply(output, step_started_at=started_at, policy_s=0.0))
        if not episode.ended:
            episode.check_limits()
        content: list[dict[str, Any]] = []
        feedback = episode.history[-1].feedback
        if feedback:
            content.append({"type": "text", "text": feedback})
        if episode.history[-1].observation is not episode.observation:
            content.append({"type": "image", "image": episode.observation.image().convert("RGB")})
        if episode.ended:
            content.append({"type": "text", "text": EPISODE_OVER})
        return content

    def _finish(self) -> RewardTerms:
        """End the episode (the trainer's budget, if it still runs), evaluate, compose the
        reward terms; once per rollout."""
        if self.reward_terms is not None:
            return self.reward_terms
        episode, row = self.episode, self.row
        if episode is None or row is None:
            raise RuntimeError("get_reward() before reset(): no episode ran")
        episode.end("max_steps")  # no-op when the episode already ended

        async def finish() -> RewardTerms:
            self.result = await episode.finish()
            return await reward_terms(self.rewards, result=self.result, task=episode.task,
                                      history=episode.history,
                                      row_target=row.tool_call_target)

        self.reward_terms = self._run(finish)
        return self.reward_terms

    def get_reward(self) -> float:
        """The rollout's reward: the weighted total of its terms (by default the
        evaluator's score alone). The terms stay in `reward_terms`."""
        return self._finish().total

    def _release(self) -> None:
        """Give the environment back (private: TRL exposes every public method as a tool)."""
        self._env.close()


def _term(name: str) -> Callable[..., list[float | None]]:
    def reward(environments: list[Any] | None = None, **_: Any) -> list[float | None]:
        values = []
        for env in environments or []:
            value = getattr(env._finish(), name) if isinstance(env, _GUIEnvironment) else None
            values.append(None if value is None else float(value))
        return values

    reward.__name__ = f"{name}_reward"
    return reward


def reward_term_funcs() -> list[Callable[..., list[float | None]]]:
    """TRL reward functions that report each term per rollout (`outcome_reward`,
    `tool_call_reward`, `judge_reward`; None where a term is not computed). The
    environment's `get_reward` already gives the weighted total: pass these with
    `GRPOConfig(reward_weights=[0.0, 0.0, 0.0])` so that they are logged, not added."""
    return [_term("outcome"), _term("tool_call"), _term("judge")]


def environment_class(platform: str = "web", *, profile: str | None = None
                      ) -> type[_GUIEnvironment]:
    """The environment class for `platform` ('web', 'desktop' or 'mobile') with the tool
    and first-turn layout of prompt `profile` (default: the platform's reference)."""
    config = prompt_config(profile, platform)
    chosen = get_profile(config.profile)
    tool = chosen.tool(platform, config.dialect, _GRID, _GRID, False)
    name = tool_name_for_platform(platform)
    title = "".join(part.title() for part in name.split("_"))
    return type(f"{title}Environment", (_GUIEnvironment,), {
        "__doc__": f"{platform} tasks with the {name} tool of prompt profile {chosen.name}.",
        "__module__": __name__,
        "platform": platform, "profile": chosen.name, "tool": tool, name: tool_method(tool),
    })


ComputerUseEnvironment = environment_class("web")
MobileUseEnvironment = environment_class("mobile")

__all__ = ["EPISODE_OVER", "ComputerUseEnvironment", "MobileUseEnvironment",
           "environment_class", "reward_term_funcs", "tool_method"]
