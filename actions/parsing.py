"""Parse Qwen function calls into canonical actions, and render actions back.

`parse_tool_calls(text, ...)` reads what a Qwen-VL model wrote: free text (the thought),
optional ``<think>`` blocks, and one or several ``<tool_call>{"name": ..., "arguments":
{...}}</tool_call>`` blocks. It is lenient where models are sloppy (JSON in code fences, a
missing closing tag, trailing commas, unbalanced brackets at the end, ``arguments`` given
as a JSON string, numbers written as strings) and strict where being wrong would hurt: a
coordinate outside the dialect's range is clamped *and* reported in `warnings`, and a call
that cannot be understood becomes one message in `errors`. It never raises on any string.

`render_tool_call(action, ...)` writes the inverse: for every canonical action, the text a
Qwen model would write, such that parsing it gives the same action back (exactly, when
the dialect's grid is at least as fine as the screen; after one quantization otherwise).

Action names and parameters come from the declaration table in `actions.schemas`.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from actions.dialects import CoordinateConverter, CoordinateError, Dialect
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
from actions.observation import Size
from actions.schemas import (
    COMPUTER_USE,
    MOBILE_USE,
    QWEN_ACTIONS,
    QwenActionSpec,
    tool_name_for_platform,
    wire_name,
)

__all__ = [
    "ParsedResponse", "action_to_call", "parse_tool_calls", "pointer_after", "render_response",
    "render_tool_call",
]

logger = logging.getLogger(__name__)

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Bounds that keep parsing fast on adversarial input.
MAX_CALL_CHARS = 200_000  # one call's JSON text
MAX_CALLS = 64  # calls read from one response
MAX_BARE_JSON_ATTEMPTS = 256  # '{' positions tried when there are no tags or fences
MAX_LITERAL_EVAL_CHARS = 20_000  # Python-literal fallback (single-quoted dicts)
SNIPPET_CHARS = 160  # how much of a bad call an error message quotes

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
_CANONICAL_DEFAULTS = {"wait_s": 1.0, "long_press_s": 1.0, "swipe_s": 0.3}
SCROLL_DEFAULT_PIXELS = 1  # a scroll call without pixels: one notch up (GUI-Owl's default)


class ParsedResponse(BaseModel):
    """What one model response says.

    thought: the free text outside tool calls and think blocks (stripped).
    think: the content of ``<think>`` blocks, or None when there were none.
    actions: canonical actions, in the order the calls were written.
    errors: one message per call that could not be turned into an action.
    warnings: things fixed up on the way that a reader should know (clamped coordinates,
        clamped amounts, an unknown tool name, ignored junk).
    calls: the decoded calls ({"name": ..., "arguments": {...}}), including failed ones
        that at least decoded as JSON.
    """

    thought: str = ""
    think: str | None = None
    actions: list[Action] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    calls: list[dict[str, Any]] = Field(default_factory=list)


class _CallError(ValueError):
    """One call cannot become an action; the message goes to ParsedResponse.errors."""


# --------------------------------------------------------------------------- text level


def _split_think(text: str) -> tuple[str, str | None]:
    """Remove think blocks; return (the rest, their joined content or None).

    GUI-Owl's runners write reasoning as <thinking>...</thinking>: read like <think>."""
    text = text.replace("<thinking>", THINK_OPEN).replace("</thinking>", THINK_CLOSE)
    thinks: list[str] = []
    close = text.find(THINK_CLOSE)
    open_ = text.find(THINK_OPEN)
    if close >= 0 and (open_ < 0 or close < open_):
        # Qwen3 thinking templates put <think> in the prompt: the answer starts inside it.
        thinks.append(text[:close])
        text = text[close + len(THINK_CLOSE):]
    rest: list[str] = []
    pos = 0
    while True:
        start = text.find(THINK_OPEN, pos)
        if start < 0:
            rest.append(text[pos:])
            break
        rest.append(text[pos:start])
        body = start + len(THINK_OPEN)
        end = text.find(THINK_CLOSE, body)
        if end >= 0:
            thinks.append(text[body:end])
            pos = end + len(THINK_CLOSE)
        else:  # unclosed: the think runs up to the first call, or to the end
            call = text.find(TOOL_CALL_OPEN, body)
            stop = call if call >= 0 else len(text)
            thinks.append(text[body:stop])
            pos = stop
    think = "\n\n".join(t.strip() for t in thinks if t.strip()) if thinks else None
    return "".join(rest), think


_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?")


def _skip_space_and_fence(text: str, pos: int) -> int:
    """Skip whitespace and at most one code-fence marker (```json) starting at pos."""
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    match = _FENCE_OPEN.match(text, pos)
    if match:
        pos = match.end()
        while pos < n and text[pos].isspace():
            pos += 1
    return pos


_DECODER = json.JSONDecoder()


def _raw_decode(text: str, pos: int) -> tuple[Any, int] | None:
    """Decode one JSON value at pos; None when that fails (also on absurd nesting)."""
    try:
        return _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):
        return None


def _repair_json(text: str) -> str:
    """Fix the usual model slips: trailing commas, and brackets/strings left open at the
    end (a truncated call). Works on the token level, so commas inside strings stay."""
    out: list[str] = []
    stack: list[str] = []
    in_string = False
    escaped = False
    pending_comma = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch.isspace():
            if not pending_comma:
                out.append(ch)
            continue
        if pending_comma:
            pending_comma = False
            if ch not in "}]":
                out.append(",")
        if ch == ",":
            pending_comma = True
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if stack and stack[-1] == ch:
                stack.pop()
            elif stack:  # mismatched closer: close what is open instead
                ch = stack.pop()
            else:
                continue  # stray closer
        out.append(ch)
    if in_string:
        if escaped:
            out.pop()
        out.append('"')
    out.extend(reversed(stack))
    return "".join(out)


def _loads_lenient(text: str) -> Any:
    """Decode a call's JSON text, repairing common slips. Raises _CallError."""
    body = text.strip()
    if body.startswith("```"):
        body = _FENCE_OPEN.sub("", body, count=1)
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
        body = body.strip()
    if not body:
        raise _CallError("empty tool call")
    if len(body) > MAX_CALL_CHARS:
        raise _CallError(f"tool call is {len(body)} characters long (limit {MAX_CALL_CHARS})")
    first_error = "no JSON object found"
    try:
        return json.loads(body)
    except RecursionError:
        raise _CallError("tool call JSON is nested too deeply") from None
    except ValueError as exc:
        first_error = str(exc)
    brace = body.find("{")
    if brace >= 0:
        decoded = _raw_decode(body, brace)
        if decoded is not None:
            return decoded[0]
        repaired = _repair_json(body[brace:])
        decoded = _raw_decode(repaired, 0)
        if decoded is not None:
            return decoded[0]
    if len(body) <= MAX_LITERAL_EVAL_CHARS:
        try:  # single-quoted, Python-literal dicts
            value = ast.literal_eval(body[brace:] if brace >= 0 else body)
            if isinstance(value, dict | list):
                return value
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    raise _CallError(f"tool call is not valid JSON ({first_error})")


def _looks_like_call(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_looks_like_call(v) for v in value)
    return isinstance(value, dict) and (
        "arguments" in value or "action" in value or "function" in value
        or ("name" in value and "parameters" in value)
    )


def _extract_calls(text: str, warnings: list[str]) -> tuple[str, list[Any]]:
    """Split text into (thought text, raw calls). A raw call is a decoded JSON value or
    the undecodable text of a call."""
    raw: list[Any] = []
    thought: list[str] = []
    if TOOL_CALL_OPEN in text:
        pos = 0
        while True:
            start = text.find(TOOL_CALL_OPEN, pos)
            if start < 0:
                break
            if len(raw) >= MAX_CALLS:
                warnings.append(f"read only the first {MAX_CALLS} tool calls; ignored the rest")
                pos = len(text)
                break
            thought.append(text[pos:start])
            body = _skip_space_and_fence(text, start + len(TOOL_CALL_OPEN))
            decoded = _raw_decode(text, body) if body < len(text) and text[body] in "{[" else None
            next_open = text.find(TOOL_CALL_OPEN, start + len(TOOL_CALL_OPEN))
            if decoded is not None:
                value, end = decoded
                close = text.find(TOOL_CALL_CLOSE, end)
                if close >= 0 and (next_open < 0 or close < next_open):
                    junk = text[end:close].strip().strip("`").strip()
                    if junk:
                        warnings.append(f"ignored text after a tool call's JSON: {_snippet(junk)}")
                    pos = close + len(TOOL_CALL_CLOSE)
                else:  # missing closing tag: the call ends with its JSON
                    pos = end
                raw.append(value)
                continue
            close = text.find(TOOL_CALL_CLOSE, start)
            candidates = [i for i in (close, next_open) if i >= 0]
            stop = min(candidates) if candidates else len(text)
            raw.append(text[start + len(TOOL_CALL_OPEN):stop])
            pos = stop + (len(TOOL_CALL_CLOSE) if stop == close else 0)
        thought.append(text[pos:])
        stray = "".join(thought)
        if TOOL_CALL_CLOSE in stray:
            stray = stray.replace(TOOL_CALL_CLOSE, "")
        return stray, raw

    # No tags: calls in code fences, else bare JSON objects in the text.
    fences = list(re.finditer(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|\Z)", text, re.DOTALL))
    pos = 0
    for fence in fences:
        try:
            value = _loads_lenient(fence.group(1))
        except _CallError:
            continue
        if not _looks_like_call(value):
            continue
        thought.append(text[pos:fence.start()])
        raw.append(value)
        pos = fence.end()
        if len(raw) >= MAX_CALLS:
            break
    if raw:
        thought.append(text[pos:])
        return "".join(thought), raw

    attempts = 0
    search = 0
    while attempts < MAX_BARE_JSON_ATTEMPTS and len(raw) < MAX_CALLS:
        brace = text.find("{", search)
        if brace < 0:
            break
        attempts += 1
        decoded = _raw_decode(text, brace)
        if decoded is not None and _looks_like_call(decoded[0]):
            thought.append(text[pos:brace])
            raw.append(decoded[0])
            pos = search = decoded[1]
        else:
            search = brace + 1
    thought.append(text[pos:])
    return "".join(thought), raw


def _snippet(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__} that cannot be shown>"
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


# --------------------------------------------------------------------------- call level


def _flatten(raw: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in raw:
        if isinstance(item, list) and item and all(isinstance(v, dict) for v in item):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def _call_parts(raw: Any, warnings: list[str], prefix: str) -> tuple[str | None, dict[str, Any]]:
    """(tool name, arguments dict) of one raw call. Raises _CallError."""
    value = _loads_lenient(raw) if isinstance(raw, str) else raw
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]  # OpenAI `tool_calls` entry
    if not isinstance(value, dict):
        raise _CallError(f"a tool call must be a JSON object, got {type(value).__name__}")
    name = value.get("name")
    args: Any = None
    for key in ("arguments", "parameters", "args", "input"):
        if key in value:
            args = value[key]
            break
    if args is None and "action" in value:
        args = value
    if isinstance(args, str):
        args = _loads_lenient(args)
    if not isinstance(args, dict):
        raise _CallError('the call has no "arguments" object')
    if name is not None and not isinstance(name, str):
        raise _CallError(f"tool name must be a string, got {_snippet(name)}")
    if name is not None and name not in (COMPUTER_USE, MOBILE_USE):
        warnings.append(f"{prefix}: unknown tool {name!r}; read its arguments as "
                        f"{COMPUTER_USE}/{MOBILE_USE} arguments")
    return name, args


def _number(value: Any, what: str) -> float:
    """A number from a JSON value; numeric strings accepted. Raises _CallError."""
    if isinstance(value, bool) or value is None:
        raise _CallError(f"{what} must be a number, got {_snippet(value)}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        try:
            number = float(value.strip()) if len(value) <= 64 else math.nan
        except ValueError:
            raise _CallError(f"{what} must be a number, got {_snippet(value)}") from None
    else:
        raise _CallError(f"{what} must be a number, got {_snippet(value)}")
    if not math.isfinite(number):
        raise _CallError(f"{what} must be a finite number, got {_snippet(value)}")
    return number


_POINT_TEXT = re.compile(r"^\s*[\[(]?\s*([^,\s\])]+)\s*[,\s]\s*([^,\s\])]+)\s*[\])]?\s*$")


def _point(value: Any, what: str) -> tuple[float, float]:
    """An (x, y) pair in model units from [x, y], "[x, y]", "x, y" or {"x":, "y":}."""
    if isinstance(value, str):
        match = _POINT_TEXT.match(value) if len(value) <= 64 else None
        if not match:
            raise _CallError(f"{what} must be [x, y], got {_snippet(value)}")
        value = [match.group(1), match.group(2)]
    if isinstance(value, dict) and "x" in value and "y" in value:
        value = [value["x"], value["y"]]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _CallError(f"{what} must be [x, y], got {_snippet(value)}")
    return _number(value[0], f"{what} x"), _number(value[1], f"{what} y")


class _CallReader:
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
                    raise _CallError("no screen_size was given, so coordinates cannot be "
                                     "converted to screen pixels")
                try:
                    x_px, y_px, clamped = self.converter.to_screen(x, y)
                except CoordinateError as exc:
                    raise _CallError(f"{label}: {exc}") from None
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
            raise _CallError(f"{name} needs {keys[0]} [x, y]")
        return point

    def seconds(self, args: dict[str, Any], key: str, default: float, low: float, high: float,
                name: str, low_inclusive: bool = True) -> float:
        if key not in args or args[key] is None:
            return default
        value = _number(args[key], key)
        if value < low or (value == low and not low_inclusive):
            raise _CallError(f"{name} {key} must be {'>=' if low_inclusive else '>'} {low:g} "
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
                raise _CallError(f"{name} {key} must be a string, got {_snippet(value)}")
        raise _CallError(f"{name} needs {keys[0]}")

    def read(self, args: dict[str, Any]) -> Action:
        raw_name = args.get("action")
        if not isinstance(raw_name, str) or not raw_name.strip():
            raise _CallError('the arguments have no "action" name')
        name = raw_name.strip().lower()
        name = ACTION_ALIASES.get(name, name)
        spec = _PARSE_SPECS.get(name)
        if spec is None:
            raise _CallError(f"unknown action {raw_name!r}: use one of {sorted(_PARSE_SPECS)}")
        builder = getattr(self, f"_build_{spec.canonical}")
        try:
            return builder(name, spec, args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                for err in exc.errors()
            )
            raise _CallError(f"{name}: {problems}") from None

    def _build_click(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        x, y = self.required_point(args, name, "coordinate", "point", "position")
        clicks = spec.fixed["clicks"]
        if "clicks" in spec.optional and args.get("clicks") is not None:
            count = _number(args["clicks"], "clicks")
            if count not in (1, 2, 3):
                raise _CallError(f"{name} clicks must be 1, 2 or 3, got {count:g}")
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
                raise _CallError(f"{name} needs coordinate [x, y] (where to drag to)")
            if start is None:
                raise _CallError(f"{name} with only coordinate drags from the cursor, whose "
                                 "position is unknown: give coordinate (start) and coordinate2 "
                                 "(end), or mouse_move to the start first")
        if start is None:
            raise _CallError(f"{name} needs coordinate [x, y] (where the drag starts)")
        return Drag(start_x=start[0], start_y=start[1], end_x=end[0], end_y=end[1])

    def _build_scroll(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        direction = args.get("direction")
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
            horizontal = name == "hscroll"
            if pixels > 0:
                direction = "right" if horizontal else "up"
            else:
                direction = "left" if horizontal else "down"
            amount = abs(pixels)
        notches = _round_half_up(amount)
        if notches < 1:
            raise _CallError(f"{name} amount must be at least 1 wheel notch, got {amount:g}")
        if notches > 100:
            self.warnings.append(f"{self.prefix}: {name} amount {notches} clamped to 100 notches")
            notches = 100
        position = self.screen_point(args, "coordinate", "point", "position")
        if position is None:
            return Scroll(direction=direction, amount=notches)
        return Scroll(direction=direction, amount=notches, x=position[0], y=position[1])

    def _build_type(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        text = self.text(args, name, "text", "content", "value")
        if text == "":
            raise _CallError(f"{name} needs a non-empty text")
        return Type(text=text)

    def _build_key(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        value = next((args[k] for k in ("keys", "text", "key") if args.get(k) is not None), None)
        if value is None:
            raise _CallError(f"{name} needs keys (e.g. [\"ctrl\", \"c\"])")
        if isinstance(value, str):
            keys = _split_key_text(value)
        elif isinstance(value, list | tuple):
            if not all(isinstance(k, str) for k in value):
                raise _CallError(f"{name} keys must be strings, got {_snippet(value)}")
            keys = [k for k in value]
        else:
            raise _CallError(f"{name} keys must be a list of key names, got {_snippet(value)}")
        if not keys:
            raise _CallError(f"{name} needs at least one key")
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
        seconds = self.seconds(args, "time", _CANONICAL_DEFAULTS["wait_s"], 0.0, 60.0, name)
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
            raise _CallError(f"{name} needs status \"success\" or \"failure\", got "
                             f"{_snippet(status)}")
        return Terminate(status=_STATUS_ALIASES[status.strip().lower()])

    def _build_answer(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        return Answer(text=self.text(args, name, "text", "answer", "content"))

    def _build_long_press(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        x, y = self.required_point(args, name, "coordinate", "point", "position")
        seconds = self.seconds(args, "time", _CANONICAL_DEFAULTS["long_press_s"], 0.0, 30.0, name,
                               low_inclusive=False)
        return LongPress(x=x, y=y, duration_s=seconds)

    def _build_swipe(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        start = self.screen_point(args, "coordinate", "start_coordinate")
        end = self.screen_point(args, "coordinate2", "end_coordinate")
        if start is None or end is None:
            raise _CallError(f"{name} needs coordinate (start) and coordinate2 (end), both [x, y]")
        seconds = self.seconds(args, "time", _CANONICAL_DEFAULTS["swipe_s"], 0.0, 10.0, name,
                               low_inclusive=False)
        return Swipe(start_x=start[0], start_y=start[1], end_x=end[0], end_y=end[1],
                     duration_s=seconds)

    def _build_system_button(self, name: str, spec: QwenActionSpec, args: dict[str, Any]
                             ) -> Action:
        button = self.text(args, name, "button", "text").strip().lower()
        if button not in ("back", "home", "menu", "enter"):
            raise _CallError(f"{name} button must be Back, Home, Menu or Enter, got {button!r}")
        return SystemButton(button=button)

    def _build_open_app(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        app = self.text(args, name, "text", "app_name", "app", "name").strip()
        if not app:
            raise _CallError(f"{name} needs the app's name in text")
        return OpenApp(name=app)

    def _build_navigate(self, name: str, spec: QwenActionSpec, args: dict[str, Any]) -> Action:
        url = self.text(args, name, "url", "text").strip()
        if not url:
            raise _CallError(f"{name} needs a url")
        return Navigate(url=url)


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


# --------------------------------------------------------------------------- public API


def parse_tool_calls(
    text: str,
    dialect: Dialect | str = Dialect.QWEN3,
    screen_size: Size | None = None,
    image_size: Size | None = None,
    pointer: tuple[int, int] | None = None,
) -> ParsedResponse:
    """Parse a model response into thought, think, canonical actions, errors, warnings.

    dialect / screen_size / image_size: how the model wrote coordinates and the input
    space they map to (see `actions.dialects.CoordinateConverter`; qwen25 needs
    image_size). Without screen_size, calls that carry coordinates become errors.
    pointer: the cursor position in input-space pixels when known; used by calls that
    act "at the cursor" (a left_click_drag with only a target). Positional calls in the
    response move it.

    Never raises on any `text`; raises ValueError only for an invalid configuration
    (unknown dialect, qwen25 without image_size) and TypeError for a screen_size /
    image_size that is neither a Size nor a (width, height) pair.
    """
    screen_size = _as_size(screen_size, "screen_size")
    image_size = _as_size(image_size, "image_size")
    converter = (CoordinateConverter(dialect, screen_size, image_size)
                 if screen_size is not None else None)
    if converter is None:
        Dialect.coerce(dialect)  # still reject a misspelt dialect
    result = ParsedResponse()
    try:
        _parse_into(result, text, converter, pointer)
    except Exception as exc:  # noqa: BLE001 - the contract is: never raise on model text
        logger.exception("parser failure on a %s response", type(text).__name__)
        result.errors.append(f"internal parser error ({type(exc).__name__}: {exc}); "
                             "please report this response")
    return result


def _as_size(value: Any, what: str) -> Size | None:
    """A Size from a Size, a (width, height) pair of positive ints, or None; TypeError for
    anything else (a wrong argument is the caller's bug, not model text to be lenient with)."""
    if value is None or isinstance(value, Size):
        return value
    if (isinstance(value, tuple | list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return Size(width=value[0], height=value[1])
    raise TypeError(f"{what} must be an actions.observation.Size or a (width, height) pair of "
                    f"ints, got {value!r}")


def _parse_into(result: ParsedResponse, text: str, converter: CoordinateConverter | None,
                pointer: tuple[int, int] | None) -> None:
    if not isinstance(text, str):
        result.errors.append(f"expected the response text, got {type(text).__name__}")
        return
    rest, think = _split_think(text)
    result.think = think
    thought, raw_calls = _extract_calls(rest, result.warnings)
    result.thought = thought.strip()
    for index, raw in enumerate(_flatten(raw_calls), start=1):
        prefix = f"tool call {index}"
        try:
            name, args = _call_parts(raw, result.warnings, prefix)
            result.calls.append({"name": name, "arguments": args})
            action_name = args.get("action")
            label = f"{prefix} ({action_name[:40]})" if isinstance(action_name, str) else prefix
            reader = _CallReader(converter, label, pointer, result.warnings, tool=name)
            action = reader.read(args)
        except _CallError as exc:
            result.errors.append(f"{prefix}: {exc} (in {_snippet(raw)})")
            continue
        result.actions.append(action)
        pointer = pointer_after(action, pointer)


def pointer_after(action: Action, pointer: tuple[int, int] | None) -> tuple[int, int] | None:
    """Where the mouse pointer is after `action`, given where it was (None: unknown)."""
    if isinstance(action, Click | MouseMove | LongPress):
        return action.x, action.y
    if isinstance(action, Drag | Swipe):
        return action.end_x, action.end_y
    if isinstance(action, Scroll) and action.x is not None and action.y is not None:
        return action.x, action.y
    return pointer


# --------------------------------------------------------------------------- rendering


def _pick_spec(action: Action, tool: str) -> tuple[QwenActionSpec, dict[str, Any]]:
    """The table entry that writes `action` on `tool`, plus extra arguments it needs.

    Preference: a name the tool advertises with matching implied fields, then one another
    tool advertises, then an extension; a click no name implies exactly (a right double
    click) uses the button's name with an explicit `clicks`.
    """
    fields = action.model_dump()
    candidates = [s for s in QWEN_ACTIONS if s.canonical == action.type]
    if isinstance(action, Scroll):
        wanted = "scroll" if action.direction in ("up", "down") else "hscroll"
        candidates = [s for s in candidates if s.name == wanted]
    if isinstance(action, Key):
        own = "mobile_key" if tool == MOBILE_USE else "key"
        candidates = [s for s in candidates if s.name == own]

    def rank(spec: QwenActionSpec) -> int:
        return 0 if tool in spec.tools else (1 if spec.tools else 2)

    exact = [s for s in candidates if all(fields.get(k) == v for k, v in s.fixed.items())]
    if exact:
        return min(exact, key=rank), {}
    relaxed = [s for s in candidates if "clicks" in s.optional
               and all(fields.get(k) == v for k, v in s.fixed.items() if k != "clicks")]
    if relaxed:
        return min(relaxed, key=rank), {"clicks": fields["clicks"]}
    raise ValueError(f"no Qwen action name renders {action!r}")  # a table bug, not input


def action_to_call(action: Action, dialect: Dialect | str, screen_size: Size,
                   image_size: Size | None = None, platform: str = "desktop") -> dict[str, Any]:
    """The {"name": tool, "arguments": {...}} a Qwen model writes for `action`."""
    tool = tool_name_for_platform(platform)
    converter = CoordinateConverter(dialect, screen_size, image_size)
    spec, extra = _pick_spec(action, tool)

    def point(x: int, y: int) -> list[int | float]:
        return list(converter.to_model(x, y))

    args: dict[str, Any] = {"action": wire_name(spec)}
    if isinstance(action, Click):
        args["coordinate"] = point(action.x, action.y)
        args.update(extra)
    elif isinstance(action, MouseMove):
        args["coordinate"] = point(action.x, action.y)
    elif isinstance(action, Drag):
        args["coordinate"] = point(action.start_x, action.start_y)
        args["coordinate2"] = point(action.end_x, action.end_y)
    elif isinstance(action, Scroll):
        sign = 1 if action.direction in ("up", "right") else -1
        args["pixels"] = sign * action.amount
        if action.x is not None and action.y is not None:
            args["coordinate"] = point(action.x, action.y)
    elif isinstance(action, Type):
        args["text"] = action.text
    elif isinstance(action, Key):
        # As text, "home" would read back as the home button: the Home key goes as a list.
        if spec.name == "mobile_key" and len(action.keys) == 1 and action.keys[0] != "home":
            args["text"] = action.keys[0]
        else:
            args["keys"] = list(action.keys)
    elif isinstance(action, LongPress):
        args["coordinate"] = point(action.x, action.y)
        args["time"] = action.duration_s
    elif isinstance(action, Swipe):
        args["coordinate"] = point(action.start_x, action.start_y)
        args["coordinate2"] = point(action.end_x, action.end_y)
        if action.duration_s != _CANONICAL_DEFAULTS["swipe_s"]:
            args["time"] = action.duration_s
    elif isinstance(action, SystemButton):
        args["button"] = action.button.capitalize()
    elif isinstance(action, OpenApp):
        args["text"] = action.name
    elif isinstance(action, Navigate):
        args["url"] = action.url
    elif isinstance(action, Wait):
        args["time"] = action.seconds
    elif isinstance(action, Answer):
        args["text"] = action.text
    elif isinstance(action, Terminate):
        args["status"] = action.status
    return {"name": tool, "arguments": args}


def render_tool_call(action: Action, dialect: Dialect | str, screen_size: Size,
                     image_size: Size | None = None, platform: str = "desktop") -> str:
    """'<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>' for one action.

    "</" inside strings is written as "<\\/" (valid JSON) so that a typed
    "</tool_call>" can never close the block early for any reader.
    """
    call = action_to_call(action, dialect, screen_size, image_size, platform)
    body = json.dumps(call, ensure_ascii=False).replace("</", "<\\/")
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def render_response(thought: str, actions: list[Action], dialect: Dialect | str,
                    screen_size: Size, image_size: Size | None = None,
                    platform: str = "desktop") -> str:
    """A whole assistant message: the thought, then one tool call per action."""
    parts = [thought.strip()] if thought and thought.strip() else []
    parts += [render_tool_call(a, dialect, screen_size, image_size, platform) for a in actions]
    return "\n".join(parts)
