"""One tool call's arguments -> one canonical action (the second step of `actions.parsing`).

Models name actions and arguments loosely: aliases (``tap``, ``hotkey``, ``done``),
numbers as strings, points as ``"[x, y]"`` or ``{"x":, "y":}``, keys as ``"ctrl+c"``,
a missing scroll amount or terminate status. `CallReader` normalises them against the
declaration table (`actions.schemas`), converts coordinates from the model's dialect to
screen pixels through `actions.dialects.CoordinateConverter` (the one place that does),
and reports what it clamped or assumed in `warnings`; a call it cannot read raises
`CallError` with a message that names the problem.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import ValidationError

from actions.call_text import CallError, snippet
from actions.dialects import CoordinateConverter, CoordinateError
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
)
from actions.schemas import COMPUTER_USE, QWEN_ACTIONS, QwenActionSpec, wire_name

# Action names models use besides the cookbooks' own.
ACTION_ALIASES: dict[str, str] = {
    "tap": "click", "press": "key", "hotkey": "key", "key_press": "key", "keypress": "key",
    "drag": "left_click_drag", "open_app": "open", "launch": "open", "launch_app": "open",
    "long_click": "long_press", "type_text": "type", "input_text": "type", "input": "type",
    "move": "mouse_move", "hover": "mouse_move", "done": "terminate", "finish": "terminate",
    "finished": "terminate", "go_to": "navigate", "goto": "navigate", "open_url": "navigate",
    "sleep": "wait",
}
_STATUS_ALIASES = {
    "success": "success", "succeeded": "success", "successful": "success", "done": "success",
    "complete": "success", "completed": "success", "true": "success",
    "failure": "failure", "fail": "failure", "failed": "failure", "infeasible": "failure",
    "false": "failure",
}
CANONICAL_DEFAULTS = {"wait_s": 1.0, "long_press_s": 1.0, "swipe_s": 0.3}
SCROLL_DEFAULT_PIXELS = 1  # a scroll call without pixels: one notch up (GUI-Owl's default)


def _number(value: Any, what: str) -> float:
    """A number from a JSON value; numeric strings accepted. Raises CallError."""
    if isinstance(value, bool) or value is None:
        raise CallError(f"{what} must be a number, got {snippet(value)}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        try:
            number = float(value.strip()) if len(value) <= 64 else math.nan
        except ValueError:
            raise CallError(f"{what} must be a number, got {snippet(value)}") from None
    else:
        raise CallError(f"{what} must be a number, got {snippet(value)}")
    if not math.isfinite(number):
        raise CallError(f"{what} must be a finite number, got {snippet(value)}")
    return number


_POINT_TEXT = re.compile(r"^\s*[\[(]?\s*([^,\s\])]+)\s*[,\s]\s*([^,\s\])]+)\s*[\])]?\s*$")


def _point(value: Any, what: str) -> tuple[float, float]:
    """An (x, y) pair in model units from [x, y], "[x, y]", "x, y" or {"x":, "y":}."""
    if isinstance(value, str):
        match = _POINT_TEXT.match(value) if len(value) <= 64 else None
        if not match:
            raise CallError(f"{what} must be [x, y], got {snippet(value)}")
        value = [match.group(1), match.group(2)]
    if isinstance(value, dict) and "x" in value and "y" in value:
        value = [value["x"], value["y"]]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise CallError(f"{what} must be [x, y], got {snippet(value)}")
    return _number(value[0], f"{what} x"), _number(value[1], f"{what} y")


class CallReader:
    """Turns one call's arguments into a canonical action."""

    def __init__(self, converter: CoordinateConverter | None, prefix: str,
                 pointer: tuple[int, int] | None, warnings: list[str], tool: str | None = None):
        self.converter = converter
        self.prefix = prefix
        self.pointer = pointer
        self.warnings = warnings
        self.tool = tool  # the call's function name (computer_use / mobile_use), if given

    def screen_point(self, args: dict[str, Any], *keys: str, what: str | None = None
                     ) -> tuple[int, int] | None:
        """The first of `keys` present in args, converted to screen pixels."""
        for key in keys:
            if key in args and args[key] is not None:
                label = what or key
                x, y = _point(args[key], label)
                if self.converter is None:
                    raise CallError("no screen_size was given, so coordinates cannot be "
                                     "converted to screen pixels")
                try:
                    x_px, y_px, clamped = self.converter.to_screen(x, y)
                except CoordinateError as exc:
                    raise CallError(f"{label}: {exc}") from None
                if clamped:
                    ex, ey = self.converter.model_extent
                    self.warnings.append(
                        f"{self.prefix}: {label} ({x:g}, {y:g}) is outside the "
                        f"{self.converter.dialect.value} range [0, {ex:g}] x [0, {ey:g}]; "
                        f"clamped to ({x_px}, {y_px}) on the {self.converter.screen_size} screen"
                    )
                return x_px, y_px
        return None

    def required_point(self, args: dict[str, Any], name: str, *keys: str) -> tuple[int, int]:
        point = self.screen_point(args, *keys)
        if point is None:
            if self.pointer is not None and keys[0] == "coordinate":
                self.warnings.append(f"{self.prefix}: {name} without coordinate; used the "
                                     f"cursor position {self.pointer}")
                return self.pointer
            raise CallError(f"{name} needs {keys[0]} [x, y]")
        return point

    def seconds(self, args: dict[str, Any], key: str, default: float, low: float, high: float,
                name: str, low_inclusive: bool = True) -> float:
        if key not in args or args[key] is None:
            return default
        value = _number(args[key], key)
        if value < low or (value == low and not low_inclusive):
            raise CallError(f"{name} {key} must be {'>=' if low_inclusive else '>'} {low:g} "
                             f"seconds, got {value:g}")
        if value > high:
            self.warnings.append(f"{self.prefix}: {name} {key} {value:g} s clamped to {high:g} s")
            return high
        return value

    def text(self, args: dict[str, Any], name: str, *keys: str) -> str:
        for key in keys:
            if key in args and args[key] is not None:
                value = args[key]
                if isinstance(value, str):
                    return value
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return str(value)
                raise CallError(f"{name} {key} must be a string, got {snippet(value)}")
        raise CallError(f"{name} needs {keys[0]}")

    def read(self, args: dict[str, Any]) -> Action:
        raw_name = args.get("action")
        if not isinstance(raw_name, str) or not raw_name.strip():
            raise CallError('the arguments have no "action" name')
        name = raw_name.strip().lower()
        name = ACTION_ALIASES.get(name, name)
        spec = _PARSE_SPECS.get(name)
        if spec is None:
            raise CallError(f"unknown action {raw_name!r}: use one of {sorted(_PARSE_SPECS)}")
        builder = getattr(self, f"_build_{spec.canonical}")
        try:
            return builder(name, spec, args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                for err in exc.errors()
            )
            raise CallError(f"{name}: {problems}") from None

    def _build_click(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        x, y = self.required_point(args, name, "coordinate", "point", "position")
        clicks = spec.fixed["clicks"]
        if "clicks" in spec.optional and args.get("clicks") is not None:
            count = _number(args["clicks"], "clicks")
            if count not in (1, 2, 3):
                raise CallError(f"{name} clicks must be 1, 2 or 3, got {count:g}")
            clicks = int(count)
        return Click(x=x, y=y, button=spec.fixed["button"], clicks=clicks)

    def _build_mouse_move(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        x, y = self.required_point(args, name, "coordinate", "point", "position")
        return MouseMove(x=x, y=y)

    def _build_drag(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        end = self.screen_point(args, "coordinate2", "end_coordinate")
        if end is not None:
            start = self.screen_point(args, "coordinate", "start_coordinate")
        else:
            end = self.screen_point(args, "coordinate")
            start = self.pointer
            if end is None:
                raise CallError(f"{name} needs coordinate [x, y] (where to drag to)")
            if start is None:
                raise CallError(f"{name} with only coordinate drags from the cursor, whose "
                                 "position is unknown: give coordinate (start) and coordinate2 "
                                 "(end), or mouse_move to the start first")
        if start is None:
            raise CallError(f"{name} needs coordinate [x, y] (where the drag starts)")
        return Drag(start_x=start[0], start_y=start[1], end_x=end[0], end_y=end[1])

    def _build_scroll(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        direction = args.get("direction")
        written: int | float | None = None  # the model's pixels, as it wrote them
        if isinstance(direction, str) and direction.strip().lower() in ("up", "down", "left",
                                                                         "right"):
            direction = direction.strip().lower()
            amount_value = args.get("amount", args.get("pixels", 3))
            amount = abs(_number(amount_value, "amount"))
        else:
            raw_pixels = args.get("pixels")
            if raw_pixels is None:
                # GUI-Owl's runner scrolls pyautogui.scroll(1) when pixels is missing (one
                # notch up); OSWorld's would scroll 0, i.e. not at all. We take GUI-Owl's,
                # the one reference under which the call does something, and say so.
                self.warnings.append(f"{self.prefix}: {name} without pixels; scrolled "
                                     f"{SCROLL_DEFAULT_PIXELS} (as GUI-Owl's runner)")
                raw_pixels = SCROLL_DEFAULT_PIXELS
            pixels = _number(raw_pixels, "pixels")
            written = _as_written(raw_pixels, pixels)
            horizontal = name == "hscroll"
            if pixels > 0:
                direction = "right" if horizontal else "up"
            else:
                direction = "left" if horizontal else "down"
            amount = abs(pixels)
        notches = _round_half_up(amount)
        if notches < 1:
            raise CallError(f"{name} amount must be at least 1 wheel notch, got {amount:g}")
        if notches > 100:
            self.warnings.append(f"{self.prefix}: {name} amount {notches} clamped to 100 notches")
            notches = 100
        position = self.screen_point(args, "coordinate", "point", "position")
        signed = notches if direction in ("up", "right") else -notches
        # The model's value, kept where the notches do not say it exactly (OSWorld's
        # official protocol sends it as written).
        kept = None if written is None or (type(written) is int and written == signed) else written
        x, y = position if position is not None else (None, None)
        return Scroll(direction=direction, amount=notches, x=x, y=y, pixels=kept)

    def _build_type(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        text = self.text(args, name, "text", "content", "value")
        if text == "":
            raise CallError(f"{name} needs a non-empty text")
        return Type(text=text)

    def _build_key(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        value = next((args[k] for k in ("keys", "text", "key") if args.get(k) is not None), None)
        if value is None:
            raise CallError(f"{name} needs keys (e.g. [\"ctrl\", \"c\"])")
        if isinstance(value, str):
            keys = _split_key_text(value)
        elif isinstance(value, list | tuple):
            if not all(isinstance(k, str) for k in value):
                raise CallError(f"{name} keys must be strings, got {snippet(value)}")
            keys = [k for k in value]
        else:
            raise CallError(f"{name} keys must be a list of key names, got {snippet(value)}")
        if not keys:
            raise CallError(f"{name} needs at least one key")
        if len(keys) == 1:
            # mobile_use `key` takes an adb key name as text; there the navigation keys are
            # system buttons (app_switch is the cookbook's Menu: "the application background
            # menu"). computer_use's `keys` (a list, or a string some models write) names
            # keyboard keys: "home" is the keyboard's Home key; KEYCODE_MENU is Android's
            # menu key (82), not the recent-apps button.
            raw_key = keys[0].strip().lower()
            single = raw_key.removeprefix("keycode_")
            keyboard_call = self.tool == COMPUTER_USE or not isinstance(value, str)
            home_key = single == "home" and raw_key == single and keyboard_call
            if (single in ("back", "home") and not home_key) or single == "app_switch":
                return SystemButton(button="menu" if single == "app_switch" else single)
            if single == "enter":
                return Key(keys=("enter",))
        return Key(keys=tuple(keys))

    def _build_wait(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        seconds = self.seconds(args, "time", CANONICAL_DEFAULTS["wait_s"], 0.0, 60.0, name)
        return Wait(seconds=seconds)

    def _build_terminate(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        status = args.get("status")
        if status is None:
            # GUI-Owl's runner reads status with default "success"; OSWorld's agent ends the
            # episode on any terminate. The cookbooks' schema requires it.
            self.warnings.append(f"{self.prefix}: {name} without status; taken as success")
            status = "success"
        if isinstance(status, bool):
            status = "success" if status else "failure"
        if not isinstance(status, str) or status.strip().lower() not in _STATUS_ALIASES:
            raise CallError(f"{name} needs status \"success\" or \"failure\", got "
                             f"{snippet(status)}")
        return Terminate(status=_STATUS_ALIASES[status.strip().lower()])

    def _build_answer(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        return Answer(text=self.text(args, name, "text", "answer", "content"))

    def _build_long_press(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        x, y = self.required_point(args, name, "coordinate", "point", "position")
        seconds = self.seconds(args, "time", CANONICAL_DEFAULTS["long_press_s"], 0.0, 30.0, name,
                               low_inclusive=False)
        return LongPress(x=x, y=y, duration_s=seconds)

    def _build_swipe(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        start = self.screen_point(args, "coordinate", "start_coordinate")
        end = self.screen_point(args, "coordinate2", "end_coordinate")
        if start is None or end is None:
            raise CallError(f"{name} needs coordinate (start) and coordinate2 (end), both [x, y]")
        seconds = self.seconds(args, "time", CANONICAL_DEFAULTS["swipe_s"], 0.0, 10.0, name,
                               low_inclusive=False)
        return Swipe(start_x=start[0], start_y=start[1], end_x=end[0], end_y=end[1],
                     duration_s=seconds)

    def _build_system_button(self, name: str, spec: QwenActionSpec, args: dict[str, Any]
                             ) -> Action:
        button = self.text(args, name, "button", "text").strip().lower()
        if button not in ("back", "home", "menu", "enter"):
            raise CallError(f"{name} button must be Back, Home, Menu or Enter, got {button!r}")
        return SystemButton(button=button)

    def _build_open_app(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        app = self.text(args, name, "text", "app_name", "app", "name").strip()
        if not app:
            raise CallError(f"{name} needs the app's name in text")
        return OpenApp(name=app)

    def _build_navigate(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        url = self.text(args, name, "url", "text").strip()
        if not url:
            raise CallError(f"{name} needs a url")
        return Navigate(url=url)


def _as_written(raw: Any, number: float) -> int | float | None:
    """The number as a harness that formats the raw value (f"{pixels}") writes it: an int
    stays an int, a numeric string its own form; None where the model gave no value."""
    if raw is None:
        return None
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().lstrip("+-").isdigit()):
        return int(number)
    return number


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _split_key_text(text: str) -> list[str]:
    """'ctrl+c' -> ['ctrl', 'c']; 'ctrl++' -> ['ctrl', '+']; 'Return' -> ['Return']."""
    if text.strip() == "" or "+" not in text or text.strip() == "+":
        return [text]
    keys: list[str] = []
    empty_run = False
    for part in text.split("+"):
        if part.strip() == "":
            if not empty_run:
                keys.append("+")
            empty_run = True
        else:
            keys.append(part.strip())
            empty_run = False
    # A trailing/leading single '+' separator yields one empty part: 'ctrl+' means ctrl, +.
    return keys


# Parse lookup: wire action name -> spec ("key" resolves to the computer_use entry; both
# `key` entries build the same canonical Key).
_PARSE_SPECS: dict[str, QwenActionSpec] = {}
for _spec_entry in QWEN_ACTIONS:
    _PARSE_SPECS.setdefault(wire_name(_spec_entry), _spec_entry)


__all__ = [
    "ACTION_ALIASES", "CANONICAL_DEFAULTS", "SCROLL_DEFAULT_PIXELS", "CallReader",
]
