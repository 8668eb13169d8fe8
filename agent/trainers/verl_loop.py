"""verl's agent loop for GUI episodes: `GUIAgentLoop` (registered as ``gui_agent``).

verl (https://github.com/verl-project/verl, tested against the 0.9.1 release) runs one
`AgentLoopBase.run(sampling_params, **row)` coroutine per sample of a batch and trains on
what it returns. `GUIAgentLoop.run` drives one episode of a qwen-cua environment served by
`cua serve-env` (the trainer's GPU nodes; the environments live on CPU nodes) under the
engine's episode rule: the episode is an `agent.engine.episode.EpisodeRun` driven by
`EpisodeRun.run`, the loop `cua eval` runs, with verl's server manager as the policy.
So the row's ``max_steps``/``time_limit_s`` reach the task, and the step budget, time
limit, parse-failure stop, terminal actions, feedback and records are the engine's.

1. lease an environment and begin the episode of the task the dataset row names
   (``task_id``, ``seed``, optional ``max_steps``, ``time_limit_s``,
   ``tool_call_target``; top-level columns or inside ``extra_info``);
2. build the first prompt as the prompt profile does (``prompt_profile``; default the
   platform's reference profile), every screenshot kept, and tokenize it with the image
   pads expanded as the model's processor expands them with ``data.mm_processor_kwargs``
   (``grid_t*grid_h*grid_w / merge_size**2`` per image: what verl recomputes from
   ``multi_modal_data`` for training). A first prompt longer than
   ``rollout.prompt_length`` raises `PromptTooLong`, as verl's own initial-token builder
   does for image prompts (verl 0.9.1 pads prompts without cutting them);
3. per turn, ask ``server_manager.generate(request_id, prompt_ids=…, sampling_params=…,
   image_data=[every screenshot so far, in order])`` with ONE request id for the whole
   episode (sticky routing keeps the prefix cache); the text is parsed in the profile's
   dialect and applied by the engine; the next screenshot (with the engine's feedback,
   for profiles that show it) is appended as a user turn;
4. return `AgentLoopOutput`: `prompt_ids` (the first prompt), `response_ids` (every
   generated token, mask 1, and every observation token, mask 0), `response_logprobs`
   (0.0 for observation tokens), ``multi_modal_data={"images": [...]}``,
   ``mm_processor_kwargs``, `reward_score` (the reward terms' total,
   `agent.trainers.rewards`; verl then skips its own reward function), `num_turns`,
   `metrics`, and ``extra_fields`` (the task, the episode's result, every reward term).

A turn whose tokens would not fit `rollout.response_length` is not added: the episode
ends as ``max_steps`` (the trainer's budget; ``extra_fields['gui_ended_by']`` says
``response_length``), since a cut image would break verl's re-processing. The per-step
form (one output per step, sliding-window screenshots) is not implemented: verl 0.9.1's
AgentLoopWorker expects one output per sample.

Configuration (verl's agent-loop config file; see agent/trainers/verl_agent_loops.yaml):
``env_url`` (the service), ``env_token`` (default: $CUA_ENV_TOKEN), ``max_new_tokens``
per turn, ``prompt_profile``, ``dialect`` / ``system_prompt`` (over the profile's),
``rewards`` (a `RewardConfig`), ``record_dir`` (record every episode as `cua eval` does),
``max_parse_failures``. verl passes every key of the entry as a keyword argument, and its
constructor arguments change across releases: this class takes ``**kwargs`` and hands
the rest to verl's base class.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from actions.contracts import EpisodeState, PolicyOutput
from agent.engine.episode import DEFAULT_MAX_PARSE_FAILURES, EpisodeRun, LoopOptions
from agent.service.client import EnvServiceClient
from agent.service.protocol import TOKEN_ENV_VAR
from agent.service.remote_host import RemoteHost
from agent.trainers.episodes import (
    RowTask,
    episode_prompt,
    open_run,
    output_for,
    prompt_config,
    start_episode,
)
from agent.trainers.rewards import RewardConfig, reward_terms
from policies.profiles import get_profile
from policies.prompting import PromptConfig, defuse_control_tokens
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


class PromptTooLong(ValueError):
    """The first prompt does not fit `rollout.prompt_length` (what verl 0.9.1's own
    initial-token builder raises for a multimodal prompt: image tokens cannot be cut)."""


class GUIAgentLoop(AgentLoopBase):
    """One GUI episode per sample, against an environment of `cua serve-env`, under the
    engine's episode rule (see the module docstring)."""

    def __init__(self, *args: Any, env_url: str | None = None, env_token: str | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, prompt_profile: str | None = None,
                 dialect: str | None = None, system_prompt: str | None = None,
                 rewards: dict[str, Any] | None = None, record_dir: str | None = None,
                 max_parse_failures: int = DEFAULT_MAX_PARSE_FAILURES,
                 name: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("tools", None)  # verl >= 0.9 hands every loop its tool list: ours is the GUI
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
        self.prompt_profile = prompt_profile
        self.dialect, self.system_prompt = dialect, system_prompt
        self.rewards = RewardConfig.model_validate(_plain(rewards) or {})
        self.record_dir = record_dir
        self.max_parse_failures = max_parse_failures
        processor = self.processor
        tokenizer = getattr(processor, "tokenizer", None) or self.tokenizer
        if processor is None or getattr(processor, "image_processor", None) is None:
            raise ValueError("GUIAgentLoop needs the model's multimodal processor (a Qwen-VL "
                             "checkpoint): verl passed none")
        self.processor_kwargs = dict(_plain(getattr(self, "mm_processor_kwargs", None)) or {})
        self.encoder = QwenVLPromptEncoder(
            tokenizer, ImagesAsVerlProcessesThem(processor, self.processor_kwargs),
            getattr(processor, "chat_template", None) or tokenizer.chat_template,
            size_override(processor.image_processor, self.processor_kwargs))

    @property
    def response_length(self) -> int:
        return int(self.rollout_config.response_length)

    @property
    def prompt_length(self) -> int:
        return int(self.rollout_config.prompt_length)

    def prompt_config(self, platform: str) -> PromptConfig:
        """The profile's settings (default: the platform's reference profile), the
        config file's dialect/system prompt over them, the processor's image budget."""
        base = prompt_config(self.prompt_profile, platform)
        return PromptConfig.for_profile(base.profile, dialect=self.dialect,
                                        system_prompt=self.system_prompt,
                                        image_budget=self.encoder.budget)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        row = RowTask.of(kwargs)
        async with EnvServiceClient(self.env_url, self.env_token) as client:
            host = await RemoteHost.start(0, client)
            try:
                return await self._episode(host, row, sampling_params)
            finally:
                await host.close()

    async def _episode(self, host: RemoteHost, row: RowTask,
                       sampling_params: dict[str, Any]) -> AgentLoopOutput:
        platform = host.env.platform or "web"
        run_writer = open_run(self.record_dir, AGENT_NAME, {
            "profile": self.prompt_profile, "rewards": self.rewards.model_dump(mode="json")})
        episode = start_episode(host, row, policy_name=AGENT_NAME, run_writer=run_writer,
                                options=LoopOptions(platform=platform,
                                                    max_parse_failures=self.max_parse_failures))
        turns = _Turns(self, episode, self.prompt_config(platform), sampling_params)
        started = time.monotonic()
        await episode.run(turns.act)
        if turns.fatal is not None:
            raise turns.fatal
        result = await episode.finish()
        terms = await reward_terms(self.rewards, result=result, task=episode.task,
                                   history=episode.history, row_target=row.tool_call_target)
        tokens = turns.tokens
        env_s = time.monotonic() - started - turns.generate_s
        return AgentLoopOutput(
            prompt_ids=tokens.prompt_ids,
            response_ids=tokens.response_ids,
            response_mask=tokens.response_mask,
            response_logprobs=tokens.response_logprobs,
            multi_modal_data={"images": tokens.images},
            reward_score=terms.total,
            num_turns=1 + turns.generated + turns.observations,  # user + assistant turns
            metrics={"generate_sequences": turns.generate_s, "tool_calls": env_s},
            mm_processor_kwargs=self.processor_kwargs or None,
            extra_fields={
                "gui_task": episode.task.key, "gui_episode_id": episode.episode_id,
                "gui_steps": result.steps, "gui_terminated_by": result.terminated_by,
                "gui_ended_by": turns.ended_by or result.terminated_by,
                "gui_parse_errors": result.parse_errors, "gui_success": result.success,
                "gui_reward_terms": terms.model_dump(),
            },
        )


class _Turns:
    """The trainer's side of one episode: `act` is the engine's policy call, answered by
    verl's server manager on the growing token sequence."""

    def __init__(self, loop: GUIAgentLoop, episode: EpisodeRun, config: PromptConfig,
                 sampling_params: dict[str, Any]) -> None:
        self.loop = loop
        self.episode = episode
        self.config = config
        self.sampling_params = sampling_params
        self.request_id = uuid.uuid4().hex  # one per episode: every turn extends one prefix
        self.tokens = EpisodeTokens(loop.encoder, loop.response_length)
        self.generated = self.observations = 0
        self.generate_s = 0.0
        self.ended_by: str | None = None
        self.fatal: Exception | None = None

    async def act(self, state: EpisodeState) -> PolicyOutput | None:
        tokens = self.tokens
        if not state.history:
            prompt = episode_prompt(state, self.config)
            tokens.start(prompt.messages, prompt.pil_images())
            if len(tokens.prompt_ids) > self.loop.prompt_length:
                self.fatal = PromptTooLong(
                    f"the first prompt of {state.task.key} has {len(tokens.prompt_ids)} tokens, "
                    f"more than rollout.prompt_length={self.loop.prompt_length}; image tokens "
                    "cannot be cut: lower the screenshots' max_pixels "
                    "(data.mm_processor_kwargs) or raise the prompt length")
                raise self.fatal
        else:
            profile = get_profile(self.config.profile)
            feedback = state.history[-1].feedback if profile.replay_feedback else None
            if not tokens.add_observation(feedback, state.observation.image().convert("RGB")):
                self.ended_by = "response_length"
                return None
            self.observations += 1
        if tokens.room <= 0:
            self.ended_by = "response_length"
            return None
        params = {**self.sampling_params,
                  "max_tokens": min(self.loop.max_new_tokens, tokens.room)}
        started = time.monotonic()
        output = await self.loop.server_manager.generate(
            request_id=self.request_id, prompt_ids=tokens.sequence, sampling_params=params,
            image_data=list(tokens.images))
        latency = time.monotonic() - started
        self.generate_s += latency
        self.generated += 1
        token_ids = list(output.token_ids)
        tokens.add_generated(token_ids, output.log_probs)
        text = self.loop.encoder.tokenizer.decode(token_ids, skip_special_tokens=True)
        cut = len(token_ids) >= params["max_tokens"] and (
            not token_ids or token_ids[-1] != tokens.end_of_turn_id)
        return output_for(text, state, self.config, response_token_ids=token_ids,
                          response_logprobs=output.log_probs, latency_s=latency,
                          completion_tokens=len(token_ids), model=AGENT_NAME,
                          finish_reason="length" if cut else "stop")


class ImagesAsVerlProcessesThem:
    """The model's image processor, called the way verl 0.9.1 recomputes the training
    inputs from ``multi_modal_data`` (AgentLoopWorker._compute_multi_modal_inputs: the
    whole processor on the text and images with ``data.mm_processor_kwargs``), so that the
    rollout's image pads are the grids verl trains with, whichever of those kwargs the
    processor honours. Everything else is the image processor's."""

    def __init__(self, processor: Any, processor_kwargs: dict[str, Any]) -> None:
        self.processor = processor
        self.processor_kwargs = processor_kwargs
        self.image_processor = processor.image_processor
        self.image_token = getattr(processor, "image_token", None) or "<|image_pad|>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.image_processor, name)

    def __call__(self, images: list[Any], return_tensors: str = "pt", **_: Any) -> dict[str, Any]:
        out = self.processor(text=[self.image_token * len(images)], images=images,
                             **{**self.processor_kwargs, "return_tensors": return_tensors})
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}


def _plain(value: Any) -> Any:
    """An OmegaConf node (what verl's config loader passes) as plain dicts and lists."""
    try:
        from omegaconf import OmegaConf
    except ImportError:
        return value
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def size_override(image_processor: Any, processor_kwargs: dict[str, Any]
                  ) -> dict[str, int] | None:
    """The image size bounds verl's processor applies with `data.mm_processor_kwargs`
    (``min_pixels``/``max_pixels`` or ``size``), so that the rollout's image pads match
    the grids verl recomputes from ``multi_modal_data`` for training."""
    size = processor_kwargs.get("size")
    low, high = processor_kwargs.get("min_pixels"), processor_kwargs.get("max_pixels")
    if size is None and low is None and high is None:
        return None
    current = dict(getattr(image_processor, "size", None) or {})
    size = dict(size or {})
    return {"shortest_edge": int(low or size.get("shortest_edge") or current["shortest_edge"]),
            "longest_edge": int(high or size.get("longest_edge") or current["longest_edge"])}
