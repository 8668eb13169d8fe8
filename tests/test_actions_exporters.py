"""Exporters: OSWorld pyautogui code strings and AndroidWorld JSONAction dicts."""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import given, settings
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
    Scroll,
    Size,
    Swipe,
    SystemButton,
    Terminate,
    Type,
    Wait,
)
from actions.exporters import (
    ANDROID_WORLD_KEYS,
    AdbSwipe,
    UnsupportedActionError,
    to_adb_swipe,
    to_android_world,
    to_pyautogui,
)
from actions.models import NAMED_KEYS
from tests.conftest_actions import actions_on


def _pyautogui_api() -> tuple[set[str], set[str]]:
    """Public function names and key names of the installed pyautogui, read from its
    source (importing it needs an X display)."""
    spec = importlib.util.find_spec("pyautogui")
    assert spec is not None and spec.origin, "pyautogui is a dependency"
    source = Path(spec.origin).read_text()
    tree = ast.parse(source)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    keys: set[str] = set()
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "KEY_NAMES"
                                                 for t in node.targets)):
            keys = set(ast.literal_eval(node.value))
    return functions, keys


PYAUTOGUI_FUNCTIONS, PYAUTOGUI_KEYS = _pyautogui_api()


class RecordingPyautogui:
    """Stands in for the pyautogui module when running exported code: records each call
    (only functions the real pyautogui defines)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str):
        assert name in PYAUTOGUI_FUNCTIONS, f"pyautogui has no function {name!r}"

        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
        return record


class RecordingTime:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def run_pyautogui(code: str) -> list[tuple[str, tuple, dict]]:
    compile(code, "<osworld action>", "exec")
    fake = RecordingPyautogui()
    exec(code, {"pyautogui": fake, "time": RecordingTime()})  # noqa: S102 - our own output
    return fake.calls


@pytest.mark.parametrize("action,expected", [
    (Click(x=10, y=20), [("click", (10, 20), {})]),
    (Click(x=10, y=20, button="right"), [("rightClick", (10, 20), {})]),
    (Click(x=10, y=20, button="middle"), [("middleClick", (10, 20), {})]),
    (Click(x=10, y=20, clicks=2), [("doubleClick", (10, 20), {})]),
    (Click(x=10, y=20, clicks=3), [("tripleClick", (10, 20), {})]),
    (Click(x=10, y=20, button="right", clicks=2),
     [("click", (10, 20), {"clicks": 2, "button": "right"})]),
    (MouseMove(x=5, y=6), [("moveTo", (5, 6), {})]),
    (Drag(start_x=1, start_y=2, end_x=30, end_y=40),
     [("moveTo", (1, 2), {}), ("dragTo", (30, 40), {"duration": 0.5, "button": "left"})]),
    (Scroll(direction="down", amount=3, x=7, y=8), [("scroll", (-3,), {"x": 7, "y": 8})]),
    (Scroll(direction="up", amount=2), [("scroll", (2,), {})]),
    (Scroll(direction="left", amount=4), [("hscroll", (-4,), {})]),
    (Scroll(direction="right", amount=1), [("hscroll", (1,), {})]),
    (Type(text="it's \"quoted\"\n"), [("typewrite", ("it's \"quoted\"\n",), {})]),
    (Type(text="a<b<"), [("typewrite", ("a",), {}), ("hotkey", ("shift", ","), {}),
                         ("typewrite", ("b",), {}), ("hotkey", ("shift", ","), {})]),
    (Key(keys=("ctrl", "c")), [("hotkey", ("ctrl", "c"), {})]),
    (Key(keys=("meta",)), [("press", ("win",), {})]),
    (Key(keys=("enter",)), [("press", ("enter",), {})]),
    (SystemButton(button="enter"), [("press", ("enter",), {})]),
    (Navigate(url="https://example.com"),
     [("hotkey", ("ctrl", "l"), {}), ("typewrite", ("https://example.com",), {}),
      ("press", ("enter",), {})]),
    (LongPress(x=3, y=4, duration_s=1.5),
     [("mouseDown", (3, 4), {"button": "left"}), ("mouseUp", (3, 4), {"button": "left"})]),
])
def test_pyautogui_code_does_what_the_action_says(action, expected) -> None:
    assert run_pyautogui(to_pyautogui(action)) == expected


def test_pyautogui_special_strings() -> None:
    assert to_pyautogui(Wait(seconds=2)) == "WAIT"
    assert to_pyautogui(Terminate(status="success")) == "DONE"
    assert to_pyautogui(Terminate(status="failure")) == "FAIL"
    assert to_pyautogui(Answer(text="42")) == "DONE"


def test_pyautogui_non_ascii_text_goes_through_xtest() -> None:
    # The code's real effect is checked on Xvfb in tests/test_desktop_osworld.py.
    code = to_pyautogui(Type(text="héllo 🙂"))
    compile(code, "<osworld action>", "exec")
    assert code.startswith("exec(") and "xdotool" not in code and "héllo 🙂" in code


def test_pyautogui_unsupported_actions_say_why() -> None:
    with pytest.raises(UnsupportedActionError, match="icons"):
        to_pyautogui(OpenApp(name="Files"))
    with pytest.raises(UnsupportedActionError, match="navigation buttons"):
        to_pyautogui(SystemButton(button="back"))


def test_every_canonical_key_is_a_pyautogui_key() -> None:
    for key in NAMED_KEYS:
        code = to_pyautogui(Key(keys=(key,)))
        ((name, args, _),) = run_pyautogui(code)
        assert name == "press" and args[0] in PYAUTOGUI_KEYS, key


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_pyautogui_code_always_compiles_and_keeps_coordinates(data) -> None:
    screen = Size(width=1920, height=1080)
    action = data.draw(actions_on(screen))
    try:
        code = to_pyautogui(action)
    except UnsupportedActionError:
        assert action.type in ("open_app", "system_button")
        return
    if code in ("WAIT", "DONE", "FAIL"):
        assert action.type in ("wait", "answer", "terminate")
        return
    compile(code, "<osworld action>", "exec")
    for field in ("x", "y", "start_x", "start_y", "end_x", "end_y"):
        value = getattr(action, field, None)
        if value is not None:
            assert str(value) in code


# AndroidWorld JSONAction's rules (android_world/env/json_action.py).
AW_ACTION_TYPES = {"click", "double_tap", "scroll", "swipe", "input_text", "navigate_home",
                   "navigate_back", "keyboard_enter", "open_app", "status", "wait", "long_press",
                   "answer", "unknown"}

# Reference facts, google-research/android_world at d9c569f764b3a5629321858de03ff653d0f24056
# (2026-02-24), android_world/env/actuation.py `execute_adb_action` and env/adb_utils.py:
# the `adb shell input swipe` each direction-only JSONAction performs on a W x H screen
# (no element index), as (start_x, start_y, end_x, end_y, duration_ms or None).
AW_SWIPE_GESTURES = {  # 'swipe': "Inverse of scroll", edge to edge, 500 ms
    "down": lambda w, h: (w // 2, 0, w // 2, h, 500),
    "up": lambda w, h: (w // 2, h, w // 2, 0, 500),
    "left": lambda w, h: (0, h // 2, w, h // 2, 500),
    "right": lambda w, h: (w, h // 2, 0, h // 2, 500),
}
AW_SCROLL_GESTURES = {  # 'scroll': from the centre to the edge opposite the name
    "down": lambda w, h: (w // 2, h // 2, w // 2, 0, None),
    "up": lambda w, h: (w // 2, h // 2, w // 2, h, None),
    "right": lambda w, h: (w // 2, h // 2, 0, h // 2, None),
    "left": lambda w, h: (w // 2, h // 2, w, h // 2, None),
}
AW_LONG_PRESS_MS = 1000  # adb_utils.long_press: input swipe x y x y 1000
AW_INPUT_TEXT_PRESSES_ENTER = True  # input_text: type_text(...) then press_enter_button
AW_WAIT_S = 1.0  # wait: time.sleep(1.0)


def finger(gesture: tuple) -> str:
    """The dominant direction the finger moves in a (x1, y1, x2, y2, ...) gesture."""
    dx, dy = gesture[2] - gesture[0], gesture[3] - gesture[1]
    if abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def check_json_action(d: dict) -> None:
    assert set(d) <= ANDROID_WORLD_KEYS
    assert d["action_type"] in AW_ACTION_TYPES
    if "direction" in d:
        assert d["direction"] in ("left", "right", "down", "up")
    if d["action_type"] == "status":
        assert d["goal_status"] in ("complete", "infeasible")
    if d["action_type"] in ("click", "double_tap", "long_press"):
        assert isinstance(d["x"], int) and isinstance(d["y"], int)


def test_reference_swipe_names_are_opposite_to_the_finger_horizontally() -> None:
    """Parity (reference facts): why a finger's direction must never become an
    AndroidWorld `swipe` name — `left`/`right` move the finger the other way, and a
    `down` swipe starts on the top edge (the notification shade)."""
    assert [finger(AW_SWIPE_GESTURES[d](1080, 2400)) for d in ("up", "down", "left", "right")] \
        == ["up", "down", "right", "left"]
    assert AW_SWIPE_GESTURES["down"](1080, 2400)[1] == 0


@pytest.mark.parametrize("action,finger_direction", [
    (Swipe(start_x=500, start_y=1500, end_x=520, end_y=300), "up"),
    (Swipe(start_x=500, start_y=300, end_x=520, end_y=1500), "down"),
    (Swipe(start_x=900, start_y=1000, end_x=100, end_y=1010), "left"),
    (Drag(start_x=100, start_y=10, end_x=900, end_y=20), "right"),
])
def test_swipe_exports_as_a_scroll_moving_the_finger_the_same_way(action, finger_direction):
    """Parity: the JSONAction a swipe becomes performs, under actuation.py's semantics
    (AW_SCROLL_GESTURES), a gesture whose finger moves the way the model's did."""
    exported = to_android_world(action)
    assert exported["action_type"] == "scroll"
    assert finger(AW_SCROLL_GESTURES[exported["direction"]](1080, 2400)) == finger_direction


@pytest.mark.parametrize("direction", ["up", "down", "left", "right"])
def test_scroll_moves_the_finger_as_android_world_scroll_does(direction) -> None:
    """Parity: our Scroll's exact gesture (to_adb_swipe) and AndroidWorld's `scroll` of
    the same name move the finger the same way; ours keeps position and amount."""
    reference = AW_SCROLL_GESTURES[direction](1080, 2400)
    assert to_android_world(Scroll(direction=direction, amount=3)) == {
        "action_type": "scroll", "direction": direction}
    ours = to_adb_swipe(Scroll(direction=direction, amount=3), 1080, 2400)
    assert ours is not None and finger(astuple(ours)) == finger(reference)
    short = to_adb_swipe(Scroll(direction=direction, amount=1, x=300, y=700), 1080, 2400)
    long = to_adb_swipe(Scroll(direction=direction, amount=5, x=300, y=700), 1080, 2400)
    span = lambda g: abs(g.end_x - g.start_x) + abs(g.end_y - g.start_y)  # noqa: E731
    assert span(long) == 5 * span(short)
    assert (short.start_x + short.end_x) // 2 == 300 and (short.start_y + short.end_y) // 2 == 700


def test_gestures_keep_points_and_durations() -> None:
    """Parity with the GUI-Owl runner's patch (X-PLUG/MobileAgent, Mobile-Agent-v3.5/
    android_world_v3.5: a coordinate swipe goes to `input swipe x1 y1 x2 y2 ms` as is):
    points and durations survive, in adb_utils.generate_swipe_command's argument form."""
    swipe = to_adb_swipe(Swipe(start_x=10, start_y=2000, end_x=30, end_y=400,
                               duration_s=0.25), 1080, 2400)
    assert swipe == AdbSwipe(10, 2000, 30, 400, 250)
    assert swipe.adb_args() == ["shell", "input", "swipe", "10", "2000", "30", "400", "250"]
    assert to_adb_swipe(LongPress(x=5, y=6, duration_s=2.5), 1080, 2400) == \
        AdbSwipe(5, 6, 5, 6, 2500)
    assert to_adb_swipe(LongPress(x=5, y=6), 1080, 2400).duration_ms == AW_LONG_PRESS_MS
    assert to_adb_swipe(Click(x=1, y=1), 1080, 2400) is None


@pytest.mark.parametrize("action,expected", [
    (Click(x=10, y=20), {"action_type": "click", "x": 10, "y": 20}),
    (Click(x=10, y=20, clicks=2), {"action_type": "double_tap", "x": 10, "y": 20}),
    (LongPress(x=1, y=2), {"action_type": "long_press", "x": 1, "y": 2}),
    (Swipe(start_x=500, start_y=1500, end_x=520, end_y=300), {"action_type": "scroll",
                                                              "direction": "down"}),
    (Drag(start_x=100, start_y=10, end_x=900, end_y=20), {"action_type": "scroll",
                                                         "direction": "left"}),
    (Scroll(direction="down", amount=3), {"action_type": "scroll", "direction": "down"}),
    (Type(text="hello"), {"action_type": "input_text", "text": "hello"}),
    (SystemButton(button="back"), {"action_type": "navigate_back"}),
    (SystemButton(button="home"), {"action_type": "navigate_home"}),
    (SystemButton(button="enter"), {"action_type": "keyboard_enter"}),
    (Key(keys=("enter",)), {"action_type": "keyboard_enter"}),
    (OpenApp(name="Contacts"), {"action_type": "open_app", "app_name": "Contacts"}),
    (Wait(seconds=1), {"action_type": "wait"}),
    (Answer(text="42"), {"action_type": "answer", "text": "42"}),
    (Terminate(status="success"), {"action_type": "status", "goal_status": "complete"}),
    (Terminate(status="failure"), {"action_type": "status", "goal_status": "infeasible"}),
])
def test_android_world_dicts(action, expected) -> None:
    """Plumbing: the JSONAction form of each action (the gesture directions above are
    the parity facts)."""
    exported = to_android_world(action)
    assert exported == expected
    check_json_action(exported)


@pytest.mark.parametrize("action,reason", [
    (Click(x=1, y=1, button="right"), "only taps"),
    (Click(x=1, y=1, clicks=3), "triple"),
    (MouseMove(x=1, y=1), "AndroidWorld cannot express"),
    (Key(keys=("ctrl", "c")), "only enter"),
    (SystemButton(button="menu"), "menu"),
    (Navigate(url="https://example.com"), "AndroidWorld cannot express"),
])
def test_android_world_unsupported_actions_say_why(action, reason: str) -> None:
    with pytest.raises(UnsupportedActionError, match=reason):
        to_android_world(action)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_android_world_exports_are_valid_json_actions(data) -> None:
    action = data.draw(actions_on(Size(width=1080, height=2400)))
    try:
        exported = to_android_world(action)
    except UnsupportedActionError:
        return
    check_json_action(exported)
    if isinstance(action, Swipe | Drag) and (action.start_x, action.start_y) != (
            action.end_x, action.end_y):
        moved = finger((action.start_x, action.start_y, action.end_x, action.end_y))
        assert finger(AW_SCROLL_GESTURES[exported["direction"]](1080, 2400)) == moved
