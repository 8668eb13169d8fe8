"""The Qwen3-VL report's grounding prompt (Appendix B.11) as the default grounding
profile for Qwen3-VL checkpoints, with `terminate` read as a refusal.

Reference facts: the English text of the appendix as an OSWorld-G evaluation script quotes
it (found with find_string "avoid edges unless asked"; index file id 55944043921, its
repository not named by the index), kept below as that script's own template
(`SYSTEM_PROMPT_TEMPLATE`, a str.format template: doubled braces) and rebuilt here as
the script builds it: `make_system_prompt(img_width, img_height)` with the screenshot's
own size (`image.size`); messages [system, user: [image, instruction]]; the first
`<tool_call>` read (`re.search`); `_check_refusal`: `args.get("action") == "terminate"`;
a point is `round(coord / 1000 * img_width)` (the 0..1000 grid); the processor's
`IMAGE_MAX_TOKEN_NUM = 10000` (10,240,000 px); `--max-new-tokens` default 1024.
The structure matches ../shared/published-results.md (the report read in translation).
"""

from __future__ import annotations

import pytest
from PIL import Image

from agent.cli.grounding import _profile_for
from benchmarks.grounding.data import GroundingSample, Region
from benchmarks.grounding.metric import judge
from benchmarks.grounding.runner import PolicyGrounder
from policies.grounding import get_grounding_profile, read_grounding_answer

REFERENCE_TEMPLATE = """You may call one or more functions to assist with the user query.
You are provided with function signatures within <tools> . . . </tools> XML tags:
<tools> {{ "name":"computer_use", "description": "Use a mouse to interact with a computer.
The screen's resolution is {img_width}x{img_height}." "notes": "Click
with the cursor tip centered on targets; avoid edges unless asked. Do not use
other tools (type, key, scroll, left_click_drag). Only left_click and mouse_move
are allowed. If you can't find the element, terminate and report failure.",
"parameters":{{ "type":"object", "required":["action"], "properties":{{ "action":{{
"type":"string", "enum":["mouse_move","left_click"], "description":"The
action to perform." }}, "coordinate":{{ "type":"array", "description":"(x,
y): pixels from left/top. Required for action=mouse_move and action=left_click." }} }} }}
}}
</tools>
For each function call, return a JSON object with function name and arguments within <tool_call>
. . . </tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>
Additionally, if you think the task is infeasible (e.g., the task is not related to the image), return:
<tool_call>
{{"name": "computer_use", "arguments": {{"action": "terminate", "status": "failure"}}}}
</tool_call>"""

REFUSE = ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", '
          '"status": "failure"}}\n</tool_call>')


def test_report_prompt_is_the_references_text_with_the_screenshots_size() -> None:
    """Parity: the system text is the reference's template formatted with the screenshot's
    own size; the user turn is [image, instruction]; 1024 new tokens, first call read."""
    profile = get_grounding_profile("qwen3vl-report")
    image = Image.new("RGB", (2880, 1800), "white")
    prompt = profile.build(image, "the save button")
    system, user = prompt.messages
    assert system == {"role": "system",
                      "content": REFERENCE_TEMPLATE.format(img_width=2880, img_height=1800)}
    assert [item["type"] for item in user["content"]] == ["image", "text"]
    assert user["content"][1]["text"] == "the save button"
    assert (profile.read_call, profile.max_new_tokens, profile.resize_max_pixels) == (
        "first", 1024, 10_240_000)
    # the 0..1000 grid over the screenshot: round(coord / 1000 * size)
    answer = read_grounding_answer(
        '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
        '"coordinate": [175, 500]}}\n</tool_call>', prompt.converter, profile.read_call,
        profile.terminate_refuses)
    assert answer.point_px == pytest.approx((504.0, 900.0))


def test_terminate_is_a_refusal_and_scores_the_refusal_category() -> None:
    """Parity with `_check_refusal`: a terminate call is the model refusing — correct on
    a refusal sample, wrong on a target; the ScreenSpot-Pro author's profile (which
    offers no terminate) keeps reading it as no answer."""
    report = get_grounding_profile("qwen3vl-report")
    prompt = report.build(Image.new("RGB", (100, 100)), "x")
    answer = read_grounding_answer(REFUSE, prompt.converter, report.read_call,
                                   report.terminate_refuses)
    assert answer.refused and answer.point_px is None
    assert judge(Region(kind="refusal"), answer.point_px, answer.refused) == "correct"
    box = Region(kind="box", box=(0, 0, 50, 50))
    assert judge(box, answer.point_px, answer.refused) == "wrong"
    author = get_grounding_profile("qwen3vl")
    other = read_grounding_answer(REFUSE, author.build(Image.new("RGB", (100, 100)), "x")
                                  .converter, author.read_call, author.terminate_refuses)
    assert not other.refused and other.error


class _Qwen3Policy:
    name = "q"

    class options:  # noqa: N801 - the attribute a served policy carries
        dialect = "qwen3"

    def answer(self, prompts):
        from actions.contracts import PolicyOutput

        return [PolicyOutput(raw_text=REFUSE) for _ in prompts]


def test_report_prompt_is_the_default_for_qwen3vl_and_refuses_through_the_runner() -> None:
    policy = _Qwen3Policy()
    assert _profile_for(None, policy) == "qwen3vl-report"
    grounder = PolicyGrounder(policy, get_grounding_profile(_profile_for(None, policy)))
    sample = GroundingSample(sample_id="s", benchmark="osworld-g",
                             instruction="a thing not on screen",
                             image_path="x.png", region=Region(kind="refusal"))
    [prediction] = grounder.ground([(sample, Image.new("RGB", (64, 64)))])
    assert prediction.answer.refused
