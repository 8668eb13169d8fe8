"""Parsing Qwen tool calls, rendering them back, and the never-raises guarantee."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions import (
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    Navigate,
    OpenApp,
    ParsedResponse,
    Scroll,
    Size,
    Swipe,
    SystemButton,
    Terminate,
    Type,
    Wait,
    parse_tool_calls,
    render_response,
    render_tool_call,
)
from actions.dialects import CoordinateConverter
from actions.models import ACTION_TYPES
from tests.conftest_actions import actions_on, setups

SCREEN = Size(width=1920, height=1080)


def call(args: dict, name: str = "computer_use") -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def parse(text: str, **kw) -> ParsedResponse:
    kw.setdefault("screen_size", SCREEN)
    return parse_tool_calls(text, **kw)


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_render_then_parse_is_identity_on_fine_grids(data) -> None:
    """Every action, every dialect, every platform: exact round trip when the dialect's
    grid is at least as fine as the screen."""
    dialect, screen, image, platform = data.draw(setups(fine=True))
    action = data.draw(actions_on(screen))
    text = render_tool_call(action, dialect, screen, image, platform)
    parsed = parse_tool_calls(text, dialect, screen, image)
    assert parsed.errors == [], text
    assert parsed.warnings == [], text
    assert parsed.actions == [action], text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_is_stable_after_one_quantization(data) -> None:
    """On coarse grids (a 4K screen on the 1000 grid) the first trip may move a point by
    up to half a grid step; after that, render -> parse is the identity."""
    dialect, screen, image, platform = data.draw(setups(fine=False))
    action = data.draw(actions_on(screen))
    first = parse_tool_calls(render_tool_call(action, dialect, screen, image, platform),
                             dialect, screen, image)
    assert first.errors == [] and first.warnings == []
    assert len(first.actions) == 1
    quantized = first.actions[0]
    assert type(quantized) is type(action)
    converter = CoordinateConverter(dialect, screen, image)
    extent_x, extent_y = converter.model_extent
    tolerance_x = screen.width / extent_x / 2 + 1 if dialect != "normalized" else 1
    tolerance_y = screen.height / extent_y / 2 + 1 if dialect != "normalized" else 1
    for field, value in action.model_dump().items():
        other = getattr(quantized, field)
        if field.endswith("x") and isinstance(value, int) and field != "max":
            assert abs(other - value) <= tolerance_x, field
        elif field.endswith("y") and isinstance(value, int):
            assert abs(other - value) <= tolerance_y, field
        else:
            assert other == value, field
    second = parse_tool_calls(render_tool_call(quantized, dialect, screen, image, platform),
                              dialect, screen, image)
    assert second.actions == [quantized]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), thought=st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="<>{}`"), max_size=80))
def test_render_response_round_trips_thought_and_actions(data, thought: str) -> None:
    dialect, screen, image, platform = data.draw(setups(fine=True))
    actions = data.draw(st.lists(actions_on(screen), min_size=0, max_size=4))
    text = render_response(thought, actions, dialect, screen, image, platform)
    parsed = parse_tool_calls(text, dialect, screen, image)
    assert parsed.actions == actions
    assert parsed.thought == thought.strip()
    assert parsed.errors == []


ONE_OF_EACH = [
    Click(x=10, y=20, button="middle", clicks=2), MouseMove(x=0, y=998),
    Drag(start_x=1, start_y=2, end_x=300, end_y=400),
    Scroll(direction="right", amount=7, x=5, y=5), Type(text="héllo\nwörld 🙂"),
    Key(keys=("ctrl", "shift", "t")), LongPress(x=3, y=4, duration_s=2.5),
    Swipe(start_x=500, start_y=900, end_x=500, end_y=100, duration_s=0.3),
    SystemButton(button="menu"), OpenApp(name="Clock"), Navigate(url="https://example.com"),
    Wait(seconds=0.5), Answer(text=""), Terminate(status="failure"),
    # Keys that look like other things on some tool: the menu key, the plus key, back-ish.
    Key(keys=("menu",)), Key(keys=("+",)), Key(keys=("ctrl", "+")), Key(keys=("space",)),
]


def test_one_of_each_covers_every_action_type() -> None:
    assert {a.type for a in ONE_OF_EACH} == {cls.model_fields["type"].default
                                             for cls in ACTION_TYPES}


@pytest.mark.parametrize("platform", ["desktop", "web", "mobile"])
@pytest.mark.parametrize("dialect,image", [("qwen3", None), ("qwen3_999", None),
                                           ("qwen25", Size(width=1920, height=1088)),
                                           ("normalized", None)])
@pytest.mark.parametrize("action", ONE_OF_EACH, ids=lambda a: a.type)
def test_every_action_type_round_trips_in_every_dialect(action, dialect: str, image, platform: str
                                                        ) -> None:
    """Deterministic companion of the property tests: on a screen the grid resolves (the
    999 grid resolves screens up to 999 px), each action comes back exactly."""
    screen = Size(width=999, height=999) if dialect.startswith("qwen3") else SCREEN
    text = render_tool_call(action, dialect, screen, image, platform)
    parsed = parse_tool_calls(text, dialect, screen, image)
    assert (parsed.actions, parsed.errors, parsed.warnings) == ([action], [], []), text


# ----------------------------------------------------------------------------- leniency


def test_cookbook_output_with_think_and_thought() -> None:
    text = ("<think>The search box is at the top.</think>\nI will click the search box.\n"
            + call({"action": "left_click", "coordinate": [500, 100]}))
    parsed = parse(text)
    assert parsed.think == "The search box is at the top."
    assert parsed.thought == "I will click the search box."
    assert parsed.actions == [Click(x=960, y=108)]


def test_qwen3_thinking_output_without_opening_think_tag() -> None:
    parsed = parse("reasoning here</think>\n\n" + call({"action": "wait", "time": 2}))
    assert parsed.think == "reasoning here"
    assert parsed.thought == ""
    assert parsed.actions == [Wait(seconds=2)]


def test_several_calls_and_missing_closing_tag() -> None:
    text = (call({"action": "left_click", "coordinate": [10, 10]})
            + '\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "type", '
              '"text": "hello"}}\n'
            + '<tool_call>{"name": "computer_use", "arguments": {"action": "key", "keys": ["Return"]}}')
    parsed = parse(text)
    assert parsed.errors == []
    assert parsed.actions == [Click(x=19, y=11), Type(text="hello"), Key(keys=("enter",))]


def test_json_in_code_fences_without_tags() -> None:
    text = ('Clicking OK.\n```json\n{"name": "computer_use", "arguments": {"action": '
            '"right_click", "coordinate": [250, 750]}}\n```\nthen scrolling\n```\n'
            '{"name": "computer_use", "arguments": {"action": "scroll", "pixels": -3}}\n```')
    parsed = parse(text)
    assert parsed.actions == [Click(x=480, y=810, button="right"),
                              Scroll(direction="down", amount=3)]
    assert parsed.thought == "Clicking OK.\n\nthen scrolling"


def test_fenced_json_inside_tool_call_tags() -> None:
    text = '<tool_call>\n```json\n{"name": "mobile_use", "arguments": {"action": "system_button", "button": "Back"}}\n```\n</tool_call>'
    parsed = parse(text)
    assert parsed.actions == [SystemButton(button="back")]
    assert parsed.errors == [] and parsed.warnings == []


def test_trailing_commas_and_arguments_as_a_json_string() -> None:
    text = ('<tool_call>{"name": "computer_use", "arguments": "{\\"action\\": \\"double_click\\", '
            '\\"coordinate\\": [100, 200],}",}</tool_call>')
    parsed = parse(text)
    assert parsed.errors == []
    assert parsed.actions == [Click(x=192, y=216, clicks=2)]


def test_truncated_call_is_closed() -> None:
    parsed = parse('<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", '
                   '"status": "success"')
    assert parsed.actions == [Terminate(status="success")]


def test_bare_json_object_and_single_quoted_dict() -> None:
    parsed = parse('Action: {"action": "mouse_move", "coordinate": [0, 0]}')
    assert parsed.actions == [MouseMove(x=0, y=0)]
    assert parsed.thought == "Action:"
    parsed = parse("<tool_call>{'name': 'computer_use', 'arguments': {'action': 'answer', "
                   "'text': 'It is 42'}}</tool_call>")
    assert parsed.actions == [Answer(text="It is 42")]


def test_numeric_strings_are_accepted_and_garbage_is_an_error() -> None:
    parsed = parse(call({"action": "left_click", "coordinate": ["500", " 250.0 "]})
                   + call({"action": "left_click", "coordinate": "[100, 100]"})
                   + call({"action": "left_click", "coordinate": ["five", 1]})
                   + call({"action": "scroll", "pixels": "-2"}))
    assert parsed.actions == [Click(x=960, y=270), Click(x=192, y=108),
                              Scroll(direction="down", amount=2)]
    assert len(parsed.errors) == 1
    assert "tool call 3" in parsed.errors[0] and "must be a number" in parsed.errors[0]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinite_coordinates_are_errors(bad: str) -> None:
    text = ('<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", '
            f'"coordinate": [{bad}, 5]}}}}</tool_call>')
    parsed = parse(text)
    assert parsed.actions == []
    assert len(parsed.errors) == 1 and "finite" in parsed.errors[0]


def test_out_of_range_coordinates_are_clamped_and_flagged() -> None:
    parsed = parse(call({"action": "left_click", "coordinate": [1200, 40]}))
    assert parsed.actions == [Click(x=1919, y=43)]
    assert len(parsed.warnings) == 1
    assert "(1200, 40)" in parsed.warnings[0] and "clamped to (1919, 43)" in parsed.warnings[0]
    parsed = parse(call({"action": "swipe", "coordinate": [-5, 500], "coordinate2": [500, 500]},
                        "mobile_use"))
    assert parsed.actions[0].start_x == 0
    assert "clamped" in parsed.warnings[0]
    # In range (the far edge included): no warning.
    assert parse(call({"action": "left_click", "coordinate": [1000, 1000]})).warnings == []


def test_one_clear_error_per_bad_call_and_good_calls_survive() -> None:
    text = (call({"action": "fly", "coordinate": [1, 1]})
            + call({"action": "left_click"})
            + "<tool_call>this is not json</tool_call>"
            + call({"action": "terminate", "status": "maybe"})
            + call({"action": "key", "keys": ["hyper"]})
            + call({"action": "type", "text": "ok"}))
    parsed = parse(text)
    assert parsed.actions == [Type(text="ok")]
    assert len(parsed.errors) == 5
    assert "unknown action 'fly'" in parsed.errors[0]
    assert "left_click needs coordinate" in parsed.errors[1]
    assert "not valid JSON" in parsed.errors[2]
    assert 'status "success" or "failure"' in parsed.errors[3]
    assert "unknown key 'hyper'" in parsed.errors[4]
    assert [e.split(":")[0] for e in parsed.errors] == [
        "tool call 1", "tool call 2", "tool call 3", "tool call 4", "tool call 5"]


def test_drag_forms() -> None:
    # Cookbook form: only the target; the start is the cursor (here: after a mouse_move).
    parsed = parse(call({"action": "mouse_move", "coordinate": [100, 100]})
                   + call({"action": "left_click_drag", "coordinate": [200, 200]}))
    assert parsed.actions == [MouseMove(x=192, y=108),
                              Drag(start_x=192, start_y=108, end_x=384, end_y=216)]
    # Same form with no known cursor: an error saying what to do.
    parsed = parse(call({"action": "left_click_drag", "coordinate": [200, 200]}))
    assert parsed.actions == [] and "mouse_move to the start" in parsed.errors[0]
    # ... unless the caller says where the cursor is.
    parsed = parse(call({"action": "left_click_drag", "coordinate": [200, 200]}), pointer=(5, 6))
    assert parsed.actions == [Drag(start_x=5, start_y=6, end_x=384, end_y=216)]


def test_mobile_cookbook_actions() -> None:
    text = "".join([
        call({"action": "click", "coordinate": [500, 500]}, "mobile_use"),
        call({"action": "long_press", "coordinate": [500, 500], "time": 2}, "mobile_use"),
        call({"action": "swipe", "coordinate": [500, 800], "coordinate2": [500, 200]}, "mobile_use"),
        call({"action": "type", "text": "hi"}, "mobile_use"),
        call({"action": "system_button", "button": "Home"}, "mobile_use"),
        call({"action": "open", "text": "Contacts"}, "mobile_use"),
        call({"action": "key", "text": "Enter"}, "mobile_use"),
        call({"action": "wait", "time": 1.5}, "mobile_use"),
        call({"action": "terminate", "status": "failure"}, "mobile_use"),
    ])
    phone = Size(width=1080, height=2400)
    parsed = parse(text, screen_size=phone)
    assert parsed.errors == []
    assert [a.type for a in parsed.actions] == [
        "click", "long_press", "swipe", "type", "system_button", "open_app", "key", "wait",
        "terminate"]
    assert parsed.actions[0] == Click(x=540, y=1200)
    assert parsed.actions[2] == Swipe(start_x=540, start_y=1920, end_x=540, end_y=480)
    assert parsed.actions[5] == OpenApp(name="Contacts")


def test_mobile_key_events_for_navigation_become_system_buttons() -> None:
    # The cookbook's Menu is "the application background menu": KEYCODE_APP_SWITCH.
    # KEYCODE_MENU is Android's menu key (82), a key like any other.
    parsed = parse(call({"action": "key", "text": "KEYCODE_BACK"}, "mobile_use")
                   + call({"action": "key", "text": "home"}, "mobile_use")
                   + call({"action": "key", "text": "KEYCODE_ENTER"}, "mobile_use")
                   + call({"action": "key", "text": "KEYCODE_APP_SWITCH"}, "mobile_use")
                   + call({"action": "key", "text": "KEYCODE_MENU"}, "mobile_use")
                   + call({"action": "key", "text": "menu"}, "mobile_use"))
    assert parsed.actions == [SystemButton(button="back"), SystemButton(button="home"),
                              Key(keys=("enter",)), SystemButton(button="menu"),
                              Key(keys=("menu",)), Key(keys=("menu",))]
    assert parsed.errors == []


def test_the_mobile_key_space_takes_adb_key_names() -> None:
    """Parity with the cookbook's mobile_use `key` ("adb's keyevent syntax", examples
    volume_up, volume_down, power, camera, clear) and KEYCODE_* names."""
    names = ["volume_up", "volume_down", "power", "camera", "clear", "KEYCODE_VOLUME_MUTE",
             "KEYCODE_DEL", "KEYCODE_DPAD_UP", "keycode_search"]
    parsed = parse("".join(call({"action": "key", "text": n}, "mobile_use") for n in names))
    assert parsed.errors == []
    assert [a.keys for a in parsed.actions] == [
        ("volume_up",), ("volume_down",), ("power",), ("camera",), ("clear",),
        ("volume_mute",), ("backspace",), ("up",), ("search",)]
    for action in parsed.actions:
        text = render_tool_call(action, "qwen3", SCREEN, platform="mobile")
        assert parse_tool_calls(text, "qwen3", SCREEN).actions == [action]
    assert "unknown key 'KEYCODE_NOPE'" in parse(call({"action": "key", "text": "KEYCODE_NOPE"},
                                                      "mobile_use")).errors[0]


def test_lenient_where_the_references_are() -> None:
    parsed = parse(call({"action": "terminate"}) + call({"action": "scroll"})
                   + call({"action": "key", "keys": "home"}, "computer_use")
                   + "<thinking>reason</thinking>" + call({"action": "wait", "time": 1}))
    assert parsed.actions == [Terminate(status="success"), Scroll(direction="up", amount=1),
                              Key(keys=("home",)), Wait(seconds=1)]
    assert parsed.think == "reason" and parsed.errors == []
    assert any("without status; taken as success" in w for w in parsed.warnings)
    assert any("without pixels" in w for w in parsed.warnings)


def test_screen_size_may_be_a_pair_and_anything_else_is_a_type_error() -> None:
    text = call({"action": "left_click", "coordinate": [500, 500]})
    assert parse_tool_calls(text, "qwen3", (1000, 500)).actions == [Click(x=500, y=250)]
    with pytest.raises(TypeError, match="screen_size must be"):
        parse_tool_calls(text, "qwen3", "1000x500")  # type: ignore[arg-type]


def test_home_in_a_keys_list_is_the_keyboard_home_key() -> None:
    # computer_use's Home key must not turn into Android's home button; the Home key
    # rendered for mobile_use goes as a list so that it reads back the same.
    parsed = parse(call({"action": "key", "keys": ["home"]}, "computer_use")
                   + call({"action": "key", "keys": ["KEYCODE_HOME"]}, "computer_use"))
    assert parsed.actions == [Key(keys=("home",)), SystemButton(button="home")]
    for platform in ("desktop", "mobile"):
        text = render_tool_call(Key(keys=("home",)), "qwen3", SCREEN, platform=platform)
        assert parse_tool_calls(text, "qwen3", SCREEN).actions == [Key(keys=("home",))]


def test_scroll_signs_and_amount_bounds() -> None:
    parsed = parse(call({"action": "scroll", "pixels": 5})
                   + call({"action": "hscroll", "pixels": -2, "coordinate": [500, 500]})
                   + call({"action": "scroll", "pixels": 0})
                   + call({"action": "scroll", "pixels": -500}))
    assert parsed.actions == [Scroll(direction="up", amount=5),
                              Scroll(direction="left", amount=2, x=960, y=540),
                              Scroll(direction="down", amount=100, pixels=-500)]
    assert "at least 1" in parsed.errors[0]
    assert any("clamped to 100" in w for w in parsed.warnings)


def test_qwen25_and_normalized_dialects() -> None:
    image = Size(width=1932, height=1092)
    parsed = parse(call({"action": "left_click", "coordinate": [966, 546]}), dialect="qwen25",
                   image_size=image)
    assert parsed.actions == [Click(x=960, y=540)]
    parsed = parse(call({"action": "left_click", "coordinate": [0.5, 0.25]}), dialect="normalized")
    assert parsed.actions == [Click(x=960, y=270)]


def test_unknown_tool_name_is_a_warning_and_navigate_extension() -> None:
    parsed = parse(call({"action": "navigate", "url": "https://example.com"}, "browser"))
    assert parsed.actions == [Navigate(url="https://example.com")]
    assert "unknown tool 'browser'" in parsed.warnings[0]


def test_without_screen_size_positional_calls_are_errors() -> None:
    parsed = parse_tool_calls(call({"action": "left_click", "coordinate": [1, 1]})
                              + call({"action": "type", "text": "x"}))
    assert parsed.actions == [Type(text="x")]
    assert "screen_size" in parsed.errors[0]


def test_invalid_configuration_raises() -> None:
    with pytest.raises(ValueError, match="dialect"):
        parse_tool_calls("", "pixels", SCREEN)
    with pytest.raises(ValueError, match="image_size"):
        parse_tool_calls("", "qwen25", SCREEN)


def test_rendered_text_is_the_cookbook_shape() -> None:
    text = render_tool_call(Click(x=960, y=540), "qwen3", SCREEN)
    assert text == ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
                    '"coordinate": [500, 500]}}\n</tool_call>')
    text = render_tool_call(Type(text="a</tool_call>b"), "qwen3", SCREEN)
    assert text.count("</tool_call>") == 1
    assert parse(text).actions == [Type(text="a</tool_call>b")]


# ----------------------------------------------------------------------------- never raises

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["name", "arguments", "action", "coordinate", "coordinate2",
                                       "text", "keys", "pixels", "time", "status", "button",
                                       "clicks", "url", "function", "direction"]) | st.text(max_size=5),
                      children, max_size=5),
    max_leaves=20,
)
action_names = st.sampled_from(["left_click", "click", "key", "type", "scroll", "hscroll", "swipe",
                                "left_click_drag", "long_press", "system_button", "open", "wait",
                                "terminate", "answer", "navigate", "mouse_move", "triple_click"])
fragments = st.sampled_from(["<tool_call>", "</tool_call>", "<think>", "</think>", "```json\n",
                             "```", "{", "}", "[", "]", ",", '"', "\\", "NaN", "\n"])


@st.composite
def model_like_text(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.text(max_size=30)))
        elif kind == 1:
            parts.append(draw(fragments))
        else:
            args = draw(st.dictionaries(st.sampled_from(["coordinate", "coordinate2", "text",
                                                         "keys", "pixels", "time", "status",
                                                         "button", "clicks", "url"]),
                                        json_values, max_size=4))
            args["action"] = draw(action_names | st.text(max_size=8))
            body = json.dumps({"name": draw(st.sampled_from(["computer_use", "mobile_use", "x"])),
                               "arguments": args})
            if draw(st.booleans()):
                cut = draw(st.integers(0, len(body)))
                body = body[:cut]
            parts.append("<tool_call>\n" + body + ("\n</tool_call>" if draw(st.booleans()) else ""))
    return "".join(parts)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(), model_like_text()),
       dialect=st.sampled_from(["qwen3", "qwen3_999", "normalized"]))
def test_parser_never_raises(text: str, dialect: str) -> None:
    parsed = parse(text, dialect=dialect)
    assert isinstance(parsed, ParsedResponse)
    # The last-resort guard must never be what kept it from raising.
    assert not any("internal parser error" in e for e in parsed.errors), parsed.errors
    for action in parsed.actions:  # every action it returns is valid and on the screen
        for field in ("x", "start_x", "end_x"):
            value = getattr(action, field, None)
            assert value is None or 0 <= value < SCREEN.width
        for field in ("y", "start_y", "end_y"):
            value = getattr(action, field, None)
            assert value is None or 0 <= value < SCREEN.height


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    "<tool_call>" + "[" * 100_000,
    "<tool_call>" + '{"a":' * 50_000 + "1" + "}" * 50_000 + "</tool_call>",
    "```json\n" + "{" * 200_000,
    "{" * 300_000,
    "<tool_call>" * 20_000,
    "<think>" * 20_000 + "</think>" * 20_000,
    "x" * 5_000_000,
    '<tool_call>{"name":"computer_use","arguments":{"action":"type","text":"' + "a" * 1_000_000 + '"}}',
    '<tool_call>{"name":"computer_use","arguments":{"action":"left_click","coordinate":[' + "9" * 5000 + ',1]}}</tool_call>',
    "\x00\ud800\udfff",
])
def test_parser_survives_huge_and_deeply_nested_input(text: str) -> None:
    started = time.monotonic()
    parsed = parse(text)
    assert isinstance(parsed, ParsedResponse)
    assert not any("internal parser error" in e for e in parsed.errors), parsed.errors
    assert time.monotonic() - started < 20


def test_parser_handles_non_string_input_without_raising() -> None:
    parsed = parse_tool_calls(None, "qwen3", SCREEN)  # type: ignore[arg-type]
    assert parsed.actions == [] and parsed.errors
