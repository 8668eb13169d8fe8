"""What OSWorld's DesktopEnv.step receives for our actions: the `pyautogui` action space
(code strings), `computer_13` (action dicts), and the Qwen3-VL runner's own mapping
(mm_agents/qwen3vl_agent.py `parse_response`) used under `--protocol official`."""

from __future__ import annotations

from typing import Any

from actions.models import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    MouseMove,
    Scroll,
    SystemButton,
    Terminate,
    Type,
    Wait,
    mobile_key_error,
)

ACTION_SPACES = ("pyautogui", "computer_13")


class UnsupportedActionError(ValueError):
    """The OSWorld action space has no way to express this action."""


# Canonical key names that OSWorld's computer_13 key list (desktop_env/actions.py
# KEYBOARD_KEYS, which PythonController checks every PRESS/HOTKEY key against) spells
# differently. Every other canonical key name is in that list as it is.
_COMPUTER_13_KEYS = {"space": " ", "meta": "win", "menu": "apps"}
# PythonController builds `pyautogui.press('{key}')`: these keys would break the quotes.
_COMPUTER_13_UNQUOTABLE = {"'", "\\"}


def computer_13_key(key: str) -> str:
    """OSWorld's computer_13 name for a canonical key name."""
    if error := mobile_key_error((key,), "an OSWorld desktop"):
        raise UnsupportedActionError(error)
    if key in _COMPUTER_13_UNQUOTABLE:
        raise UnsupportedActionError(
            f"OSWorld computer_13 pastes key names into pyautogui.press('{key}'), which "
            f"breaks on {key!r}: type it (TYPING) or use the pyautogui action space")
    return _COMPUTER_13_KEYS.get(key, key)


# ----------------------------------------------------------------------------- mapping
# pyautogui types '<' as '>' where the keymap has a '<>' key: press shift+',' instead.
_LESS_THAN_13: dict[str, Any] = {"action_type": "HOTKEY", "parameters": {"keys": ["shift", ","]}}


def to_computer_13(action: Action) -> list[dict[str, Any] | str]:
    """OSWorld `computer_13` actions for one canonical action (in order).

    Each is {'action_type': 'CLICK', 'parameters': {...}} or one of the strings WAIT,
    DONE, FAIL. A drag is MOVE_TO the start then DRAG_TO the end; a scroll at a point is
    MOVE_TO it then SCROLL (dy > 0 scrolls up, dx > 0 right, in wheel notches).
    """
    match action:
        case Click(x=x, y=y, button=button, clicks=clicks):
            return [{"action_type": "CLICK", "parameters": {
                "button": button, "x": x, "y": y, "num_clicks": clicks}}]
        case MouseMove(x=x, y=y):
            return [{"action_type": "MOVE_TO", "parameters": {"x": x, "y": y}}]
        case Drag(start_x=sx, start_y=sy, end_x=ex, end_y=ey):
            return [{"action_type": "MOVE_TO", "parameters": {"x": sx, "y": sy}},
                    {"action_type": "DRAG_TO", "parameters": {"x": ex, "y": ey}}]
        case Scroll(direction=direction, amount=amount, x=x, y=y):
            dx = {"left": -amount, "right": amount}.get(direction, 0)
            dy = {"up": amount, "down": -amount}.get(direction, 0)
            moves: list[dict[str, Any] | str] = []
            if x is not None:
                moves.append({"action_type": "MOVE_TO", "parameters": {"x": x, "y": y}})
            return [*moves, {"action_type": "SCROLL", "parameters": {"dx": dx, "dy": dy}}]
        case Type(text=text) if not text.isascii():
            raise UnsupportedActionError(
                "OSWorld computer_13 types with pyautogui.typewrite, which drops non-ASCII "
                f"characters: cannot type {text!r} (use the pyautogui action space)")
        case Type(text=text) if "<" in text:
            out: list[dict[str, Any] | str] = []
            for i, part in enumerate(text.split("<")):
                if i:
                    out.append(_LESS_THAN_13)
                if part:
                    out.append({"action_type": "TYPING", "parameters": {"text": part}})
            return out
        case Type(text=text):
            return [{"action_type": "TYPING", "parameters": {"text": text}}]
        case Key(keys=keys) if len(keys) == 1:
            return [{"action_type": "PRESS", "parameters": {"key": computer_13_key(keys[0])}}]
        case Key(keys=keys):
            return [{"action_type": "HOTKEY",
                     "parameters": {"keys": [computer_13_key(k) for k in keys]}}]
        case SystemButton(button="enter"):
            return [{"action_type": "PRESS", "parameters": {"key": "enter"}}]
        case Wait():
            return ["WAIT"]
        case Answer():
            return ["DONE"]
        case Terminate(status=status):
            return ["DONE" if status == "success" else "FAIL"]
    raise UnsupportedActionError(f"OSWorld computer_13 cannot express {action!r}")


def to_pyautogui_code(action: Action) -> str:
    """OSWorld `pyautogui` action-space code (or WAIT/DONE/FAIL) for one action: the
    shared exporter, with its error turned into this module's UnsupportedActionError."""
    from actions.exporters import UnsupportedActionError as ExportError
    from actions.exporters import to_pyautogui

    try:
        return to_pyautogui(action)
    except ExportError as exc:
        raise UnsupportedActionError(str(exc)) from exc


def encode(action: Action, action_space: str) -> list[Any]:
    """What DesktopEnv.step receives, in order, for one action in `action_space`."""
    if action_space == "pyautogui":
        return [to_pyautogui_code(action)]
    if action_space == "computer_13":
        return to_computer_13(action)
    raise ValueError(f"unknown OSWorld action space {action_space!r}; use one of {ACTION_SPACES}")


# mm_agents/qwen3vl_agent.py parse_response: left_click_drag -> dragTo(x, y, duration=0.5)
QWEN3VL_DRAG_DURATION_S = 0.5


def encode_qwen3vl_official(action: Action, pointer: tuple[int, int] | None) -> list[Any]:
    """What OSWorld's Qwen3-VL runner (mm_agents/qwen3vl_agent.py `parse_response`, the
    pyautogui action space) sends DesktopEnv.step for one action; [] where it writes no
    code (the action is not executed and nothing is sent).

    `terminate` is DONE whatever its status; `wait` is WAIT; `triple_click`, `hscroll`
    and `answer` have no branch there; `scroll` is `pyautogui.scroll(pixels)` with the
    model's value as written (not rounded, not capped: `Scroll.pixels`), its coordinate
    ignored; a `left_click_drag` that starts where the cursor is (`pointer`)
    is `pyautogui.dragTo(x, y, duration=0.5)`. Everything else is the shared exporter's
    code (the same pyautogui calls the reference writes for those actions).
    """
    match action:
        case Terminate():
            return ["DONE"]
        case Wait():
            return ["WAIT"]
        case Answer():
            return []
        case Click(clicks=3):
            return []
        case Scroll(direction="left" | "right"):
            return []
        case Scroll(pixels=pixels) if pixels is not None:
            return [f"pyautogui.scroll({pixels})"]  # as the model wrote it
        case Scroll(direction=direction, amount=amount):
            return [f"pyautogui.scroll({amount if direction == 'up' else -amount})"]
        case Drag(start_x=sx, start_y=sy, end_x=ex, end_y=ey) if pointer == (sx, sy):
            return [f"pyautogui.dragTo({ex}, {ey}, duration={QWEN3VL_DRAG_DURATION_S})"]
    return [to_pyautogui_code(action)]
