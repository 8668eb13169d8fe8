"""Parse Qwen function calls into canonical actions, and render actions back.

`parse_tool_calls(text, ...)` reads what a Qwen-VL model wrote: free text (the thought),
optional ``<think>`` blocks, and one or several ``<tool_call>{"name": ..., "arguments":
{...}}</tool_call>`` blocks. It is lenient where models are sloppy (JSON in code fences, a
missing closing tag, trailing commas, unbalanced brackets at the end, ``arguments`` given
as a JSON string, numbers written as strings) and strict where being wrong would hurt: a
coordinate outside the dialect's range is clamped *and* reported in `warnings`, and a call
that cannot be understood becomes one message in `errors`. It never raises on any string.

The work is split at its seams: `actions.call_text` finds and decodes the calls in the
text, `actions.call_arguments` turns one call's arguments into an action (aliases,
defaults, the dialect's coordinates to screen pixels), and `actions.rendering` writes the
inverse (`render_tool_call`, `render_response`, `action_to_call`, re-exported here).

Action names and parameters come from the declaration table in `actions.schemas`.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from actions.call_arguments import ACTION_ALIASES, CallReader
from actions.call_text import (
    CallError,
    call_parts,
    extract_calls,
    flatten_calls,
    snippet,
    split_think,
)
from actions.dialects import CoordinateConverter, Dialect
from actions.models import Action, Click, Drag, LongPress, MouseMove, Scroll, Swipe
from actions.observation import Size
from actions.rendering import action_to_call, render_response, render_tool_call

__all__ = [
    "ACTION_ALIASES", "ParsedResponse", "action_to_call", "parse_tool_calls", "pointer_after",
    "render_response", "render_tool_call",
]

logger = logging.getLogger(__name__)


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
    rest, think = split_think(text)
    result.think = think
    thought, raw_calls = extract_calls(rest, result.warnings)
    result.thought = thought.strip()
    for index, raw in enumerate(flatten_calls(raw_calls), start=1):
        prefix = f"tool call {index}"
        try:
            name, args = call_parts(raw, result.warnings, prefix)
            result.calls.append({"name": name, "arguments": args})
            action_name = args.get("action")
            label = f"{prefix} ({action_name[:40]})" if isinstance(action_name, str) else prefix
            reader = CallReader(converter, label, pointer, result.warnings, tool=name)
            action = reader.read(args)
        except CallError as exc:
            result.errors.append(f"{prefix}: {exc} (in {snippet(raw)})")
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
