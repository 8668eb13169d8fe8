"""`qwen3-computer-use`'s first step rebuilt from the cookbook's own call cell.

Reference facts: Qwen3-VL cookbooks/computer_use.ipynb as read in Firefly-llm/Qwen3-VL @
08254a9479ce9a7946f106150e124b071cd91f2c, `perform_gui_grounding_with_api`:
    computer_use = ComputerUse(cfg={"display_width_px": 1000, "display_height_px": 1000})
    system_message = NousFnCallPrompt().preprocess_fncall_messages(
        messages=[Message(role="system", content=[ContentItem(text="You are a helpful assistant.")])],
        functions=[computer_use.function], lang=None)
    messages = [{"role": "system", "content": [{"type": "text", "text": msg["text"]} for msg in ...]},
                {"role": "user", "content": [{"type": "image_url", ...},
                                             {"type": "text", "text": user_query}]}]
    client.chat.completions.create(model=model_id, messages=messages)
The user turn is the screenshot, then the raw query: no "The user query:" prefix, no
"Task progress" line.
"""

from __future__ import annotations

from policies.prompting import PromptConfig, build_prompt
from tests.conftest_policy import episode_state


def test_first_user_turn_is_the_screenshot_then_the_raw_query() -> None:
    state = episode_state().model_copy(update={"instruction": "open the third issue"})
    prompt = build_prompt(state, PromptConfig.for_profile("qwen3-computer-use"))
    system, user = prompt.messages
    assert system["role"] == "system" and system["content"].startswith(
        "You are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions")
    assert [item["type"] for item in user["content"]] == ["image", "text"]
    assert user["content"][1] == {"type": "text", "text": "open the third issue"}
