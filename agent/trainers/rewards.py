"""The reward terms of the Qwen3-VL report's multi-turn, tool-integrated RL, for our
environments (TRL and verl alike).

The report (section 4.5; facts in shared/published-results.md) combines three rewards:
answer accuracy; a VLM judge's score of whether the assistant read the tool or
environment feedback correctly and reasoned step by step; and a tool-call reward that
compares the number of tool calls with a per-task target set offline from the task's
complexity (added because early runs learned to make a single call whatever the task
needed). Here:

- **outcome**: the environment's evaluator score (`EpisodeResult.reward`, what
  `cua eval` reports; ``RewardConfig.outcome="score"``, the default), in place of the
  report's LLM-judged answer accuracy — or, with ``outcome="success"``, 1.0 for a
  successful episode and 0.0 otherwise, right-or-wrong as the report's accuracy is. Pick
  "success" where a score ranks a wrong answer below no answer: MiniWoB scores a wrong
  submission -1 but an episode our step limit cut 0 (the page's own timer would have
  given -1: miniwob-plusplus core.js ends a timed-out episode with
  ``core.endEpisode(-1, false, 'timed out')``), so RL on the score learns not to finish;
- **tool_call**: ``max(0, 1 - |calls - target| / target)``, `calls` being the actions the
  episode issued (a step may issue several); the report gives no formula, this form is
  ours. The target comes from the row's ``tool_call_target`` column, else
  `RewardConfig.tool_call_targets` (by ``suite/task_id/seed`` key, then by task id), else
  the task's ``config['tool_call_target']``; `targets_from_run` sets them offline from an
  expert run (the oracle's step count per task). No target: the term is None and counts 0;
- **judge**: an OpenAI-compatible model (any server: vLLM, SGLang, a hosted API) scores
  the episode's turns with the prompt in `JudgeConfig.prompt_file` (default
  agent/trainers/judge_prompt.txt, written by us: the report's prompt is not published);
  its answer's last ``SCORE: x`` line, clamped to [0, 1]. A judge that fails or answers
  without a score gives None, counts 0, and `judge_error` says why.

`total = outcome_weight*outcome + tool_call_weight*tool_call + judge_weight*judge`; the
weights are part of the run's configuration (`RewardConfig`); every term is kept per
rollout (`RewardTerms`: TRL's reward columns, verl's ``extra_fields``).
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actions.contracts import StepHistory, Task
from trajectories.record import EpisodeResult

DEFAULT_JUDGE_PROMPT = Path(__file__).with_name("judge_prompt.txt")
_SCORE = re.compile(r"SCORE:\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)


class JudgeConfig(BaseModel):
    """The judge model: an OpenAI-compatible endpoint (`base_url`, e.g.
    http://judge-node:8000/v1), the served `model` name, the key (`api_key`, else
    $OPENAI_API_KEY, else "EMPTY" as vLLM accepts), the prompt file (placeholders
    ``{instruction}`` and ``{transcript}``), how many of the latest screenshots it sees
    (`max_images`, 0 for text only), and its budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    api_key: str | None = None
    prompt_file: Path = DEFAULT_JUDGE_PROMPT
    max_images: int = Field(4, ge=0)
    max_tokens: int = Field(512, ge=1)
    timeout_s: float = Field(120.0, gt=0)

    def prompt_template(self) -> str:
        try:
            text = Path(self.prompt_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the judge prompt file {self.prompt_file}: {exc}") \
                from exc
        for field in ("{instruction}", "{transcript}"):
            if field not in text:
                raise ValueError(f"the judge prompt file {self.prompt_file} has no {field} "
                                 "placeholder")
        return text


class RewardConfig(BaseModel):
    """How a rollout's reward is composed (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome_weight: float = 1.0
    outcome: Literal["score", "success"] = "score"
    tool_call_weight: float = 0.0
    judge_weight: float = 0.0
    tool_call_targets: dict[str, int] = Field(default_factory=dict)
    judge: JudgeConfig | None = None

    @model_validator(mode="after")
    def _judge_given(self) -> RewardConfig:
        if self.judge_weight and self.judge is None:
            raise ValueError("judge_weight is set but no judge is configured: give "
                             "judge={'base_url': ..., 'model': ...}")
        return self


class RewardTerms(BaseModel):
    """One rollout's reward terms and their weighted total."""

    outcome: float
    tool_calls: int
    tool_call_target: int | None = None
    tool_call: float | None = None
    judge: float | None = None
    judge_error: str | None = None
    total: float


def tool_call_reward(calls: int, target: int) -> float:
    """1 when the episode made `target` calls, falling linearly to 0 at 0 or 2*target."""
    if target < 1:
        raise ValueError(f"a tool-call target must be at least 1 (got {target})")
    return max(0.0, 1.0 - abs(calls - target) / target)


def tool_call_target(task: Task, config: RewardConfig, row_target: int | None = None
                     ) -> int | None:
    """The per-task target: the row's, the config's (by key, then task id), the task's."""
    if row_target is not None:
        return row_target
    for name in (task.key, task.task_id):
        if name in config.tool_call_targets:
            return int(config.tool_call_targets[name])
    value = task.config.get("tool_call_target")
    return int(value) if value is not None else None


def targets_from_run(run_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Per-task targets from an expert's run (`cua eval SUITE --policy oracle`): the
    fewest steps among each task's successful episodes, by task id."""
    from trajectories.store import RunDir

    targets: dict[str, int] = {}
    for result in RunDir(run_dir).results():
        if result.success and result.steps >= 1:
            targets[result.task_id] = min(result.steps, targets.get(result.task_id,
                                                                   result.steps))
    return targets


def count_tool_calls(history: Sequence[StepHistory]) -> int:
    """The actions an episode issued (terminal ones included)."""
    return sum(len(step.output.actions) for step in history)


def transcript(history: Sequence[StepHistory]) -> str:
    """The turns as the judge reads them: what the agent wrote, then what it was told."""
    lines: list[str] = []
    for step in history:
        lines.append(f"Turn {step.index + 1}, the agent wrote:\n{step.output.raw_text.strip()}")
        if step.feedback:
            lines.append(f"Turn {step.index + 1}, the environment answered:\n{step.feedback}")
    return "\n\n".join(lines) or "(the agent took no turn)"


def judge_messages(judge: JudgeConfig, instruction: str, history: Sequence[StepHistory]
                   ) -> list[dict[str, Any]]:
    """The judge's chat request: the prompt file filled in, then the latest screenshots
    the agent saw (at most `max_images`), each labelled with its turn."""
    text = judge.prompt_template().format(instruction=instruction,
                                          transcript=transcript(history))
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    shown = list(history)[-judge.max_images:] if judge.max_images else []
    for step in shown:
        buffer = io.BytesIO()
        step.observation.image().convert("RGB").save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        content.append({"type": "text", "text": f"Screenshot before turn {step.index + 1}:"})
        content.append({"type": "image_url", "image_url": {"url": url}})
    return [{"role": "user", "content": content}]


def parse_judge_score(text: str) -> float:
    """The last ``SCORE: x`` in the judge's answer, clamped to [0, 1]."""
    found = _SCORE.findall(text or "")
    if not found:
        raise ValueError(f"the judge's answer has no 'SCORE: x' line: {text[-200:]!r}")
    return min(1.0, max(0.0, float(found[-1])))


async def judge_score(judge: JudgeConfig, instruction: str, history: Sequence[StepHistory]
                      ) -> float:
    """Ask the judge (openai SDK, its retries and timeout) and parse its score."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=judge.base_url, timeout=judge.timeout_s,
                         api_key=judge.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY")
    async with client:
        reply = await client.chat.completions.create(
            model=judge.model, messages=judge_messages(judge, instruction, history),
            max_tokens=judge.max_tokens, temperature=0.0)
    return parse_judge_score(reply.choices[0].message.content or "")


async def reward_terms(config: RewardConfig, *, result: EpisodeResult, task: Task,
                       history: Sequence[StepHistory], row_target: int | None = None
                       ) -> RewardTerms:
    """The terms of one finished episode and their weighted total."""
    calls = count_tool_calls(history)
    target = tool_call_target(task, config, row_target)
    tool_call = tool_call_reward(calls, target) if target is not None else None
    judge: float | None = None
    judge_error: str | None = None
    if config.judge is not None and config.judge_weight:
        try:
            judge = await judge_score(config.judge, result.instruction, history)
        except Exception as exc:  # noqa: BLE001 - a judge hiccup must not stop training
            judge_error = f"{type(exc).__name__}: {exc}"
    outcome = float(result.success) if config.outcome == "success" else result.reward
    total = (config.outcome_weight * outcome
             + config.tool_call_weight * (tool_call or 0.0)
             + config.judge_weight * (judge or 0.0))
    return RewardTerms(outcome=outcome, tool_calls=calls, tool_call_target=target,
                       tool_call=tool_call, judge=judge, judge_error=judge_error, total=total)


__all__ = [
    "DEFAULT_JUDGE_PROMPT", "JudgeConfig", "RewardConfig", "RewardTerms", "count_tool_calls",
    "judge_messages", "judge_score", "parse_judge_score", "reward_terms", "targets_from_run",
    "tool_call_reward", "tool_call_target", "transcript",
]
