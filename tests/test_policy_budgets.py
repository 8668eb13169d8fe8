"""Generation budgets, Thinking checkpoints, finish reasons, and Qwen2.5-VL screenshots
resized on our side (plumbing against the loopback chat server and the tiny models)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actions.dialects import QWEN25_FACTOR, Dialect
from actions.observation import Size
from policies.openai_compat import OpenAICompatOptions, OpenAICompatPolicy
from policies.prompting import (
    ImageBudget,
    generation_budget,
    is_thinking_checkpoint,
    prompt_config_for,
)
from policies.qwen3vl import Qwen3VLPolicy
from tests.conftest_policy import REPO_ROOT, episode_state, observation, wait_for_line

pytest_plugins = ["conftest_policy"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

THINKING_TEMPLATE_TAIL = ("{%- if add_generation_prompt %}\n"
                          "    {{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}\n")


def test_thinking_checkpoints_are_detected_by_name_or_template() -> None:
    assert is_thinking_checkpoint("Qwen/Qwen3-VL-8B-Thinking")
    assert is_thinking_checkpoint("/models/x", chat_template=THINKING_TEMPLATE_TAIL)
    assert not is_thinking_checkpoint("Qwen/Qwen3-VL-8B-Instruct",
                                      chat_template="{{- '<|im_start|>assistant\\n' }}")


def test_budget_is_explicit_else_thinking_else_the_profile() -> None:
    assert generation_budget(None, "qwen-cua", thinking=False) == 512
    assert generation_budget(None, "osworld-qwen3vl", thinking=False) == 32768  # its max_tokens
    assert generation_budget(None, "qwen3-mobile", thinking=True) == 32768
    assert generation_budget(64, "qwen-cua", thinking=True) == 64
    policy = OpenAICompatPolicy(OpenAICompatOptions(
        model="Qwen/Qwen3-VL-8B-Thinking", check_model=False))
    assert policy.thinking and policy.request_body(
        policy_prompt(policy))["max_tokens"] == 32768


def policy_prompt(policy: OpenAICompatPolicy):
    from policies.prompting import build_prompt

    return build_prompt(episode_state(), policy.prompt_config)


def test_profile_settings_unless_the_options_say_otherwise() -> None:
    budget = ImageBudget()
    mobile = prompt_config_for(OpenAICompatOptions(model="m", prompt_profile="qwen3-mobile"),
                               budget)
    assert (mobile.profile, mobile.dialect, mobile.history_images) == (
        "qwen3-mobile", Dialect.QWEN3_999, 0)
    explicit = prompt_config_for(OpenAICompatOptions(
        model="m", prompt_profile="qwen3-mobile", history_images=3, dialect="qwen3"), budget)
    assert (explicit.dialect, explicit.history_images) == (Dialect.QWEN3, 3)
    legacy = prompt_config_for(OpenAICompatOptions(model="m"), budget)
    assert (legacy.profile, legacy.dialect, legacy.history_images) == ("qwen-cua",
                                                                       Dialect.QWEN3, 2)
    # A Qwen2.5-VL checkpoint writes resized-image pixels whatever the profile.
    qwen25 = prompt_config_for(OpenAICompatOptions(model="m", prompt_profile="osworld-qwen3vl"),
                               budget, dialect=Dialect.QWEN25)
    assert qwen25.dialect is Dialect.QWEN25 and qwen25.history_images == 4


def test_finish_reason_is_recorded_in_process_and_served(chat_server: str,
                                                         tiny_model_dir: Path) -> None:
    """'length' when the budget cut the response, 'stop' at the end-of-turn token; the
    served policy reports what the server said (the chat server says 'length' when cut)."""
    states = [episode_state(20, "a"), episode_state(90, "b")]
    local = Qwen3VLPolicy.from_options(model=str(tiny_model_dir), greedy=True, max_new_tokens=3,
                                       device="cpu")
    served = OpenAICompatPolicy.from_options(base_url=chat_server, model="tiny", greedy=True,
                                             max_new_tokens=3)
    eos = set(local.generator.eos_token_ids)
    for mine, theirs in zip(local.act(states), served.act(states), strict=True):
        cut = not (mine.response_token_ids and mine.response_token_ids[-1] in eos)
        assert mine.finish_reason == ("length" if cut else "stop")
        assert theirs.finish_reason == mine.finish_reason
        assert theirs.response_token_ids == mine.response_token_ids


@pytest.fixture(scope="module")
def qwen25_server(tiny_qwen25_dir: Path) -> Iterator[str]:
    """The tiny Qwen2.5-VL served with a LARGER image budget than the client assumes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "policies.chat_server", str(tiny_qwen25_dir), "--port", "0",
         "--served-model-name", "tiny25", "--device", "cpu", "--threads", "1",
         "--max-pixels", "150000"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield wait_for_line(process, "READY ", 180).split(" ", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_qwen25_screenshots_reach_the_server_at_our_resized_size(qwen25_server: str,
                                                                 tiny_qwen25_dir: Path) -> None:
    """A 560x420 screenshot: our budget (max 50,000 px) resizes it to 252x168, 9x6 = 54
    image tokens; the server's budget (max 150,000 px) would resize the original to 420x308
    (165 tokens) and the model would answer about an image our converter does not assume.
    Sent pre-resized, the server's resize is a no-op: it sees exactly 54 image tokens."""
    from transformers import AutoTokenizer

    image_pad = AutoTokenizer.from_pretrained(tiny_qwen25_dir).convert_tokens_to_ids(
        "<|image_pad|>")
    size = Size(width=560, height=420)
    state = episode_state().model_copy(update={"observation": observation(100, size)})
    budget = ImageBudget(factor=QWEN25_FACTOR, min_pixels=3136, max_pixels=50_000)
    assert budget.image_size(size) == Size(width=252, height=168)
    counts = {}
    for resize in (True, False):
        policy = OpenAICompatPolicy.from_options(
            base_url=qwen25_server, model="tiny25", dialect="qwen25", max_pixels=50_000,
            greedy=True, max_new_tokens=1, resize_images=resize)
        assert policy.resize_images is resize
        (out,) = policy.act([state])
        assert out.error is None and out.prompt_token_ids
        counts[resize] = out.prompt_token_ids.count(image_pad)
    assert counts == {True: 54, False: 165}
    default = OpenAICompatPolicy.from_options(base_url=qwen25_server, model="tiny25",
                                              dialect="qwen25", check_model=False)
    assert default.resize_images  # on by default for qwen25
