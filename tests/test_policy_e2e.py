"""End to end on the real path: tiny Qwen3-VL -> Qwen3VLPolicy -> parser -> MiniWoB in Chromium.

1. The tiny model is fine-tuned for a few dozen steps (plain torch loop on CPU) to answer
   the MiniWoB click-test screenshot of one seed with the oracle's click as a <tool_call>
   (the button moves with the seed; the test trains on the seed it evaluates: a model this
   small needs far more steps to learn to *find* the button, which the self-evolving loop's
   benchmark measures instead), saved with save_pretrained, loaded back through
   Qwen3VLPolicy from the folder, and runs a whole episode that the page itself scores.
2. The untrained tiny model runs a whole episode: its garbage is recorded as parse errors
   and the episode ends cleanly.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest_engine import run_episode

from actions.contracts import EpisodeState
from actions.dialects import Dialect
from actions.parsing import parse_tool_calls, render_tool_call
from benchmarks.miniwob import MiniWoBSuite
from policies.prompting import build_prompt
from policies.qwen3vl import Qwen3VLPolicy

pytest_plugins = ["conftest_policy"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

EVAL_SEED = 1
TRAIN_SEEDS = (EVAL_SEED,)
TRAIN_STEPS = 60


@pytest.fixture(scope="module")
def miniwob():
    suite = MiniWoBSuite()
    env = suite.make_environment()
    yield suite, env
    env.close()


def _demonstrations(suite: MiniWoBSuite, env, seeds) -> list[tuple[EpisodeState, str]]:
    """(state at reset, the oracle's answer as Qwen3-VL text) for each seed."""
    expert = suite.make_expert(env)
    demos = []
    for seed in seeds:
        task = suite.make_task("click-test", seed)
        obs = env.reset(task)
        state = EpisodeState(episode_id=f"demo-{seed}", task=task, platform="web",
                             instruction=obs.instruction or task.instruction, observation=obs)
        (action,) = expert.act([state])[0].actions
        demos.append((state, render_tool_call(action, Dialect.QWEN3, obs.screen_size,
                                              platform="web")))
    return demos


def _finetune(policy: Qwen3VLPolicy, demos, steps: int) -> list[float]:
    """Teacher-forced cross-entropy on the answer tokens only, AdamW, batch = all demos."""
    import torch

    model, encoder = policy.generator.model, policy.encoder
    end_of_turn = encoder.tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for state, answer in demos:
        prompt = build_prompt(state, policy.prompt_config)
        enc = encoder.encode(prompt.messages, prompt.pil_images())
        answer_ids = encoder.tokenizer(answer, add_special_tokens=False)["input_ids"] + [end_of_turn]
        ids = torch.tensor([enc["input_ids"] + answer_ids])
        labels = torch.full_like(ids, -100)
        labels[0, -len(answer_ids):] = torch.tensor(answer_ids)
        examples.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                         "mm_token_type_ids": encoder.mm_token_type_ids(ids),
                         "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"],
                         "labels": labels})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    losses = []
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        total = 0.0
        for example in examples:
            loss = model(**example).loss / len(examples)
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(total)
    model.eval()
    return losses


def _record_outputs(policy: Qwen3VLPolicy) -> list:
    """Keep every PolicyOutput the policy returns (the loop consumes them)."""
    outputs: list = []
    act = policy.act

    def recording_act(states):
        result = act(states)
        outputs.extend(result)
        return result

    policy.act = recording_act  # type: ignore[method-assign]
    return outputs


@pytest.mark.slow
def test_finetuned_tiny_model_solves_click_test(miniwob, tiny_model_dir: Path, tmp_path: Path) -> None:
    suite, env = miniwob
    demos = _demonstrations(suite, env, TRAIN_SEEDS)
    (state, answer), = demos
    base = Qwen3VLPolicy.from_options(model=str(tiny_model_dir), device="cpu", greedy=True)
    started = time.monotonic()
    losses = _finetune(base, demos, TRAIN_STEPS)
    train_s = time.monotonic() - started
    assert losses[-1] < 0.05 * losses[0], losses[::10]
    checkpoint = tmp_path / "click-test-tiny"
    base.generator.model.save_pretrained(checkpoint)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(tiny_model_dir / name, checkpoint / name)

    trained = Qwen3VLPolicy.from_options(model=str(checkpoint), device="cpu", greedy=True,
                                         max_new_tokens=64)
    outputs = _record_outputs(trained)
    task = suite.make_task("click-test", EVAL_SEED)
    result = run_episode(env, trained, task, max_steps=3, platform="web")
    assert result.error is None, result.error
    assert result.terminated_by == "done"
    assert result.reward == 1.0 and result.success
    assert result.steps == 1 and result.parse_errors == 0
    # the click came from the model's text through the qwen3 grid conversion
    (step_output,) = outputs
    assert step_output.raw_text.strip() == answer
    clicked = step_output.actions[0]
    oracle_click = parse_tool_calls(answer, Dialect.QWEN3, state.observation.screen_size).actions[0]
    assert (clicked.x, clicked.y) == (oracle_click.x, oracle_click.y)
    assert step_output.response_token_ids[-1] == trained.encoder.tokenizer.convert_tokens_to_ids("<|im_end|>")
    print(f"fine-tuned {TRAIN_STEPS} steps in {train_s:.0f} s; loss {losses[0]:.2f} -> {losses[-1]:.4f}")


@pytest.mark.slow
def test_untrained_tiny_model_episode_ends_cleanly_with_parse_errors(miniwob, tiny_model_dir: Path) -> None:
    suite, env = miniwob
    policy = Qwen3VLPolicy.from_options(model=str(tiny_model_dir), device="cpu", max_new_tokens=24,
                                        seed=0)
    outputs = _record_outputs(policy)
    result = run_episode(env, policy, suite.make_task("click-test", 5), max_steps=5,
                         max_parse_failures=3, platform="web")
    assert result.error is None
    assert result.terminated_by == "parse_errors"
    assert result.steps == 3 and result.parse_errors == 3 and not result.success
    assert len(outputs) == 3
    for out in outputs:
        assert out.actions == [] and out.parse_errors and out.raw_text
        assert len(out.response_token_ids) == len(out.response_logprobs) > 0
    # later prompts replay earlier screenshots and answers
    assert [ref.step for ref in outputs[2].images] == [0, 1, 2]
