"""verl's agent loop for GUI episodes: `GUIAgentLoop` (registered as ``gui_agent``).

verl (https://github.com/verl-project/verl, tested against the 0.9.1 release) runs one
`AgentLoopBase.run(sampling_params, **row)` coroutine per sample of a batch and trains on
what it returns. `GUIAgentLoop.run` drives one episode of a qwen-cua environment served by
`cua serve-env` (the trainer's GPU nodes; the environments live on CPU nodes):

1. lease an environment and reset it to the task the dataset row names
   (``task_id``, ``seed``, optional ``max_steps``; top-level columns or inside
   ``extra_info``);
2. build the first prompt exactly as qwen-cua's policies do (`policies.prompting`: the
   cookbook's system prompt with the ``computer_use``/``mobile_use`` tool, the
   instruction, the first screenshot) and tokenize it with the image pads expanded as the
   model's processor expands them (``grid_t*grid_h*grid_w / merge_size**2`` per image);
3. per turn, ask ``server_manager.generate(request_id, prompt_ids=…, sampling_params=…,
   image_data=[every screenshot so far, in order])`` with ONE request id for the whole
   episode (sticky routing keeps the prefix cache), parse the tool calls into canonical
   actions, execute them, and append the next screenshot (with the loop's feedback for
   parse or action errors) as a user turn;
4. return `AgentLoopOutput`: `prompt_ids` (the first prompt), `response_ids` (every
   generated token, mask 1, and every observation token, mask 0), `response_logprobs`
   (0.0 for observation tokens), ``multi_modal_data={"images": [...]}``, `reward_score`
   from the environment's evaluator, `num_turns`, `metrics`.

The history is append-only (every screenshot stays in the context, as in verl's own
multi-turn loops); a turn whose tokens would not fit `rollout.response_length` ends the
episode instead of being cut (a cut image would break verl's re-processing). The per-step
form (one output per step, sliding-window screenshots) is not implemented: verl 0.9.1's
AgentLoopWorker expects one output per sample.

Configuration (verl's agent-loop config file; see agent/trainers/verl_agent_loops.yaml):
``env_url`` (the service), ``env_token`` (default: $CUA_ENV_TOKEN), ``max_new_tokens``
per turn, ``dialect``, ``system_prompt``. verl passes every key of the entry as a keyword
argument, and its constructor arguments change across releases: this class takes
``**kwargs`` and hands the rest to verl's base class.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from actions.contracts import EpisodeState, Task
from actions.dialects import Dialect
from actions.models import TERMINAL_ACTION_TYPES
from actions.observation import Observation
from actions.parsing import ParsedResponse, parse_tool_calls
from agent.service.client import AsyncRemoteEnvironment, EnvServiceClient
from agent.service.protocol import TOKEN_ENV_VAR, ResetRequest, TaskOverrides
from policies.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    PromptConfig,
    build_prompt,
    defuse_control_tokens,
)
from policies.qwen3vl import QwenVLPromptEncoder

logger = logging.getLogger(__name__)

try:  # verl's own classes when verl is installed; our copy of its interface otherwise
    from verl.experimental.agent_loop.agent_loop import (  # type: ignore[import-not-found]
        AgentLoopBase,
        AgentLoopOutput,
    )

    VERL_AVAILABLE = True
except ImportError:
    from agent.trainers.verl_interface import AgentLoopBase, AgentLoopOutput

    VERL_AVAILABLE = False

AGENT_NAME = "gui_agent"
DEFAULT_MAX_NEW_TOKENS = 512


def task_of_row(row: dict[str, Any]) -> ResetRequest:
    """The task a dataset row names: task_id, seed, max_steps (top level or extra_info)."""
    extra = row.get("extra_info") or {}
    fields = {**extra, **{k: v for k, v in row.items() if v is not None}}
    if "task_id" not in fields:
        raise ValueError("the dataset row names no task: give it a 'task_id' column (or "
                         "extra_info.task_id), plus optional 'seed' and 'max_steps'")
    return ResetRequest(task_id=str(fields["task_id"]), seed=int(fields.get("seed", 0)),
                        overrides=TaskOverrides(max_steps=fields.get("max_steps")))


def feedback_for(parsed: ParsedResponse, action_error: str | None) -> str | None:
    """What the next user turn tells the model, in the wording of the episode loop."""
    lines: list[str] = []
    if not parsed.actions:
        reasons = "; ".join(parsed.errors) or "no action found in the output"
        lines.append(f"Your last output had no valid action ({reasons}). "
                     "Reply with exactly one valid tool call.")
    elif parsed.errors:
        lines.append("Some of your tool calls could not be parsed and were skipped: "
                     + "; ".join(parsed.errors))
    if action_error:
        lines.append(action_error)
    return "\n".join(lines) or None


class EpisodeTokens:
    """The token sequence of one multi-turn episode as verl trains on it.

    `prompt_ids` is the first prompt; `response_ids` grows by generated tokens (mask 1,
    their logprobs) and observation tokens (mask 0, logprob 0.0); `images` holds every
    screenshot in the order its pads appear.
    """

    def __init__(self, encoder: QwenVLPromptEncoder, response_length: int) -> None:
        self.encoder = encoder
        self.response_length = response_length
        tokenizer = encoder.tokenizer
        self.end_of_turn_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._newline = tokenizer.encode("\n", add_special_tokens=False)
        self._end_of_turn = tokenizer.encode("<|im_end|>\n", add_special_tokens=False)
        self.prompt_ids: list[int] = []
        self.response_ids: list[int] = []
        self.response_mask: list[int] = []
        self.response_logprobs: list[float] = []
        self.images: list[Any] = []

    @property
    def sequence(self) -> list[int]:
        return self.prompt_ids + self.response_ids

    @property
    def room(self) -> int:
        return self.response_length - len(self.response_ids)

    def start(self, messages: list[dict[str, Any]], images: list[Any]) -> None:
        self.prompt_ids = list(self.encoder.encode(messages, images)["input_ids"])
        self.images = list(images)

    def add_generated(self, token_ids: list[int], logprobs: list[float] | None) -> None:
        self.response_ids += token_ids
        self.response_mask += [1] * len(token_ids)
        if logprobs is None or len(logprobs) != len(token_ids):
            logprobs = [0.0] * len(token_ids)  # a backend without logprobs
        self.response_logprobs += list(logprobs)

    def add_observation(self, text: str | None, image: Any) -> bool:
        """Append a user turn with `text` and `image`; False (nothing added) if it does not
        fit in the response budget with room for at least one generated token."""
        close = (self._newline if self.response_ids and self.response_ids[-1] ==
                 self.end_of_turn_id else self._end_of_turn)
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": defuse_control_tokens(text + "\n")})
        content.append({"type": "image", "image": image})
        turn = self.encoder.encode([{"role": "user", "content": content}], [image])["input_ids"]
        ids = close + list(turn)
        if len(ids) >= self.room:
            return False
        self.response_ids += ids
        self.response_mask += [0] * len(ids)
        self.response_logprobs += [0.0] * len(ids)
        self.images.append(image)
        return True


class GUIAgentLoop(AgentLoopBase):
    """One GUI episode per sample, against an environment of `cua serve-env`."""

    def __init__(self, *args: Any, env_url: str | None = None, env_token: str | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, dialect: str = "qwen3",
                 system_prompt: str = DEFAULT_SYSTEM_PROMPT, name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        env_url = env_url or os.environ.get("CUA_ENV_URL")
        if not env_url:
            raise ValueError("GUIAgentLoop needs env_url (in the agent-loop config file, or "
                             "$CUA_ENV_URL): the address of a `cua serve-env` service")
        token = env_token or os.environ.get(TOKEN_ENV_VAR)
        if not token:
            raise ValueError(f"GUIAgentLoop needs the service's token: env_token in the "
                             f"agent-loop config file, or ${TOKEN_ENV_VAR}")
        self.env_url, self.env_token = env_url, token
        self.max_new_tokens = max_new_tokens
        processor = self.processor
        tokenizer = getattr(processor, "tokenizer", None) or self.tokenizer
        if processor is None or getattr(processor, "image_processor", None) is None:
            raise ValueError("GUIAgentLoop needs the model's multimodal processor (a Qwen-VL "
                             "checkpoint): verl passed none")
        self.encoder = QwenVLPromptEncoder(
            tokenizer, processor.image_processor,
            getattr(processor, "chat_template", None) or tokenizer.chat_template)
        self.prompt_config = PromptConfig(dialect=Dialect.coerce(dialect),
                                          system_prompt=system_prompt,
                                          history_images=1_000_000,  # append-only history
                                          image_budget=self.encoder.budget)

    @property
    def response_length(self) -> int:
        return int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        request = task_of_row(kwargs)
        async with EnvServiceClient(self.env_url, self.env_token) as client:
            env = await client.lease()
            try:
                return await self._episode(env, request, sampling_params)
            finally:
                await env.close()

    async def _episode(self, env: AsyncRemoteEnvironment, request: ResetRequest,
                       sampling_params: dict[str, Any]) -> AgentLoopOutput:
        request_id = uuid.uuid4().hex  # one per episode: every turn extends one prefix
        timings = {"generate_sequences": 0.0, "tool_calls": 0.0}
        started = time.monotonic()
        observation = await env.reset(request)
        timings["tool_calls"] += time.monotonic() - started
        task: Task = env.task  # type: ignore[assignment]
        state = EpisodeState(episode_id=request_id, task=task,
                             instruction=observation.instruction or task.instruction,
                             observation=observation, platform=env.platform)
        prompt = build_prompt(state, self.prompt_config)
        tokens = EpisodeTokens(self.encoder, self.response_length)
        tokens.start(prompt.messages, prompt.pil_images())
        turns, observation_turns, steps, parse_failures = 0, 0, 0, 0
        ended_by = "max_steps"
        while True:
            if tokens.room <= 0:
                ended_by = "response_length"
                break
            params = {**sampling_params, "max_tokens": min(self.max_new_tokens, tokens.room)}
            started = time.monotonic()
            output = await self.server_manager.generate(
                request_id=request_id, prompt_ids=tokens.sequence, sampling_params=params,
                image_data=list(tokens.images))
            timings["generate_sequences"] += time.monotonic() - started
            turns += 1
            tokens.add_generated(list(output.token_ids), output.log_probs)
            text = self.encoder.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            parsed = parse_tool_calls(
                text, self.prompt_config.dialect, observation.screen_size,
                self.prompt_config.image_budget.image_size(observation.screenshot_size))
            parse_failures += not parsed.actions
            started = time.monotonic()
            observation, action_error, finished = await self._act(env, parsed, observation)
            timings["tool_calls"] += time.monotonic() - started
            steps += 1
            if finished is not None:
                ended_by = finished
                break
            if steps >= task.max_steps:
                break
            if not tokens.add_observation(feedback_for(parsed, action_error),
                                          observation.image().convert("RGB")):
                ended_by = "response_length"
                break
            observation_turns += 1
        started = time.monotonic()
        score = await env.evaluate()
        timings["tool_calls"] += time.monotonic() - started
        return AgentLoopOutput(
            prompt_ids=tokens.prompt_ids,
            response_ids=tokens.response_ids,
            response_mask=tokens.response_mask,
            response_logprobs=tokens.response_logprobs,
            multi_modal_data={"images": tokens.images},
            reward_score=score,
            num_turns=1 + turns + observation_turns,  # user + assistant turns, as verl counts
            metrics=timings,
            extra_fields={"gui_task": task.key, "gui_steps": steps, "gui_ended_by": ended_by,
                          "gui_parse_failures": parse_failures},
        )

    @staticmethod
    async def _act(env: AsyncRemoteEnvironment, parsed: ParsedResponse, observation: Observation
                   ) -> tuple[Observation, str | None, str | None]:
        """Execute the parsed actions: (new observation, action error, why it ended|None)."""
        for index, action in enumerate(parsed.actions):
            if action.type in TERMINAL_ACTION_TYPES:
                await env.notify_terminal(action)
                return observation, None, action.type
            observation = await env.step(action)
            if observation.action_error:
                return observation, (f"Action {index + 1} ({action.type}) failed: "
                                     f"{observation.action_error}"), None
            if observation.done:
                return observation, None, "done"
        return observation, None, None
