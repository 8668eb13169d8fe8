"""Finding the tool calls in a model's text (the first step of `actions.parsing`).

What a Qwen-VL model writes: free text (the thought), optional ``<think>`` blocks, and
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks. This module splits
the think blocks off, finds the calls (tagged, in code fences, or bare JSON objects) and
decodes each call's JSON leniently (trailing commas, brackets left open by a truncated
call, single-quoted Python literals), giving ``(tool name, arguments dict)`` per call.
Turning the arguments into an action is `actions.call_arguments`' job.

Every loop here is bounded (`MAX_*`), so adversarial text cannot make parsing slow.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from actions.schemas import COMPUTER_USE, MOBILE_USE

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


class CallError(ValueError):
    """One call cannot become an action; the message goes to ParsedResponse.errors."""


def split_think(text: str) -> tuple[str, str | None]:
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
    """Decode a call's JSON text, repairing common slips. Raises CallError."""
    body = text.strip()
    if body.startswith("```"):
        body = _FENCE_OPEN.sub("", body, count=1)
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
        body = body.strip()
    if not body:
        raise CallError("empty tool call")
    if len(body) > MAX_CALL_CHARS:
        raise CallError(f"tool call is {len(body)} characters long (limit {MAX_CALL_CHARS})")
    first_error = "no JSON object found"
    try:
        return json.loads(body)
    except RecursionError:
        raise CallError("tool call JSON is nested too deeply") from None
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
    raise CallError(f"tool call is not valid JSON ({first_error})")


def _looks_like_call(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_looks_like_call(v) for v in value)
    return isinstance(value, dict) and (
        "arguments" in value or "action" in value or "function" in value
        or ("name" in value and "parameters" in value)
    )


def extract_calls(text: str, warnings: list[str]) -> tuple[str, list[Any]]:
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
                        warnings.append(f"ignored text after a tool call's JSON: {snippet(junk)}")
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
        except CallError:
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


def snippet(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__} that cannot be shown>"
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def flatten_calls(raw: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in raw:
        if isinstance(item, list) and item and all(isinstance(v, dict) for v in item):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def call_parts(raw: Any, warnings: list[str], prefix: str) -> tuple[str | None, dict[str, Any]]:
    """(tool name, arguments dict) of one raw call. Raises CallError."""
    value = _loads_lenient(raw) if isinstance(raw, str) else raw
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]  # OpenAI `tool_calls` entry
    if not isinstance(value, dict):
        raise CallError(f"a tool call must be a JSON object, got {type(value).__name__}")
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
        raise CallError('the call has no "arguments" object')
    if name is not None and not isinstance(name, str):
        raise CallError(f"tool name must be a string, got {snippet(name)}")
    if name is not None and name not in (COMPUTER_USE, MOBILE_USE):
        warnings.append(f"{prefix}: unknown tool {name!r}; read its arguments as "
                        f"{COMPUTER_USE}/{MOBILE_USE} arguments")
    return name, args


__all__ = [
    "CallError", "THINK_CLOSE", "THINK_OPEN", "TOOL_CALL_CLOSE", "TOOL_CALL_OPEN", "call_parts",
    "extract_calls", "flatten_calls", "snippet", "split_think",
]
