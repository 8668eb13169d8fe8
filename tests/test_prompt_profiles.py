"""Prompt profiles: each profile's full rendered prompt for a fixed three-step history.

Parity: every golden file under tests/golden/profile-*.json was checked against the
reference code named in its header (repo, path, commit): the system text character for
character, the order of text and images in each turn, the history wording and which
screenshots are replayed. Regenerate a golden only on purpose:
`CUA_REGENERATE_GOLDENS=1 python -m pytest tests/test_prompt_profiles.py` and review the
diff against the reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from actions.contracts import PolicyOutput, StepHistory
from policies.profiles import (
    PROFILES,
    UnknownProfile,
    action_sentence,
    default_profile_for_suite,
    get_profile,
)
from policies.prompting import PromptConfig, build_prompt
from tests.conftest_policy import episode_state, observation

GOLDEN_DIR = Path(__file__).parent / "golden"

# Three finished steps, written the way the references' models answer (Thought/Action lines,
# one tool call), the second with a <think> block and agent feedback.
HISTORY_TEXTS = (
    'Thought: The search box is at the top.\nAction: "Click the search box."\n<tool_call>\n'
    '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 60]}}'
    '\n</tool_call>',
    '<think>secret reasoning</think>Thought: Now type.\nAction: Type "qwen" into the box.\n'
    '<tool_call>\n{"name": "computer_use", "arguments": {"action": "type", "text": "qwen"}}'
    '\n</tool_call>',
    'Action: Press Enter.\n<tool_call>\n{"name": "computer_use", "arguments": {"action": '
    '"key", "keys": ["enter"]}}\n</tool_call>',
)


def three_step_state(platform: str = "desktop"):
    history = [
        StepHistory(index=i, observation=observation(10 + 10 * i),
                    output=PolicyOutput(raw_text=text, thought=text.split("\n")[0]),
                    feedback="Action 1 failed: element not found" if i == 1 else None)
        for i, text in enumerate(HISTORY_TEXTS)
    ]
    state = episode_state(button_x=60).model_copy(update={
        "history": history, "step_index": 3, "platform": platform,
        "instruction": "Search for qwen."})
    return state


def rendered(profile: str, platform: str) -> dict:
    """The prompt as data: each image replaced by the step whose screenshot it is."""
    prompt = build_prompt(three_step_state(platform), PromptConfig.for_profile(profile))
    steps = iter(ref.step for ref in prompt.images)
    messages = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image", "step": next(steps)} if item["type"] == "image"
                       else item for item in content]
        messages.append({"role": message["role"], "content": content})
    return {"profile": profile, "platform": platform, "dialect": prompt.converter.dialect.value,
            "messages": messages}


CASES = [(name, platform) for name in PROFILES
         for platform in (("mobile",) if name == "qwen3-mobile" else ("desktop",))]


@pytest.mark.parametrize(("profile", "platform"), CASES)
def test_rendered_prompt_equals_golden(profile: str, platform: str) -> None:
    """Parity (against the reference facts recorded in each golden's header)."""
    path = GOLDEN_DIR / f"profile-{profile}.json"
    got = rendered(profile, platform)
    if os.environ.get("CUA_REGENERATE_GOLDENS"):
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, "source": old.get("source", PROFILES[profile].sources),
                                    "notes": old.get("notes", []), **got},
                                   indent=1, ensure_ascii=False) + "\n")
    golden = json.loads(path.read_text())
    assert golden["source"], "a golden names its reference"
    assert {k: golden[k] for k in got} == got


def test_mobile_system_text_is_the_cookbook_literal() -> None:
    """Parity: the mobile cookbook's system_prompt literal (mobile_agent.ipynb,
    QwenLM/Qwen3-VL@96588727), kept verbatim in the golden's `reference_system`."""
    golden = json.loads((GOLDEN_DIR / "profile-qwen3-mobile.json").read_text())
    assert golden["messages"][0]["content"] == golden["reference_system"]


def test_suite_defaults_and_unknown_names() -> None:
    assert default_profile_for_suite("osworld") == "osworld-qwen3vl"
    assert default_profile_for_suite("android") == "qwen3-mobile"
    assert default_profile_for_suite("androidworld") == "qwen3-mobile"
    for suite in ("web", "desktop", "miniwob"):
        assert default_profile_for_suite(suite) == "qwen3-computer-use"
    with pytest.raises(UnknownProfile, match="use one of qwen-cua"):
        get_profile("nope")


def test_template_hash_changes_with_any_template() -> None:
    hashes = {name: profile.template_hash() for name, profile in PROFILES.items()}
    assert len(set(hashes.values())) == len(hashes)
    assert all(len(h) == 16 for h in hashes.values())


def test_action_sentence_reads_the_action_line_like_osworld() -> None:
    assert action_sentence(HISTORY_TEXTS[0]) == '"Click the search box."'
    assert action_sentence("<think>Action: no</think>action: lower case") == "action: lower case"
    assert action_sentence("no action line") is None


def test_steps_before_the_replayed_window_are_previous_actions() -> None:
    """Parity: OSWorld's Qwen3VLAgent and GUI-Owl's build_messages list steps older than
    the replayed window as "Step i: <action>" lines joined by newlines ("None" if none);
    OSWorld takes the "Action:" line, GUI-Owl the text between "Action:" and "<tool_call>"."""
    state = three_step_state()
    osworld = build_prompt(state, PromptConfig.for_profile("osworld-qwen3vl", history_images=1))
    assert osworld.messages[1]["content"][1]["text"].endswith(
        'Previous actions:\nStep 1: "Click the search box."\nStep 2: Type "qwen" into the box.')
    assert [ref.step for ref in osworld.images] == [2, 3]
    owl = build_prompt(state, PromptConfig.for_profile("gui-owl", history_images=1))
    assert owl.messages[1]["content"][0]["text"].endswith(
        'Previous actions:\nStep 1: "Click the search box."\nStep 2: Type "qwen" into the box.')


def test_expert_answers_follow_the_profile_response_format() -> None:
    from actions.models import Click, Type

    calls = "<tool_call>\n{}\n</tool_call>"
    actions = [Click(x=3, y=4), Type(text="hi")]
    assert PROFILES["qwen3-mobile"].expert_answer("Tap it.", actions, calls) == (
        'Thought: Tap it.\nAction: Click at (3, 4). Type "hi".\n' + calls)
    assert PROFILES["osworld-qwen3vl"].expert_answer("ignored", actions[:1], calls) == (
        "Action: Click at (3, 4).\n" + calls)
    assert PROFILES["qwen-cua"].expert_answer("I click.", actions, calls) == "I click.\n" + calls
    assert PROFILES["qwen3-computer-use"].expert_answer("", actions, calls) == calls
