"""verl's agent-loop interface, written from its signatures, for machines without verl.

`agent.trainers.verl_loop.GUIAgentLoop` subclasses verl's own `AgentLoopBase` and returns
its `AgentLoopOutput` whenever verl is importable. Where it is not (this project's test
machines: verl 0.9.1 installs beside torch 2.13.0 but requires transformers<5.11, and
qwen-cua runs transformers 5.24), the loop falls back to these classes, which reproduce
what the loop relies on from verl 0.9.1 (`verl/experimental/agent_loop/agent_loop.py`,
PyPI release 0.9.1):

- `AgentLoopBase.__init__(trainer_config, server_manager, tokenizer, processor,
  dataset_cls, data_config, hf_model_type=None, **kwargs)`, keeping
  `trainer_config.config` as `self.config`, `config.actor_rollout_ref.rollout` as
  `self.rollout_config`, and `data_config.config` as `self.data_config`;
- `async run(sampling_params, **kwargs) -> AgentLoopOutput`, kwargs being a dataset row;
- `AgentLoopOutput` fields and defaults (prompt_ids, response_ids, response_mask,
  response_logprobs, multi_modal_data, reward_score, num_turns, metrics, extra_fields).

`server_manager.generate(request_id, *, prompt_ids, sampling_params, image_data=None,
...) -> TokenOutput(token_ids, log_probs, stop_reason, ...)` is duck-typed: nothing here.
The field list is pinned by tests/test_verl_loop.py against facts read from verl 0.9.1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel


class AgentLoopMetrics(BaseModel):
    generate_sequences: float = 0.0
    tool_calls: float = 0.0
    compute_score: float = 0.0
    num_preempted: int = -1


class AgentLoopOutput(BaseModel):
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    response_logprobs: list[float] | None = None
    routed_experts: Any | None = None
    multi_modal_data: dict[str, Any] | None = None
    reward_score: float | None = None
    num_turns: int = 0
    metrics: AgentLoopMetrics
    extra_fields: dict[str, Any] = {}
    mm_processor_kwargs: dict[str, Any] | None = None
    mm_processor_output: list[dict[str, Any]] | None = None


class AgentLoopBase(ABC):
    def __init__(self, trainer_config: Any, server_manager: Any, tokenizer: Any, processor: Any,
                 dataset_cls: Any = None, data_config: Any = None,
                 hf_model_type: str | None = None, **kwargs: Any) -> None:
        self.config = trainer_config.config
        self.rollout_config = self.config.actor_rollout_ref.rollout
        self.server_manager = server_manager
        self.tokenizer = tokenizer
        self.processor = processor
        self.dataset_cls = dataset_cls
        self.data_config = data_config.config if data_config is not None else None

    @abstractmethod
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        ...
