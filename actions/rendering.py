"""Canonical actions back to the calls a Qwen model writes, in its coordinate dialect.

`render_tool_call(action, ...)` is the inverse of `actions.parsing.parse_tool_calls`: for
every canonical action, the text a Qwen model would write, such that parsing it gives the
same action back (exactly, when the dialect's grid is at least as fine as the screen;
after one quantization otherwise). Screen pixels become model units through
`actions.dialects.CoordinateConverter`; the action name comes from the declaration table
(`actions.schemas`), preferring the names the platform's tool advertises.
"""

from __future__ import annotations

import json
from typing import Any

from actions.call_arguments import CANONICAL_DEFAULTS
from actions.call_text import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from actions.dialects import CoordinateConverter, Dialect
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
    MOBILE_USE,
    QWEN_ACTIONS,
    QwenActionSpec,
    tool_name_for_platform,
    wire_name,
)


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
        if action.duration_s != CANONICAL_DEFAULTS["swipe_s"]:
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


__all__ = ["action_to_call", "render_response", "render_tool_call"]
