"""Qwen3.5 in the in-process policy: a tiny Qwen3_5ForConditionalGeneration built offline
(policies.tiny, architecture "qwen3_5"), loaded by its config like a user's checkpoint.

Plumbing, not parity: the tiny checkpoint carries the Qwen3-VL chat template (the released
Qwen3.5 template was not read here), so this proves the loading, vision inputs, batching
and the policy -> parser -> Chromium path, not Qwen3.5's own prompt format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest_engine import run_episode

from actions.dialects import Dialect
from actions.parsing import parse_tool_calls
from policies.qwen3vl import Qwen3VLPolicy
from policies.tiny import TinyQwen3VLSpec, build_tiny_qwen3vl
from tests.conftest_policy import episode_state
from tests.test_policy_e2e import _demonstrations, _finetune, _record_outputs, miniwob  # noqa: F401

pytest_plugins = ["conftest_policy"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_qwen35_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny-qwen35"),
                              TinyQwen3VLSpec(architecture="qwen3_5"))


def test_qwen35_loads_by_config_and_batches_like_single_calls(tiny_qwen35_dir: Path) -> None:
    policy = Qwen3VLPolicy.from_options(model=str(tiny_qwen35_dir), device="cpu", greedy=True,
                                        max_new_tokens=6)
    assert type(policy.generator.model).__name__ == "Qwen3_5ForConditionalGeneration"
    assert policy.dialect is Dialect.QWEN3
    states = [episode_state(20, "a"), episode_state(90, "b")]
    batched = policy.act(states)
    # Left padding must not change what the linear-attention layers compute.
    for state, together in zip(states, batched, strict=True):
        (alone,) = policy.act([state])
        assert alone.response_token_ids == together.response_token_ids
        assert together.finish_reason in {"stop", "length"} and together.images


@pytest.mark.slow
def test_finetuned_tiny_qwen35_solves_click_test(miniwob, tiny_qwen35_dir: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    """policy -> parser -> MiniWoB in Chromium, scored by the page."""
    suite, env = miniwob
    demos = _demonstrations(suite, env, (1,))
    ((state, answer),) = demos
    base = Qwen3VLPolicy.from_options(model=str(tiny_qwen35_dir), device="cpu", greedy=True)
    losses = _finetune(base, demos, 60)
    assert losses[-1] < 0.05 * losses[0], losses[::10]
    checkpoint = tmp_path / "click-test-qwen35"
    base.generator.model.save_pretrained(checkpoint)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(tiny_qwen35_dir / name, checkpoint / name)
    trained = Qwen3VLPolicy.from_options(model=str(checkpoint), device="cpu", greedy=True,
                                         max_new_tokens=64)
    outputs = _record_outputs(trained)
    result = run_episode(env, trained, suite.make_task("click-test", 1), max_steps=3,
                         platform="web")
    assert result.error is None, result.error
    assert result.success and result.steps == 1 and result.parse_errors == 0
    (step_output,) = outputs
    assert step_output.raw_text.strip() == answer
    oracle = parse_tool_calls(answer, Dialect.QWEN3, state.observation.screen_size).actions[0]
    assert (step_output.actions[0].x, step_output.actions[0].y) == (oracle.x, oracle.y)
