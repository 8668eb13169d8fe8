"""Qwen3VLPolicy on the tiny checkpoint: batching, token-level records, loading errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from policies.prompting import SamplingParams
from policies.qwen3vl import PolicyLoadError, Qwen3VLPolicy, fold_sampling_options
from policies.registry import make_policy
from tests.conftest_policy import episode_state

pytest_plugins = ["conftest_policy"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def greedy_policy(tiny_model_dir: Path) -> Qwen3VLPolicy:
    return Qwen3VLPolicy.from_options(model=str(tiny_model_dir), greedy=True, max_new_tokens=12,
                                      device="cpu")


def test_loads_by_model_type_with_cpu_defaults(greedy_policy: Qwen3VLPolicy) -> None:
    import torch

    assert greedy_policy.generator.model_type == "qwen3_vl"
    assert greedy_policy.dialect == "qwen3"
    assert greedy_policy.generator.dtype == torch.float32  # auto on CPU
    assert type(greedy_policy.generator.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert greedy_policy.prompt_config.image_budget.factor == 32


def test_batched_act_records_tokens_and_matches_single_calls(greedy_policy: Qwen3VLPolicy) -> None:
    # Different button positions and instructions -> different prompt lengths -> padding.
    states = [episode_state(20, "a"), episode_state(90, "b", instruction="Click the button now please."),
              episode_state(50, "c")]
    batched = greedy_policy.act(states)
    assert len(batched) == 3
    tokenizer = greedy_policy.encoder.tokenizer
    for state, out in zip(states, batched, strict=True):
        assert out.prompt_token_ids and out.response_token_ids
        assert out.prompt_tokens == len(out.prompt_token_ids)
        assert out.completion_tokens == len(out.response_token_ids) <= 12
        assert len(out.response_logprobs) == len(out.response_token_ids)
        assert all(lp <= 0.0 and math.isfinite(lp) for lp in out.response_logprobs)
        prompt_text = tokenizer.decode(out.prompt_token_ids)
        assert prompt_text.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools")
        assert prompt_text.endswith("<|vision_end|><|im_end|>\n<|im_start|>assistant\n")
        assert state.instruction in prompt_text
        assert tokenizer.pad_token_id not in out.prompt_token_ids  # padding removed
        assert out.messages[1]["content"][1]["type"] == "image"
        assert out.images[0].step == 0 and out.latency_s > 0 and out.model
        # the untrained model writes no valid tool call
        assert not out.actions and out.parse_errors
    # Left padding must not change what each prompt produces.
    for state, out in zip(states, batched, strict=True):
        single = greedy_policy.act([state])[0]
        assert single.prompt_token_ids == out.prompt_token_ids
        assert single.response_token_ids == out.response_token_ids
        assert single.response_logprobs == pytest.approx(out.response_logprobs, abs=1e-3)


def test_image_tokens_follow_the_budget(tiny_model_dir: Path) -> None:
    policy = Qwen3VLPolicy.from_options(model=str(tiny_model_dir), greedy=True, max_new_tokens=1,
                                        device="cpu", min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 12)
    out = policy.act([episode_state()])[0]
    image_id = policy.encoder.image_token_id
    n_image_tokens = sum(1 for t in out.prompt_token_ids if t == image_id)
    budget = policy.prompt_config.image_budget
    assert n_image_tokens == budget.image_tokens(episode_state().observation.screenshot_size) <= 12


def test_sampling_with_seed_is_reproducible(tiny_model_dir: Path) -> None:
    policy = make_policy("qwen3vl", model=str(tiny_model_dir), max_new_tokens=8, device="cpu",
                         temperature=1.0, top_p=0.95, top_k=50, presence_penalty=1.5, seed=7)
    first = policy.act([episode_state()])[0]
    second = policy.act([episode_state()])[0]
    assert first.response_token_ids == second.response_token_ids
    assert policy.options.sampling.presence_penalty == 1.5 and policy.options.sampling.do_sample


def test_fold_sampling_options() -> None:
    options = fold_sampling_options({"model": "m", "greedy": True, "temperature": None, "seed": 3})
    assert options["sampling"] == SamplingParams.greedy_decoding(seed=3)
    assert "temperature" not in options and "greedy" not in options


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="cannot load a model config"):
        Qwen3VLPolicy.from_options(model=str(tmp_path / "nowhere"))


def test_unsupported_model_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(PolicyLoadError, match="'gpt2'.*qwen2_5_vl, qwen3_5, qwen3_5_moe, qwen3_vl, qwen3_vl_moe"):
        Qwen3VLPolicy.from_options(model=str(tmp_path))


def test_qwen25_checkpoint_uses_its_class_and_pixel_dialect(tiny_qwen25_dir: Path) -> None:
    policy = Qwen3VLPolicy.from_options(model=str(tiny_qwen25_dir), greedy=True,
                                        max_new_tokens=4, device="cpu")
    assert type(policy.generator.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert policy.dialect == "qwen25"
    budget = policy.prompt_config.image_budget
    assert budget.factor == 28
    out = policy.act([episode_state()])[0]
    # 160x210 -> 168x224 on the 28-px grid: 6 x 8 merged tokens, and the tool says so
    assert sum(1 for t in out.prompt_token_ids if t == policy.encoder.image_token_id) == 48
    assert "The screen's resolution is 168x224." in out.messages[0]["content"]
    assert len(out.response_token_ids) == len(out.response_logprobs) > 0


def test_recorded_messages_re_encode_to_the_recorded_prompt_ids(greedy_policy: Qwen3VLPolicy) -> None:
    """What training exports rely on: the recorded messages (image references) plus the
    screenshots they name re-tokenize to exactly the prompt ids the model was fed."""
    from actions.contracts import PolicyOutput, StepHistory
    from tests.conftest_policy import observation

    state = episode_state(30)
    history = [StepHistory(index=0, observation=observation(60),
                           output=PolicyOutput(raw_text="<think>x</think>I click.\n<tool_call>\n{}\n</tool_call>"),
                           feedback="Action 1 failed")]
    state = state.model_copy(update={"history": history})
    out = greedy_policy.act([state])[0]
    screenshots = {ref.sha256: png for ref, png in zip(
        out.images, [observation(60).screenshot_png, state.observation.screenshot_png], strict=True)}
    import io

    from PIL import Image

    images = [Image.open(io.BytesIO(screenshots[ref.sha256])).convert("RGB") for ref in out.images]
    again = greedy_policy.encoder.encode(out.messages, images)
    assert again["input_ids"] == out.prompt_token_ids


def test_moe_checkpoint_loads_with_the_moe_class(tmp_path: Path) -> None:
    from policies.tiny import TinyQwen3VLSpec, build_tiny_qwen3vl

    folder = build_tiny_qwen3vl(tmp_path / "moe", TinyQwen3VLSpec(architecture="qwen3_vl_moe"))
    policy = Qwen3VLPolicy.from_options(model=str(folder), greedy=True, max_new_tokens=4,
                                        device="cpu")
    assert type(policy.generator.model).__name__ == "Qwen3VLMoeForConditionalGeneration"
    assert policy.dialect == "qwen3"
    out = policy.act([episode_state(), episode_state(80, "b")])
    assert all(len(o.response_token_ids) == len(o.response_logprobs) > 0 for o in out)


def test_replies_never_contain_vision_tokens(tiny_model_dir: Path) -> None:
    """A sampled <|video_pad|> (or any token standing for image/video input) would make
    the next step's prompt, which carries the reply, fail to encode; generation suppresses
    them even when the model prefers them above everything else."""
    from policies.qwen3vl import VISION_TOKENS, vision_token_ids

    policy = Qwen3VLPolicy.from_options(model=str(tiny_model_dir), greedy=True, max_new_tokens=6,
                                        device="cpu")
    tokenizer = policy.encoder.tokenizer
    ids = vision_token_ids(tokenizer)
    assert ids == sorted(tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS)

    def prefer_vision_tokens(_module, _inputs, logits):
        logits[..., ids] += 1e4
        return logits

    policy.generator.model.lm_head.register_forward_hook(prefer_vision_tokens)
    out = policy.act([episode_state()])[0]
    assert len(out.response_token_ids) == 6
    assert not set(out.response_token_ids) & set(ids)
