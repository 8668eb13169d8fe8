"""TRL environments (`agent.trainers.trl_env`): the prompt profile's tool, real MiniWoB
episodes under the engine's episode rule, and a CPU GRPO run whose rollouts act.

Parity: the tool TRL builds from the environment's method (transformers' get_json_schema
on its signature and docstring) carries the profile's names, enums, types and
descriptions as `actions.schemas` declares them; the differences TRL imposes are listed in
`test_the_tool_is_the_profile_s`. Real: MiniWoB pages in Chromium (in process, and behind
`cua serve-env` on loopback), TRL 1.16's GRPOTrainer and its tool loop, the tiny
Qwen3-VL (trained in the fixture to write tool calls, see `acting_model_dir`).

Stand-in: Qwen3VLProcessor cannot be built here (its video processor needs torchvision,
which has no build for this CPU torch), so the GRPO test gives TRL an image-only subclass
of it (`ImageOnlyQwen3VLProcessor`): the same chat template, tokenizer and image
processor, no video processor.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from actions.contracts import EpisodeState
from agent.engine.episode import LoopOptions
from agent.trainers.processors import image_only_processor
from agent.trainers.rewards import RewardConfig
from agent.trainers.trl_env import (
    EPISODE_OVER,
    ComputerUseEnvironment,
    MobileUseEnvironment,
    environment_class,
    reward_term_funcs,
)
from policies.profiles import get_profile
from tests.conftest_env_service import TOKEN, running_service
from tests.conftest_miniwob import miniwob_env, miniwob_suite  # noqa: F401
from tests.conftest_policy import one_torch_thread, tiny_model_dir  # noqa: F401
from trajectories.store import RunDir

ROW = {"prompt": [{"role": "user", "content": ""}]}


def _tools_trl_sees(cls) -> list[str]:
    """The methods GRPOTrainer exposes as tools (trl 1.16: public functions of the class
    but reset and get_reward)."""
    import inspect

    return [name for name, _ in inspect.getmembers(cls, predicate=inspect.isfunction)
            if name not in ("reset", "get_reward") and not name.startswith("_")]


@pytest.mark.parametrize(("cls", "profile"), [
    (ComputerUseEnvironment, "qwen3-computer-use"), (MobileUseEnvironment, "qwen3-mobile"),
    (environment_class("web", profile="qwen-cua"), "qwen-cua"),
    (environment_class("desktop", profile="osworld-qwen3vl"), "osworld-qwen3vl")],
    ids=["computer", "mobile", "qwen-cua", "osworld"])
def test_the_tool_is_the_profile_s(cls, profile):
    """Same name, description, parameters (in order), types, enums, and required list as
    the profile's tool. What transformers' schema builder changes: optional parameters
    get "nullable": true and line breaks inside parameter descriptions become spaces."""
    from transformers.utils import get_json_schema

    name = cls.tool["function"]["name"]
    assert _tools_trl_sees(cls) == [name] and cls.profile == profile
    built = get_json_schema(getattr(cls, name))["function"]
    want = cls.tool["function"]
    assert (built["name"], built["description"]) == (want["name"], want["description"])
    assert built["parameters"]["required"] == want["parameters"]["required"] == ["action"]
    built_props, want_props = built["parameters"]["properties"], want["parameters"]["properties"]
    assert list(built_props) == list(want_props)
    for key, spec in want_props.items():
        got = built_props[key]
        assert got["type"] == spec["type"] and got.get("enum") == spec.get("enum"), key
        assert got["description"] == " ".join(spec["description"].split()), key


class CountingEnvironment:
    """The MiniWoB environment, counting the actions that reach it."""

    def __init__(self, env) -> None:
        self.env = env
        self.executed: list = []

    def reset(self, task):
        self.executed.clear()
        return self.env.reset(task)

    def step(self, action):
        self.executed.append(action)
        return self.env.step(action)

    def evaluate(self):
        return self.env.evaluate()

    def close(self):
        pass


def _grid(x: int, y: int, size=(160, 210)) -> list[int]:
    return [round(x * 1000 / size[0]), round(y * 1000 / size[1])]


def test_an_episode_runs_under_the_engine_rule(miniwob_env, miniwob_suite, tmp_path):  # noqa: F811
    """reset(**row) -> the profile's first turn; a call of an unknown action executes
    nothing and gets the engine's feedback; the oracle's click, sent as a cookbook call on
    the 0-1000 grid, solves the task; the reward is the evaluator's; afterwards no call
    executes; the episode is recorded as `cua eval` records one."""
    counting = CountingEnvironment(miniwob_env)
    env = ComputerUseEnvironment(environment=counting, suite=miniwob_suite,
                                 record_dir=str(tmp_path / "run"))
    first = env.reset(**ROW, task_id="click-button", seed=2)
    assert [part["type"] for part in first] == ["image", "text"]  # the cookbook's order
    assert first[0]["image"].size == (160, 210)
    cookbook = get_profile("qwen3-computer-use")
    assert first[1]["text"] == cookbook.instruction_text(env.episode.instruction, [])

    bad = env.computer_use(action="fly")
    assert "had no valid action" in bad[0]["text"] and counting.executed == []
    assert env.steps == 1  # the engine counts the unparsable output as a step

    task = miniwob_suite.make_task("click-button", 2)
    observation = env.episode.observation
    state = EpisodeState(episode_id="e", task=task, instruction=observation.instruction,
                         observation=observation)
    click = miniwob_suite.make_expert(miniwob_env).act([state])[0].actions[0]
    reply = env.computer_use(action="left_click", coordinate=_grid(click.x, click.y))
    assert reply[0]["type"] == "image" and reply[-1] == {"type": "text", "text": EPISODE_OVER}
    assert [(a.type, a.x, a.y) for a in counting.executed] == [("click", click.x, click.y)]
    assert env.get_reward() == 1.0
    assert env.computer_use(action="left_click", coordinate=[10, 10]) == EPISODE_OVER
    assert len(counting.executed) == 1 and env.steps == 2

    run = RunDir(tmp_path / "run")
    [result] = run.results()
    assert (result.task_id, result.seed, result.success, result.terminated_by) == (
        "click-button", 2, True, "done")
    assert (result.steps, result.parse_errors) == (2, 1)
    steps = run.steps(result.episode_id)
    assert [len(s.executions) for s in steps] == [0, 1]
    assert "had no valid action" in steps[0].feedback
    assert steps[1].output.prompt_profile == "qwen3-computer-use"
    assert run.episode(result.episode_id).policy == "trl"


def test_a_row_s_max_steps_reaches_the_task(miniwob_env, miniwob_suite):  # noqa: F811
    """A row with max_steps=2: two clicks execute, the second reply says the episode is
    over, and a third executes nothing (the bug: every call executed)."""
    counting = CountingEnvironment(miniwob_env)
    env = ComputerUseEnvironment(environment=counting, suite=miniwob_suite)
    env.reset(**ROW, task_id="click-test", seed=0, max_steps=2)
    assert env.episode.task.max_steps == 2
    miss = {"action": "left_click", "coordinate": [950, 950]}
    assert EPISODE_OVER not in json.dumps([p for p in env.computer_use(**miss)
                                           if p["type"] == "text"])
    assert env.computer_use(**miss)[-1] == {"type": "text", "text": EPISODE_OVER}
    assert env.computer_use(**miss) == EPISODE_OVER
    assert len(counting.executed) == 2
    assert env.get_reward() == 0.0 and env.result.terminated_by == "max_steps"


def test_parse_failures_and_time_limit_end_the_episode(miniwob_env, miniwob_suite):  # noqa: F811
    """Three calls in a row without a valid action end the episode (the engine's
    max_parse_failures); a row's time limit ends it before the next call executes."""
    counting = CountingEnvironment(miniwob_env)
    env = ComputerUseEnvironment(environment=counting, suite=miniwob_suite)
    env.reset(**ROW, task_id="click-test", seed=0)
    for _ in range(3):
        reply = env.computer_use(action="fly")
    assert reply[-1] == {"type": "text", "text": EPISODE_OVER}
    env.get_reward()
    assert env.result.terminated_by == "parse_errors" and env.result.parse_errors == 3

    # The run's time limit (LoopOptions; a row's time_limit_s reaches the task, whose
    # MiniWoB page then times out by itself).
    env = ComputerUseEnvironment(environment=counting, suite=miniwob_suite,
                                 options=LoopOptions(platform="web", time_limit_s=1e-9))
    env.reset(**ROW, task_id="click-test", seed=0)
    assert env.computer_use(action="left_click", coordinate=[500, 500]) == EPISODE_OVER
    assert counting.executed == []
    assert env.get_reward() == 0.0 and env.result.terminated_by == "time_limit"


def test_terminate_reaches_the_environment_and_the_reward_terms(miniwob_env, miniwob_suite):  # noqa: F811
    """A terminate call ends the episode (the engine's terminal rule); the tool-call term
    compares the calls with the row's target; the total follows the configured weights."""
    rewards = RewardConfig(outcome_weight=1.0, tool_call_weight=0.5)
    env = ComputerUseEnvironment(environment=miniwob_env, suite=miniwob_suite, rewards=rewards)
    env.reset(**ROW, task_id="click-test", seed=0, tool_call_target=4)
    env.computer_use(action="left_click", coordinate=[950, 950])
    assert env.computer_use(action="terminate", status="failure")[-1]["text"] == EPISODE_OVER
    total = env.get_reward()
    terms = env.reward_terms
    assert (terms.outcome, terms.tool_calls, terms.tool_call_target) == (0.0, 2, 4)
    assert terms.tool_call == 0.5 and total == pytest.approx(0.25)
    assert env.result.terminated_by == "terminate" and env.result.agent_status == "failure"
    assert [f(environments=[env]) for f in reward_term_funcs()] == [[0.0], [0.5], [None]]


# click-test, seed 0: the button's centre is at (30, 141) px of the 160x210 page, (188, 671)
# on the 0-1000 grid; (900, 100) is empty page.
HIT, MISS = [188, 671], [900, 100]


def _completion(coordinate: list[int]) -> str:
    call = {"name": "computer_use", "arguments": {"action": "left_click",
                                                  "coordinate": coordinate}}
    return f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>"


def _prompt_inputs(processor, image):
    """The first prompt exactly as GRPOTrainer renders it (the row's prompt, reset's
    content appended to its last user turn, the environment's tool)."""
    messages = ComputerUseEnvironment.dataset_prompt()
    messages[-1] = {"role": "user", "content": [
        {"type": "text", "text": ""}, {"type": "image", "image": image},
        {"type": "text", "text": get_profile(ComputerUseEnvironment.profile).instruction_text(
            "Click the button.", [])}]}
    return processor.apply_chat_template(
        messages, tools=[ComputerUseEnvironment.computer_use], add_generation_prompt=True,
        tokenize=True, return_dict=True, return_tensors="pt")


def _completion_logprob(model, processor, prompt, text: str) -> float:
    import torch

    ids = processor.tokenizer.encode(text, add_special_tokens=False)
    input_ids = torch.cat([prompt["input_ids"], torch.tensor([ids])], dim=1)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                       pixel_values=prompt["pixel_values"],
                       image_grid_thw=prompt["image_grid_thw"],
                       mm_token_type_ids=_mm_types(processor, input_ids)).logits[0]
    start = prompt["input_ids"].shape[1]
    logp = torch.log_softmax(logits[start - 1:-1].float(), dim=-1)
    return float(logp.gather(1, torch.tensor(ids).unsqueeze(1)).sum())


def _mm_types(processor, input_ids):
    import torch

    return (input_ids == processor.image_token_id).to(torch.long)


@pytest.fixture(scope="module")
def acting_model_dir(tiny_model_dir, tmp_path_factory, miniwob_suite):  # noqa: F811
    """The tiny Qwen3-VL, briefly trained (teacher forcing, in this fixture) to answer the
    click-test prompt with one of two tool calls, HIT or MISS, about equally often: a
    model that acts, whose rollouts differ in what they click."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from policies.qwen3vl import QwenVLPromptEncoder
    from policies.train_sft import _save_processor_files

    environment = miniwob_suite.make_environment()
    try:
        image = environment.reset(miniwob_suite.make_task("click-test", 0)).image().convert("RGB")
    finally:
        environment.close()
    processor = image_only_processor(tiny_model_dir)
    prompt = _prompt_inputs(processor, image)
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for step in range(120):
            target = processor.tokenizer.encode(_completion(HIT if step % 2 else MISS),
                                                add_special_tokens=False)
            input_ids = torch.cat([prompt["input_ids"], torch.tensor([target])], dim=1)
            labels = input_ids.clone()
            labels[:, :prompt["input_ids"].shape[1]] = -100
            loss = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         labels=labels, pixel_values=prompt["pixel_values"],
                         image_grid_thw=prompt["image_grid_thw"],
                         mm_token_type_ids=_mm_types(processor, input_ids)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("acting-qwen3vl")
    model.save_pretrained(out)
    _save_processor_files(QwenVLPromptEncoder.from_pretrained(str(tiny_model_dir)),
                          str(tiny_model_dir), out)
    return Path(out), image


@pytest.mark.slow
def test_grpo_rollouts_act_and_the_rewarded_call_gains(acting_model_dir, tmp_path,
                                                       one_torch_thread):  # noqa: F811
    """One GRPO step on CPU, environments behind `cua serve-env`, the environment's reward
    alone (no other reward function adds variance): the rollouts' tool calls reach the
    environment and change it (the executed clicks are the ones the model wrote; a hit
    ends the MiniWoB episode with reward 1), rewards differ within the group, and after
    the step the log-probability of the rewarded call has risen relative to the
    unrewarded one. The checkpoint loads with --policy qwen3vl."""
    import functools

    import torch
    from datasets import Dataset
    from transformers import Qwen3VLForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from policies.qwen3vl import Qwen3VLPolicy
    from tests.conftest_policy import episode_state

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    model_dir, image = acting_model_dir
    run_dir = tmp_path / "rollouts"
    terms: list = []

    class RecordingEnvironment(ComputerUseEnvironment):
        def get_reward(self):
            reward = super().get_reward()
            terms.append((self.episode.episode_id, self.reward_terms))
            return reward

    processor = image_only_processor(model_dir)
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    prompt = _prompt_inputs(processor, image)
    before = (_completion_logprob(model, processor, prompt, _completion(HIT))
              - _completion_logprob(model, processor, prompt, _completion(MISS)))
    rows = [{"prompt": ComputerUseEnvironment.dataset_prompt(), "task_id": "click-test",
             "seed": 0, "max_steps": 1}] * 8
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=8,
                      num_generations=8, max_steps=1, max_completion_length=160,
                      learning_rate=1e-3, use_cpu=True, report_to=[], logging_steps=1,
                      save_strategy="no", bf16=False, beta=0.0, max_tool_calling_iterations=1,
                      seed=0, temperature=1.0)
    with running_service(max_envs=8) as (url, app):
        trainer = GRPOTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=processor,
            environment_factory=functools.partial(RecordingEnvironment, env_url=url,
                                                  env_token=TOKEN, record_dir=str(run_dir)))
        assert trainer.reward_func_names == ["RecordingEnvironment"]  # the environment alone
        trainer.train()

    # Every rollout's episode is recorded as `cua eval` records one: the calls the model
    # wrote, the clicks executed, the screens before and after.
    run = RunDir(run_dir)
    results = {r.episode_id: r for r in run.results()}
    assert len(results) == len(terms) == 8
    executed = {}
    for episode_id in results:
        steps = run.steps(episode_id)  # max_steps=1; none if the model wrote no tool call
        if not steps:
            executed[episode_id] = None
            continue
        [step] = steps
        [call] = [json.loads(c) for c in re.findall(r"<tool_call>\n(.*)\n</tool_call>",
                                                     step.output.raw_text)]
        executed[episode_id] = call["arguments"]["coordinate"]
        if step.output.actions:
            [execution] = step.executions
            click = execution.action
            assert _grid(click.x, click.y) == call["arguments"]["coordinate"]
            changed = execution.observation.screenshot_sha256 != step.observation.screenshot_sha256
            assert changed == (call["arguments"]["coordinate"] == HIT)  # a hit changes the page
    hits = {e for e, coordinate in executed.items() if coordinate == HIT}
    assert {e: t.outcome for e, t in terms} == {e: float(e in hits) for e in results}
    assert 0 < len(hits) < 8  # rewards vary within the group
    assert sum(1 for c in executed.values() if c == MISS) >= 1

    after = (_completion_logprob(trainer.model, processor, prompt, _completion(HIT))
             - _completion_logprob(trainer.model, processor, prompt, _completion(MISS)))
    print(f"GRPO step: {len(hits)}/8 rollouts hit; log p(hit) - log p(miss): "
          f"{before:.3f} -> {after:.3f}")
    assert after > before

    out = tmp_path / "checkpoint"
    trainer.model.save_pretrained(out)
    from policies.qwen3vl import QwenVLPromptEncoder
    from policies.train_sft import _save_processor_files

    _save_processor_files(QwenVLPromptEncoder.from_pretrained(str(model_dir)),
                          str(model_dir), out)
    policy = Qwen3VLPolicy.from_options(model=str(out), device="cpu", max_new_tokens=4)
    try:
        assert policy.act([episode_state(40)])[0].response_token_ids
    finally:
        policy.close()
