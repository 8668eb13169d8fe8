"""TRL environments (`agent.trainers.trl_env`): the cookbook's tool, real MiniWoB episodes,
and a CPU GRPO run with the tiny Qwen3-VL.

Parity: the tool TRL builds from `ComputerUseEnvironment.computer_use` (transformers'
get_json_schema on its signature and docstring) carries the cookbook's names, enums,
types and descriptions as `actions.schemas` declares them; the differences TRL imposes
are listed in `test_the_tool_is_the_cookbook_s`. Plumbing: the episode and GRPO tests run
the real MiniWoB pages in Chromium (in process, and behind `cua serve-env` on loopback).

Stand-in: Qwen3VLProcessor cannot be built here (its video processor needs torchvision,
which has no build for this CPU torch), so the GRPO test gives TRL an image-only subclass
of it (`ImageOnlyQwen3VLProcessor`): the same chat template, tokenizer and image
processor, no video processor.
"""

from __future__ import annotations

import inspect
import os

import pytest

from agent.trainers.trl_env import (
    COMPUTER_USE_TOOL,
    EPISODE_OVER,
    MOBILE_USE_TOOL,
    ComputerUseEnvironment,
    MobileUseEnvironment,
)
from tests.conftest_env_service import TOKEN, running_service
from tests.conftest_miniwob import miniwob_env, miniwob_suite  # noqa: F401
from tests.conftest_policy import one_torch_thread, tiny_model_dir  # noqa: F401


def _tools_trl_sees(cls) -> list[str]:
    """The methods GRPOTrainer exposes as tools (trl 1.16: public functions of the class
    but reset and get_reward)."""
    return [name for name, _ in inspect.getmembers(cls, predicate=inspect.isfunction)
            if name not in ("reset", "get_reward") and not name.startswith("_")]


@pytest.mark.parametrize(("cls", "tool"), [(ComputerUseEnvironment, COMPUTER_USE_TOOL),
                                           (MobileUseEnvironment, MOBILE_USE_TOOL)])
def test_the_tool_is_the_cookbook_s(cls, tool):
    """Same name, description, parameters (in order), types, enums, and required list.
    What transformers' schema builder changes: optional parameters get "nullable": true
    and line breaks inside parameter descriptions become spaces."""
    from transformers.utils import get_json_schema

    name = tool["function"]["name"]
    assert _tools_trl_sees(cls) == [name]
    built = get_json_schema(getattr(cls, name))["function"]
    want = tool["function"]
    assert (built["name"], built["description"]) == (want["name"], want["description"])
    assert built["parameters"]["required"] == want["parameters"]["required"] == ["action"]
    built_props, want_props = built["parameters"]["properties"], want["parameters"]["properties"]
    assert list(built_props) == list(want_props)
    for key, spec in want_props.items():
        got = built_props[key]
        assert got["type"] == spec["type"] and got.get("enum") == spec.get("enum"), key
        assert got["description"] == " ".join(spec["description"].split()), key


def test_an_episode_through_the_tool(miniwob_env, miniwob_suite):  # noqa: F811
    """reset(**row) -> instruction + first screenshot; a bad call executes nothing; the
    oracle's click, sent as a cookbook call on the 0-1000 grid, solves the task; the
    reward is the evaluator's; after the episode no call executes."""
    from actions.contracts import EpisodeState

    env = ComputerUseEnvironment(environment=miniwob_env, suite=miniwob_suite)
    first = env.reset(prompt=[{"role": "user", "content": ""}], task_id="click-button", seed=2)
    assert [part["type"] for part in first] == ["text", "image"]
    assert first[1]["image"].size == (160, 210)
    assert "No action was executed" in env.computer_use(action="left_click")
    assert env.steps == 0

    task = miniwob_suite.make_task("click-button", 2)
    observation = env._observation
    state = EpisodeState(episode_id="e", task=task, instruction=observation.instruction,
                         observation=observation)
    click = miniwob_suite.make_expert(miniwob_env).act([state])[0].actions[0]
    grid = [round(click.x * 1000 / 160), round(click.y * 1000 / 210)]
    reply = env.computer_use(action="left_click", coordinate=grid)
    assert reply[0]["type"] == "image" and reply[-1] == {"type": "text", "text": EPISODE_OVER}
    assert env.get_reward() == 1.0
    assert env.computer_use(action="left_click", coordinate=grid) == EPISODE_OVER
    assert env.steps == 1


def _image_only_processor(model_dir):
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
        def __init__(self, image_processor, tokenizer, chat_template=None):
            ProcessorMixin.__init__(self, image_processor, tokenizer,
                                    chat_template=chat_template)
            self.video_processor = None
            for kind in ("image", "video"):
                setattr(self, f"{kind}_token", f"<|{kind}_pad|>")
                setattr(self, f"{kind}_token_id",
                        tokenizer.convert_tokens_to_ids(f"<|{kind}_pad|>"))
            for edge in ("start", "end"):
                setattr(self, f"vision_{edge}_token", f"<|vision_{edge}|>")
                setattr(self, f"vision_{edge}_token_id",
                        tokenizer.convert_tokens_to_ids(f"<|vision_{edge}|>"))

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return ImageOnlyQwen3VLProcessor(AutoImageProcessor.from_pretrained(model_dir), tokenizer,
                                     tokenizer.chat_template)


@pytest.mark.slow
def test_grpo_trains_on_environment_rewards(tiny_model_dir, tmp_path, one_torch_thread):  # noqa: F811
    """Two GRPO steps on CPU, environments behind `cua serve-env`: every rollout's
    get_reward reaches the trainer (its reward column), the update changes the weights,
    and the saved checkpoint loads with --policy qwen3vl.

    The random tiny model writes no tool calls, so every environment reward is the same
    (0.0) and GRPO's advantages would be zero: a second reward (completion length, which
    varies between samples) makes the update non-zero. That the environment's reward
    alone moves a model needs a model that acts; this test proves the plumbing."""
    import functools

    import torch
    from datasets import Dataset
    from transformers import Qwen3VLForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from policies.qwen3vl import Qwen3VLPolicy, QwenVLPromptEncoder
    from policies.train_sft import _save_processor_files
    from tests.conftest_policy import episode_state

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    rewards_given: list[float] = []

    class CountingEnvironment(ComputerUseEnvironment):
        def get_reward(self) -> float:
            reward = super().get_reward()
            rewards_given.append(reward)
            return reward

    def length_reward(completions, **_):
        return [len(str(c)) / 1000 for c in completions]

    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.named_parameters()}
    rows = [{"prompt": [{"role": "user", "content": ""}], "task_id": "click-test", "seed": i}
            for i in range(4)]
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2,
                      num_generations=2, max_steps=2, max_completion_length=24,
                      learning_rate=1e-2, use_cpu=True, report_to=[], logging_steps=1,
                      save_strategy="no", bf16=False, beta=0.0, max_tool_calling_iterations=1,
                      seed=0)
    with running_service(max_envs=2) as (url, app):
        trainer = GRPOTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=_image_only_processor(tiny_model_dir),
            reward_funcs=[length_reward],
            environment_factory=functools.partial(CountingEnvironment, env_url=url,
                                                  env_token=TOKEN))
        trainer.train()
        episodes = sum(s.episodes for s in app.state.pool.slots)

    logs = [h for h in trainer.state.log_history if "rewards/CountingEnvironment/mean" in h]
    assert len(logs) == 2 and episodes == len(rewards_given) == 4  # 2 steps x 2 rollouts
    assert [h["rewards/CountingEnvironment/mean"] for h in logs] == [
        sum(rewards_given[:2]) / 2, sum(rewards_given[2:]) / 2]
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())

    out = tmp_path / "checkpoint"
    trainer.model.save_pretrained(out)
    _save_processor_files(QwenVLPromptEncoder.from_pretrained(str(tiny_model_dir)),
                          str(tiny_model_dir), out)
    policy = Qwen3VLPolicy.from_options(model=str(out), device="cpu", max_new_tokens=4)
    try:
        assert policy.act([episode_state(40)])[0].response_token_ids
    finally:
        policy.close()
