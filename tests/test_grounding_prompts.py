"""Grounding prompt profiles against the published harnesses (parity, golden text).

Sources (read with the search tools; the golden files are the references' own strings,
produced by running their prompt functions with a stub image encoder):

- tests/golden/grounding/screenspot_pro_qwen3vl_system.txt: `get_qwen3vl_prompt_msg(...)`
  system text, anaicalledsolaris/ScreenSpot-Pro-GUI-Grounding models/qwen3vl.py @
  573b40ef0425ab384b5ffc2817faafb99c1a8b60. Its tool JSON is unbalanced (one "}" short)
  and has "required"/"type" inside "properties": reproduced as written.
- tests/golden/grounding/screenspot_pro_qwen3vl_vllm_prompt.txt: that file's GUIDED_PROMPT
  (its vLLM class; it lacks "system\\n" after the first <|im_start|>, a bug of that class
  only — we reproduce the transformers class, Qwen3VLModel).
- tests/golden/grounding/screenspot_pro_qwen2_5vl_system_1234x567.txt: the system items of
  `get_qwen2_5vl_prompt_msg(image, instr, 1234, 567)` joined (the chat template joins them),
  likaixin2000/ScreenSpot-Pro-GUI-Grounding models/qwen2_5vl.py @ 588f1f25a59318d49cf2a657e8dc18529c723713.
- tests/golden/grounding/screenspot_pro_qwen2_5vl_vllm_prompt.txt: that file's GUIDED_PROMPT,
  which is the transformers class's chat-template text plus its `guide_text` prefill.

Other facts from those files: both resize the image with transformers' `smart_resize`
before the processor (qwen3vl: factor 32, min_pixels 32*32, max_pixels 99999999;
qwen2_5vl: factor 28 = patch 14 x merge 2, min_pixels = the processor's (3136),
max_pixels 99999999); the user turn is [image, instruction text]; generation is greedy
with max_new_tokens 256 (model_factory.py @ 573b40ef: `set_generation_config(
temperature=0, max_new_tokens=256)` after load); qwen3vl reads
`response.split('<tool_call>\\n')[-1]` (the last call) and divides by 1000; qwen2_5vl reads
`split('<tool_call>\\n')[1]` (the first) and divides by the resized width/height; a
4-number coordinate is a box whose centre is taken.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from actions.dialects import CoordinateConverter
from actions.observation import Size
from policies.grounding import GROUNDING_PROFILES, get_grounding_profile, read_grounding_answer

pytest_plugins = ["conftest_policy"]

GOLDEN = Path(__file__).parent / "golden" / "grounding"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def test_qwen3vl_system_text_is_the_references() -> None:
    prompt = GROUNDING_PROFILES["qwen3vl"].build(Image.new("RGB", (1234, 567)), "INSTR")
    assert prompt.messages[0] == {"role": "system",
                                  "content": golden("screenspot_pro_qwen3vl_system.txt")}
    # the vLLM class's prompt carries the same system text
    assert golden("screenspot_pro_qwen3vl_system.txt") in golden(
        "screenspot_pro_qwen3vl_vllm_prompt.txt")
    user = prompt.messages[1]["content"]
    assert [item["type"] for item in user] == ["image", "text"] and user[1]["text"] == "INSTR"
    assert len(prompt.messages) == 2  # no prefill in the transformers class


def test_qwen2_5vl_system_text_and_prefill_are_the_references() -> None:
    profile = GROUNDING_PROFILES["qwen2_5vl"]
    image = Image.new("RGB", (1234, 567))
    resized = profile.resized_size(Size(width=1234, height=567))
    prompt = profile.build(image, "INSTR")
    expected = golden("screenspot_pro_qwen2_5vl_system_1234x567.txt").replace(
        "1234x567", f"{resized.width}x{resized.height}")
    assert prompt.messages[0]["content"] == expected
    assert prompt.messages[2] == {"role": "assistant", "content": (
        '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
        '"coordinate": [')}
    assert golden("screenspot_pro_qwen2_5vl_vllm_prompt.txt").endswith(
        prompt.messages[2]["content"])


# (width, height) -> resized (width, height), worked by hand from transformers'
# smart_resize (round each side to the factor; area bounds 32*32 / 3136 .. 99999999 px
# never bind at these sizes)
@pytest.mark.parametrize(("size", "qwen3", "qwen25"), [
    ((1920, 1080), (1920, 1088), (1932, 1092)),
    ((3840, 2160), (3840, 2176), (3836, 2156)),
    ((6016, 3384), (6016, 3392), (6020, 3388)),
    ((160, 210), (160, 224), (168, 224)),  # 210 / 28 = 7.5 rounds to 8 (half to even)
])
def test_resize_as_the_harness(size: tuple[int, int], qwen3: tuple[int, int],
                               qwen25: tuple[int, int]) -> None:
    screen = Size(width=size[0], height=size[1])
    got3 = get_grounding_profile("qwen3vl").resized_size(screen)
    got25 = get_grounding_profile("qwen2_5vl").resized_size(screen)
    assert (got3.width, got3.height) == qwen3 and (got25.width, got25.height) == qwen25


def test_rendered_prompts_match_the_references(tiny_model_dir: Path) -> None:
    """Our messages through the Qwen3-VL chat template give the text the reference's
    messages give (qwen3vl), and the reference's full guided prompt (qwen2_5vl)."""
    from policies.qwen3vl import QwenVLPromptEncoder

    encoder = QwenVLPromptEncoder.from_pretrained(str(tiny_model_dir))
    image = Image.new("RGB", (1234, 567))
    ours = GROUNDING_PROFILES["qwen3vl"].build(image, "open the terminal")
    reference_messages = [
        {"role": "system", "content": [{"type": "text",
                                        "text": golden("screenspot_pro_qwen3vl_system.txt")}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:"}},
                                     {"type": "text", "text": "open the terminal"}]},
    ]
    assert encoder.render(ours.messages) == encoder.render(reference_messages)
    assert encoder.render(ours.messages).endswith(
        "<|vision_start|><|image_pad|><|vision_end|>open the terminal<|im_end|>\n"
        "<|im_start|>assistant\n")
    profile = GROUNDING_PROFILES["qwen2_5vl"]
    resized = profile.resized_size(Size(width=1234, height=567))
    guided = (golden("screenspot_pro_qwen2_5vl_vllm_prompt.txt")
              .replace("{{screen_width}}", str(resized.width))
              .replace("{{screen_height}}", str(resized.height))
              .replace("{{instruction}}", "open the terminal"))
    assert encoder.render(profile.build(image, "open the terminal").messages) == guided


CALL = '<tool_call>\n{{"name": "computer_use", "arguments": {{"action": "left_click", "coordinate": {}}}}}\n</tool_call>'


def test_read_qwen3_answers() -> None:
    converter = CoordinateConverter("qwen3", Size(width=1920, height=1080))
    answer = read_grounding_answer(CALL.format("[500, 250]"), converter)
    assert answer.point_px == (960.0, 270.0) and not answer.refused
    box = read_grounding_answer(CALL.format("[100, 100, 300, 300]"), converter)
    assert box.point_px == pytest.approx((384.0, 216.0))  # the box's centre
    two = CALL.format("[0, 0]") + "\n" + CALL.format("[1000, 1000]")
    assert read_grounding_answer(two, converter, "last").point_px == (1920.0, 1080.0)
    assert read_grounding_answer(two, converter, "first").point_px == (0.0, 0.0)
    unrounded = read_grounding_answer(CALL.format("[100.7, 3]"), converter)
    assert unrounded.point_px == pytest.approx((193.344, 3.24))  # no rounding to pixels
    refused = read_grounding_answer(CALL.format("[-1, -1]"), converter)
    assert refused.refused and refused.point_px == (-1.92, -1.08)
    for bad in ("I cannot see it", CALL.format("[1, 2, 3]"), CALL.format('"left"')):
        answer = read_grounding_answer(bad, converter)
        assert answer.point_px is None and answer.error


def test_read_qwen25_answer_in_resized_pixels() -> None:
    profile = GROUNDING_PROFILES["qwen2_5vl"]
    screen = Size(width=1920, height=1080)
    resized = profile.resized_size(screen)
    assert (resized.width, resized.height) == (1932, 1092)
    prompt = profile.build(Image.new("RGB", (1920, 1080)), "x")
    text = profile.assistant_prefill + "966, 546]}}"  # what the reference reads (cut at '}')
    answer = read_grounding_answer(text, prompt.converter, profile.read_call)
    assert answer.point_px == pytest.approx((966 / 1932 * 1920, 546 / 1092 * 1080))


def test_openai_request_continues_a_prefilled_turn() -> None:
    from policies.openai_compat import OpenAICompatOptions, OpenAICompatPolicy

    policy = OpenAICompatPolicy(OpenAICompatOptions(model="m", check_model=False,
                                                    dialect="qwen25"))
    try:
        body = policy.request_body(GROUNDING_PROFILES["qwen2_5vl"].build(
            Image.new("RGB", (64, 64)), "x"))
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["messages"][-1]["role"] == "assistant"
        plain = policy.request_body(GROUNDING_PROFILES["qwen3vl"].build(
            Image.new("RGB", (64, 64)), "x"))
        assert "continue_final_message" not in plain
        assert json.dumps(plain["messages"][1]["content"][0])[:40].startswith(
            '{"type": "image_url"')
    finally:
        policy.close()


@pytest.mark.slow
def test_prefilled_answer_parses_with_its_prefill(tiny_qwen25_dir: Path,
                                                  one_torch_thread: None) -> None:
    """In-process: the prefilled turn is continued and the recorded answer starts with the
    prefill (plumbing on the random tiny Qwen2.5-VL: its continuation is noise)."""
    from policies.qwen3vl import Qwen3VLPolicy

    policy = Qwen3VLPolicy.from_options(model=str(tiny_qwen25_dir), device="cpu", greedy=True,
                                        max_new_tokens=3)
    prompt = GROUNDING_PROFILES["qwen2_5vl"].build(Image.new("RGB", (96, 64), "white"), "x")
    text = policy.encoder.render(prompt.messages)
    assert text.endswith('<|im_start|>assistant\n<tool_call>\n{"name": "computer_use", '
                         '"arguments": {"action": "left_click", "coordinate": [')
    [output] = policy.answer([prompt])
    assert output.raw_text.startswith(GROUNDING_PROFILES["qwen2_5vl"].assistant_prefill)
    assert output.completion_tokens == 3
    policy.close()


@pytest.mark.slow
def test_served_grounding_through_the_chat_server(chat_server_url: str, tmp_path: Path) -> None:
    """`--policy openai`: concurrent requests to the loopback chat server (the tiny model
    standing in for vLLM); the qwen2_5vl profile's prefilled turn is continued and the
    recorded answer starts with the prefill (plumbing)."""
    from PIL import ImageDraw
    from typer.testing import CliRunner

    from agent.cli.main import app
    from benchmarks.grounding.runner import read_scores
    from trajectories.store import RunDir

    data = tmp_path / "set"
    (data / "images").mkdir(parents=True)
    (data / "annotations").mkdir()
    image = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(image).rectangle((40, 40, 120, 80), fill=(30, 90, 200))
    image.save(data / "images" / "s.png")
    records = [{"img_filename": "s.png", "bbox": [40, 40, 120, 80], "img_size": [320, 200],
                "instruction": f"the button {i}", "application": "a", "platform": "linux",
                "ui_type": "icon", "group": "Dev", "id": f"s{i}"} for i in range(3)]
    (data / "annotations" / "a_linux.json").write_text(json.dumps(records))
    for profile in ("qwen3vl", "qwen2_5vl"):
        out = tmp_path / profile
        result = CliRunner().invoke(app, [
            "eval", "screenspot-pro", "--data", str(data), "--policy", "openai",
            "--base-url", chat_server_url, "--model", "tiny", "--grounding-profile", profile,
            "--policy-option", "max_new_tokens=4", "--batch-size", "3", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert len(read_scores(out)) == 3
        run = RunDir(out)
        step = run.steps(run.episode_ids()[0])[0]
        assert step.output.error is None and step.output.completion_tokens == 4
        prefill = GROUNDING_PROFILES[profile].assistant_prefill
        assert step.output.raw_text.startswith(prefill)
        assert step.output.messages[0]["content"].startswith("You are a helpful assistant.")
