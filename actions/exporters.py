"""Canonical actions -> other harnesses' action formats.

- `to_pyautogui(action)`: a code string for OSWorld's ``pyautogui`` action space. OSWorld
  runs it with ``import pyautogui; import time`` in scope; the special strings ``WAIT``,
  ``DONE`` and ``FAIL`` mean "wait", "task finished" and "task infeasible".
- `to_android_world(action)`: a dict with the fields of AndroidWorld's
  ``env/json_action.py`` ``JSONAction`` (``JSONAction(**d)`` accepts it), for where only a
  JSONAction can be sent (it says what that loses).
- `to_adb_swipe(action, width, height)`: the exact ``adb shell input swipe`` gesture of a
  swipe, drag, long press or scroll (`scroll_swipe` is the scroll geometry the Android
  environment uses too).

Coordinates stay input-space pixels: the screen OSWorld/AndroidWorld drive *is* the
environment's input space. Actions a target cannot express raise
`UnsupportedActionError` (a ValueError) naming the action and the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actions.models import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    Navigate,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    Type,
    Wait,
    mobile_key_error,
)

__all__ = [
    "ANDROID_WORLD_KEYS", "AdbSwipe", "UnsupportedActionError", "pyautogui_key",
    "scroll_swipe", "to_adb_swipe", "to_android_world", "to_pyautogui",
]


class UnsupportedActionError(ValueError):
    """The target action format has no way to express this action."""

    def __init__(self, action: Action, target: str, hint: str = ""):
        message = f"{target} cannot express {action!r}"
        super().__init__(f"{message}: {hint}" if hint else message)
        self.action = action
        self.target = target


# Canonical key names (actions.models.NAMED_KEYS) that pyautogui spells differently.
_PYAUTOGUI_KEYS = {"meta": "win", "menu": "apps"}


def pyautogui_key(key: str) -> str:
    """pyautogui's name for a canonical key name."""
    return _PYAUTOGUI_KEYS.get(key, key)


def _drag_code(start: tuple[int, int], end: tuple[int, int], duration_s: float) -> str:
    return (f"pyautogui.moveTo({start[0]}, {start[1]}); "
            f"pyautogui.dragTo({end[0]}, {end[1]}, duration={duration_s!r}, button='left')")


# pyautogui types '<' as '>' on X keymaps with a '<>' key (OSWorld's VM and Xvfb), and
# OSWorld's own fix-up only rewrites bare typewrite('...') calls: press shift+',' instead.
_LESS_THAN_CODE = "pyautogui.hotkey('shift', ',')"

# Runs on the VM inside OSWorld's `python -c "import pyautogui; import time; ..."`: maps
# every character missing from the keymap to its own spare keycode in ONE change, then
# types with XTest through pyautogui's own X connection (as environments.desktop.XTyper).
_UNICODE_TYPER = """
from Xlib import X, XK
from Xlib.ext.xtest import fake_input
d = pyautogui._pyautogui_x11._display
first = d.display.info.min_keycode
mapping = d.get_keyboard_mapping(first, d.display.info.max_keycode - first + 1)
spare = [first + i for i, syms in enumerate(mapping) if not any(syms)]
def keysym(c):
    o = ord(c)
    if c == '\\n': return XK.XK_Return
    if c == '\\t': return XK.XK_Tab
    return o if 0x20 <= o <= 0x7e or 0xa0 <= o <= 0xff else 0x01000000 | o
keys = {}
for s in dict.fromkeys(keysym(c) for c in TEXT):
    found = [(k, i == 1) for k, i in d.keysym_to_keycodes(s) if i in (0, 1)]
    if found:
        keys[s] = found[0]
    else:
        k = spare.pop(0)
        d.change_keyboard_mapping(k, [(s, s)])
        keys[s] = (k, False)
d.sync()
shift = d.keysym_to_keycode(XK.XK_Shift_L)
for c in TEXT:
    k, shifted = keys[keysym(c)]
    if shifted: fake_input(d, X.KeyPress, shift)
    fake_input(d, X.KeyPress, k)
    fake_input(d, X.KeyRelease, k)
    if shifted: fake_input(d, X.KeyRelease, shift)
d.sync()
"""


def _unicode_typing_code(text: str) -> str:
    code = _UNICODE_TYPER.replace("TEXT", repr(text.replace("\r", "")))
    return f"exec({code!r})"


def _typing_code(text: str) -> str:
    """pyautogui code typing `text`: ASCII through typewrite, each '<' as shift+',';
    anything else through XTest with spare keycodes (`_UNICODE_TYPER`), since
    pyautogui drops non-ASCII characters and `xdotool type` loses some when X clients
    read the changed keymap late."""
    if not text.isascii():
        return _unicode_typing_code(text)
    calls = [f"pyautogui.typewrite({part!r})" if part else "" for part in text.split("<")]
    return "; ".join(call for call in _join_with(calls, _LESS_THAN_CODE) if call)


def _join_with(items: list[str], separator: str) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        if i:
            out.append(separator)
        out.append(item)
    return out


def to_pyautogui(action: Action) -> str:
    """OSWorld `pyautogui` action-space code for one action (or WAIT / DONE / FAIL).

    Terminate(success) and Answer give ``DONE`` (OSWorld reads the answer from the agent,
    not from the code); Terminate(failure) gives ``FAIL``. Text is typed as `_typing_code`
    says.
    """
    if isinstance(action, Click):
        name = {"left": "click", "right": "rightClick", "middle": "middleClick"}[action.button]
        if action.button == "left" and action.clicks == 2:
            return f"pyautogui.doubleClick({action.x}, {action.y})"
        if action.button == "left" and action.clicks == 3:
            return f"pyautogui.tripleClick({action.x}, {action.y})"
        if action.clicks == 1:
            return f"pyautogui.{name}({action.x}, {action.y})"
        return (f"pyautogui.click({action.x}, {action.y}, clicks={action.clicks}, "
                f"button={action.button!r})")
    if isinstance(action, MouseMove):
        return f"pyautogui.moveTo({action.x}, {action.y})"
    if isinstance(action, Drag):
        return _drag_code((action.start_x, action.start_y), (action.end_x, action.end_y), 0.5)
    if isinstance(action, Swipe):
        return _drag_code((action.start_x, action.start_y), (action.end_x, action.end_y),
                          action.duration_s)
    if isinstance(action, LongPress):
        return (f"pyautogui.mouseDown({action.x}, {action.y}, button='left'); "
                f"time.sleep({action.duration_s!r}); "
                f"pyautogui.mouseUp({action.x}, {action.y}, button='left')")
    if isinstance(action, Scroll):
        at = f", x={action.x}, y={action.y}" if action.x is not None else ""
        if action.direction in ("up", "down"):
            clicks = action.amount if action.direction == "up" else -action.amount
            return f"pyautogui.scroll({clicks}{at})"
        clicks = action.amount if action.direction == "right" else -action.amount
        return f"pyautogui.hscroll({clicks}{at})"
    if isinstance(action, Type):
        return _typing_code(action.text)
    if isinstance(action, Key):
        if error := mobile_key_error(action.keys, "an OSWorld desktop"):
            raise UnsupportedActionError(action, "OSWorld pyautogui", error)
        keys = ", ".join(repr(pyautogui_key(k)) for k in action.keys)
        if len(action.keys) == 1:
            return f"pyautogui.press({keys})"
        return f"pyautogui.hotkey({keys})"
    if isinstance(action, SystemButton):
        if action.button == "enter":
            return "pyautogui.press('enter')"
        raise UnsupportedActionError(action, "OSWorld pyautogui",
                                     "a desktop has no Android navigation buttons")
    if isinstance(action, Navigate):
        # The browser's address bar: focus it, type the URL, load.
        return ("pyautogui.hotkey('ctrl', 'l'); "
                f"{_typing_code(action.url)}; pyautogui.press('enter')")
    if isinstance(action, OpenApp):
        raise UnsupportedActionError(action, "OSWorld pyautogui",
                                     "desktop apps are started by clicking their icons")
    if isinstance(action, Wait):
        return "WAIT"
    if isinstance(action, Answer):
        return "DONE"
    if isinstance(action, Terminate):
        return "DONE" if action.status == "success" else "FAIL"
    raise UnsupportedActionError(action, "OSWorld pyautogui")


# AndroidWorld JSONAction's field names (android_world/env/json_action.py).
ANDROID_WORLD_KEYS: frozenset[str] = frozenset({
    "action_type", "index", "x", "y", "text", "direction", "goal_status", "app_name",
    "keycode", "clear_text",
})

# The finger's direction -> the AndroidWorld `scroll` direction whose gesture moves the
# finger that way. AndroidWorld's actuation.py swipes a `scroll` from the centre of the
# screen to the edge *opposite* its name (`down`: centre -> top edge), so the content
# follows the finger and the view moves the named way, like our Scroll and a mouse wheel.
_SCROLL_FOR_FINGER = {"up": "down", "down": "up", "left": "right", "right": "left"}


def _finger_direction(dx: int, dy: int) -> str:
    """The dominant direction a finger moves along (dx, dy) (screen y grows downwards)."""
    if abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


@dataclass(frozen=True)
class AdbSwipe:
    """One `adb shell input swipe x1 y1 x2 y2 duration_ms`: the gesture that performs a
    swipe, drag, long press (start == end) or scroll exactly, in screen pixels.

    `adb_args()` is what AndroidWorld's `adb_utils.generate_swipe_command` returns for the
    same points, for `adb_utils.issue_generic_request(args, env.controller)`.
    """

    start_x: int
    start_y: int
    end_x: int
    end_y: int
    duration_ms: int

    def adb_args(self) -> list[str]:
        return ["shell", "input", "swipe", str(self.start_x), str(self.start_y),
                str(self.end_x), str(self.end_y), str(self.duration_ms)]

    def shell_command(self) -> str:
        """The same gesture as a device shell command line."""
        return " ".join(self.adb_args()[1:])


# Defaults of the gestures below; environments.android.AndroidConfig has the same ones.
SCROLL_FRACTION_PER_NOTCH = 0.1  # one wheel notch = this fraction of the screen's span
SCROLL_SWIPE_DURATION_S = 0.4
DRAG_DURATION_S = 1.0


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def scroll_swipe(action: Scroll, width: int, height: int,
                 fraction_per_notch: float = SCROLL_FRACTION_PER_NOTCH,
                 duration_s: float = SCROLL_SWIPE_DURATION_S) -> AdbSwipe:
    """The touch swipe that scrolls `action.amount` notches on a `width` x `height` screen.

    The finger moves against the scroll direction (content follows the finger), centred
    on (x, y) or the screen's centre; one notch is `fraction_per_notch` of the screen's
    height (width for left/right), at most 80% of it, kept 1 px inside the screen.
    """
    x = action.x if action.x is not None else width // 2
    y = action.y if action.y is not None else height // 2
    vertical = action.direction in ("up", "down")
    span = height if vertical else width
    distance = min(round(span * fraction_per_notch * action.amount), round(span * 0.8))
    sign = 1 if action.direction in ("up", "left") else -1  # the finger moves this way

    def clamp(value: int, limit: int) -> int:
        return max(1, min(limit - 2, value))

    duration_ms = _milliseconds(duration_s)
    if vertical:
        return AdbSwipe(x, clamp(y - sign * distance // 2, height), x,
                        clamp(y + sign * distance // 2, height), duration_ms)
    return AdbSwipe(clamp(x - sign * distance // 2, width), y,
                    clamp(x + sign * distance // 2, width), y, duration_ms)


def to_adb_swipe(action: Action, width: int, height: int,
                 drag_duration_s: float = DRAG_DURATION_S) -> AdbSwipe | None:
    """The exact `input swipe` gesture of a Swipe, Drag, LongPress or Scroll on a `width` x
    `height` touch screen; None for any other action.

    This keeps what AndroidWorld's JSONAction cannot say: a swipe's points and duration,
    a long press's duration, a scroll's position and amount.
    """
    if isinstance(action, Swipe):
        return AdbSwipe(action.start_x, action.start_y, action.end_x, action.end_y,
                        _milliseconds(action.duration_s))
    if isinstance(action, Drag):
        return AdbSwipe(action.start_x, action.start_y, action.end_x, action.end_y,
                        _milliseconds(drag_duration_s))
    if isinstance(action, LongPress):
        return AdbSwipe(action.x, action.y, action.x, action.y,
                        _milliseconds(action.duration_s))
    if isinstance(action, Scroll):
        return scroll_swipe(action, width, height)
    return None


def to_android_world(action: Action) -> dict[str, Any]:
    """An AndroidWorld JSONAction-shaped dict for one action: the form to use where only a
    JSONAction can be sent (`benchmarks.android_world_adapter` sends gestures and text
    through the environment's adb controller instead, see `to_adb_swipe`).

    What a JSONAction cannot say, and so is lost here (facts from AndroidWorld's
    env/actuation.py, pinned in tests/test_actions_exporters.py):
    - a Swipe/Drag becomes a `scroll` whose gesture moves the finger the same way (its
      points and duration are lost; AndroidWorld's `swipe` is an edge-to-edge gesture
      whose horizontal names are the opposite of the finger's, and `down` starts on the
      top edge, opening the notification shade, so it is never used);
    - a Scroll keeps its direction, not its position or amount;
    - a LongPress lasts AndroidWorld's 1 s; a Wait AndroidWorld's 1 s;
    - `input_text` presses Enter after typing.
    """
    if isinstance(action, Click):
        if action.button != "left":
            raise UnsupportedActionError(action, "AndroidWorld",
                                         "a touch screen has only taps (left clicks)")
        if action.clicks == 1:
            return {"action_type": "click", "x": action.x, "y": action.y}
        if action.clicks == 2:
            return {"action_type": "double_tap", "x": action.x, "y": action.y}
        raise UnsupportedActionError(action, "AndroidWorld", "there is no triple tap")
    if isinstance(action, LongPress):
        return {"action_type": "long_press", "x": action.x, "y": action.y}
    if isinstance(action, Swipe | Drag):
        finger = _finger_direction(action.end_x - action.start_x, action.end_y - action.start_y)
        return {"action_type": "scroll", "direction": _SCROLL_FOR_FINGER[finger]}
    if isinstance(action, Scroll):
        return {"action_type": "scroll", "direction": action.direction}
    if isinstance(action, Type):
        return {"action_type": "input_text", "text": action.text}
    if isinstance(action, SystemButton):
        mapping = {"back": "navigate_back", "home": "navigate_home", "enter": "keyboard_enter"}
        if action.button not in mapping:
            raise UnsupportedActionError(action, "AndroidWorld", "it has no menu button action")
        return {"action_type": mapping[action.button]}
    if isinstance(action, Key):
        if action.keys == ("enter",):
            return {"action_type": "keyboard_enter"}
        raise UnsupportedActionError(action, "AndroidWorld", "only enter is a key action")
    if isinstance(action, OpenApp):
        return {"action_type": "open_app", "app_name": action.name}
    if isinstance(action, Wait):
        return {"action_type": "wait"}
    if isinstance(action, Answer):
        return {"action_type": "answer", "text": action.text}
    if isinstance(action, Terminate):
        return {"action_type": "status",
                "goal_status": "complete" if action.status == "success" else "infeasible"}
    raise UnsupportedActionError(action, "AndroidWorld")
