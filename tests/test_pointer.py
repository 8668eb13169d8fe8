"""The mouse pointer is something environments know: the web environment tracks its mouse,
the observation reports it, and a cookbook-style left_click_drag that names only its target
drags from there even when no earlier model action placed the pointer (plumbing on
Chromium; the cookbook's "drag from the cursor" semantics are in test_reference_corpus)."""

from __future__ import annotations

from actions.contracts import EpisodeState
from actions.models import MouseMove
from policies.prompting import PromptConfig, build_prompt, parse_output
from tests.conftest_web import site, web_env, web_task  # noqa: F401


def drag_to(x: int | float, y: int | float) -> str:
    return ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click_drag", '
            f'"coordinate": [{x}, {y}]}}}}\n</tool_call>')


def test_web_reports_the_pointer_and_a_target_only_drag_starts_there(web_env, site):  # noqa: F811
    obs = web_env.reset(web_task(f"{site}/events.html"))
    assert obs.pointer is not None  # known from the start: no model action needed
    obs = web_env.step(MouseMove(x=30, y=80))  # inside the page's logging pad
    assert obs.pointer == (30, 80)
    state = EpisodeState(episode_id="p", task=web_task(f"{site}/events.html"), platform="web",
                         instruction="drag", observation=obs)  # no history at all
    prompt = build_prompt(state, PromptConfig.for_profile("qwen3-computer-use"))
    assert prompt.pointer == (30, 80)
    output = parse_output(drag_to(*prompt.converter.to_model(150, 120)), prompt)
    assert output.parse_errors == []
    (drag,) = output.actions
    assert (drag.start_x, drag.start_y) == (30, 80)
    assert abs(drag.end_x - 150) <= 1 and abs(drag.end_y - 120) <= 1  # one grid step
    after = web_env.step(drag)
    assert after.pointer == (drag.end_x, drag.end_y)
    events = web_env.page.evaluate("() => window.log")
    down = next(e for e in events if e["type"] == "mousedown")
    assert (down["x"], down["y"]) == (30, 80)
