"""TRL environments: GUI episodes as `GRPOTrainer(environment_factory=...)` classes.

TRL (>= 1.16) builds one environment instance per rollout, exposes its public methods as
tools, calls `reset(**row)` with the dataset row before generating, runs the tool calls
the model makes (appending what a tool returns as a `tool` message; a list of content
blocks may carry images), and, when the class has `get_reward()`, uses it as a reward.

`ComputerUseEnvironment` has exactly one tool, ``computer_use``, and `MobileUseEnvironment`
one, ``mobile_use``, with the parameters and descriptions of Qwen3-VL's cookbooks (built
from `actions.schemas`, the same declaration the policies show the model; coordinates on
the 0-1000 grid of the qwen3 dialect). A call is parsed by the same parser as a policy's
output and executed on a qwen-cua environment; the tool answers with the new screenshot.
`reset(**row)` starts the task the row names (``task_id``, ``seed``, ``max_steps``) and
returns the instruction and the first screenshot; `get_reward()` is the evaluator's score.

The environment behind it is a `cua serve-env` service (``env_url``/``env_token``, or
$CUA_ENV_URL/$CUA_ENV_TOKEN), or any `Environment` plus a suite to name its tasks
(``environment=`` / ``suite=``). Bind the options with `functools.partial` (TRL calls the
factory without arguments).

TRL's limits for long GUI episodes (trl 1.16, GRPOTrainer._tool_call_loop): tool calls
run one rollout after another in the trainer's process (a slow environment step stalls
the whole batch; async tools only overlap within one rollout), the whole episode —
every screenshot's image tokens included — must fit in `max_completion_length`, tool
turns are capped by `max_tool_calling_iterations`, and every screenshot stays in the
context (no sliding window).
"""

from __future__ import annotations

import json
import os
from typing import Any

from actions.contracts import Environment, EnvironmentCrashed, Task
from actions.dialects import Dialect
from actions.models import TERMINAL_ACTION_TYPES
from actions.observation import Observation, Size
from actions.parsing import parse_tool_calls
from actions.schemas import computer_use_tool, mobile_use_tool
from agent.service.protocol import TOKEN_ENV_VAR, ResetRequest, TaskOverrides

EPISODE_OVER = "The episode is over; no further actions are executed."


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


# The cookbooks' tools in the qwen3 dialect (coordinates on a 0-1000 grid, whatever the
# screen): the description's resolution line does not depend on the screen size.
_GRID = Size(width=1000, height=1000)
COMPUTER_USE_TOOL = computer_use_tool(Dialect.QWEN3, _GRID)
MOBILE_USE_TOOL = mobile_use_tool(Dialect.QWEN3, _GRID)


class _GUIEnvironment:
    """The part shared by both tools: the environment, the episode, the reward."""

    tool_name = ""

    def __init__(self, *, env_url: str | None = None, env_token: str | None = None,
                 environment: Environment | None = None, suite: Any = None) -> None:
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
        self._task: Task | None = None
        self._observation: Observation | None = None
        self._over = True
        self._failed: str | None = None
        self.steps = 0

    def _start(self, request: ResetRequest) -> Observation:
        if self._suite is not None:
            task = self._suite.make_task(request.task_id, request.seed,
                                         **request.overrides.model_dump(exclude_none=True))
            return self._env.reset(task)
        observation = self._env.reset(request)
        return observation

    def reset(self, **row: Any) -> list[dict[str, Any]]:
        """Start the task the dataset row names; returns the instruction and the first
        screenshot, which TRL appends to the row's last user message."""
        extra = row.get("extra_info") or {}
        fields = {**extra, **{k: v for k, v in row.items() if v is not None}}
        if "task_id" not in fields:
            raise ValueError("the dataset row names no task: give it a 'task_id' column")
        request = ResetRequest(task_id=str(fields["task_id"]), seed=int(fields.get("seed", 0)),
                               overrides=TaskOverrides(max_steps=fields.get("max_steps")))
        self._observation = self._start(request)
        self._task = self._suite.make_task(request.task_id, request.seed) if self._suite \
            else self._env.task
        self._over, self._failed, self.steps = False, None, 0
        instruction = self._observation.instruction or (self._task.instruction if self._task
                                                       else "")
        return [{"type": "text", "text": f"The user query: {instruction}\n"},
                {"type": "image", "image": self._observation.image().convert("RGB")}]

    def _act(self, arguments: dict[str, Any]) -> list[dict[str, Any]] | str:
        if self._over or self._observation is None:
            return EPISODE_OVER
        call = json.dumps({"name": self.tool_name,
                           "arguments": {k: v for k, v in arguments.items() if v is not None}})
        observation = self._observation
        parsed = parse_tool_calls(f"<tool_call>\n{call}\n</tool_call>", Dialect.QWEN3,
                                  observation.screen_size)
        if not parsed.actions:
            return "No action was executed: " + ("; ".join(parsed.errors) or "invalid call")
        action = parsed.actions[0]
        self.steps += 1
        try:
            if action.type in TERMINAL_ACTION_TYPES:
                notify = getattr(self._env, "notify_terminal", None)
                notify(action) if callable(notify) else self._env.step(action)
                self._over = True
                return EPISODE_OVER
            self._observation = self._env.step(action)
        except EnvironmentCrashed as exc:
            self._over, self._failed = True, f"{type(exc).__name__}: {exc}"
            return f"The environment failed ({exc}); the episode is over."
        budget = self._task.max_steps if self._task else None
        if self._observation.done or (budget is not None and self.steps >= budget):
            self._over = True
        content: list[dict[str, Any]] = [
            {"type": "image", "image": self._observation.image().convert("RGB")}]
        if self._observation.action_error:
            content.insert(0, {"type": "text",
                               "text": f"The action failed: {self._observation.action_error}"})
        if self._over:
            content.append({"type": "text", "text": EPISODE_OVER})
        return content

    def get_reward(self) -> float:
        """The environment's evaluator score for the episode (0.0 after a crash)."""
        if self._failed is not None or self._task is None:
            return 0.0
        return float(self._env.evaluate())

    def _release(self) -> None:
        """Give the environment back (private: TRL exposes every public method as a tool)."""
        self._env.close()


class ComputerUseEnvironment(_GUIEnvironment):
    """Web and desktop tasks, with the computer_use cookbook's one tool."""

    tool_name = "computer_use"

    def computer_use(self, action: str, keys: list | None = None, text: str | None = None,
                     coordinate: list | None = None, coordinate2: list | None = None,
                     pixels: float | None = None, time: float | None = None,
                     status: str | None = None) -> list | str:
        return self._act({"action": action, "keys": keys, "text": text,
                          "coordinate": coordinate, "coordinate2": coordinate2,
                          "pixels": pixels, "time": time, "status": status})

    computer_use.__doc__ = _docstring(COMPUTER_USE_TOOL)


class MobileUseEnvironment(_GUIEnvironment):
    """Android tasks, with the mobile-agent cookbook's one tool."""

    tool_name = "mobile_use"

    def mobile_use(self, action: str, coordinate: list | None = None,
                   coordinate2: list | None = None, text: str | None = None,
                   time: float | None = None, button: str | None = None,
                   status: str | None = None) -> list | str:
        return self._act({"action": action, "coordinate": coordinate,
                          "coordinate2": coordinate2, "text": text, "time": time,
                          "button": button, "status": status})

    mobile_use.__doc__ = _docstring(MOBILE_USE_TOOL)
