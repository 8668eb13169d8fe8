"""Actions in words, with their coordinates: what the live stream, the confirmation prompt
and the report's captions show a person (e.g. ``click (512, 300)``, ``type "hello"``)."""

from __future__ import annotations

import json

from actions.models import Action


def action_in_words(action: Action) -> str:
    """A short description of an action with its coordinates, e.g. "click (512, 300)"."""
    data = action.model_dump(mode="json")
    kind = data.pop("type")
    if kind in ("drag", "swipe"):
        return (f"{kind} ({data['start_x']}, {data['start_y']}) → "
                f"({data['end_x']}, {data['end_y']})")
    if kind == "click":
        button = "" if data.get("button") == "left" else f"{data.get('button')} "
        times = {1: "", 2: "double-", 3: "triple-"}.get(data.get("clicks", 1), "")
        return f"{times}{button}click ({data['x']}, {data['y']})"
    if kind in ("mouse_move", "long_press"):
        return f"{kind.replace('_', ' ')} ({data['x']}, {data['y']})"
    if kind == "scroll":
        where = f" at ({data['x']}, {data['y']})" if data.get("x") is not None else ""
        return f"scroll {data['direction']} {data['amount']}{where}"
    if kind == "type":
        return f"type {json.dumps(data['text'], ensure_ascii=False)}"
    if kind == "key":
        return "key " + "+".join(data["keys"])
    if kind == "open_app":
        return f"open app {json.dumps(data['name'], ensure_ascii=False)}"
    if kind == "navigate":
        return f"navigate to {data['url']}"
    if kind == "system_button":
        return f"press {data['button']}"
    if kind == "wait":
        return f"wait {data['seconds']} s"
    if kind == "answer":
        return f"answer {json.dumps(data['text'], ensure_ascii=False)}"
    if kind == "terminate":
        return f"terminate ({data['status']})"
    rest = ", ".join(f"{k}={v}" for k, v in data.items())
    return f"{kind} {rest}".strip()


__all__ = ["action_in_words"]
