"""The Qwen function-call protocol, declared once: action names, parameters, tool schemas.

`QWEN_ACTIONS` is the single table that maps each Qwen action name (the `action`
argument of a `computer_use` / `mobile_use` call) to the canonical action type it
means, the canonical field values the name implies (``double_click`` = a left click
with ``clicks=2``) and the parameters it takes. The tool schemas below, the parser
(`actions.parsing`) and the renderer are all built from this table.

The schemas reproduce the function definitions of Qwen3-VL's computer-use and
mobile-agent cookbooks (same action enums, parameter names and description text). Two
additions, both optional for the model: ``coordinate2`` on ``computer_use`` (the end of a
``left_click_drag`` that starts at ``coordinate``; the cookbook drags from the current
cursor position) and ``answer`` on ``mobile_use``. Actions the cookbooks have no name
for (``navigate``, a right double click, ...) are *extensions*: the parser accepts and
the renderer writes them, but they are not advertised to the model unless asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from actions.dialects import CoordinateConverter, Dialect
from actions.observation import Size

__all__ = [
    "COMPUTER_USE", "COMPUTER_USE_COOKBOOK", "MOBILE_USE", "MOBILE_USE_AGENT", "TOOL_VARIANTS",
    "build_tool", "QWEN_ACTIONS", "QwenActionSpec", "QwenParamSpec",
    "ToolSpec", "TOOLS", "computer_use_tool", "mobile_use_tool", "tool_for_platform",
    "tool_name_for_platform",
]

COMPUTER_USE = "computer_use"
MOBILE_USE = "mobile_use"
PLATFORMS = ("desktop", "web", "mobile")


@dataclass(frozen=True)
class QwenActionSpec:
    """One Qwen action name and what it means canonically.

    name: the value of the `action` argument.
    canonical: the canonical action `type` it produces.
    fixed: canonical field values the name implies (e.g. button/clicks for clicks).
    required / optional: the call parameters it reads.
    tools: the tools whose schema advertises it (empty: an extension every tool parses).
    description: its line in the schema's action description.
    """

    name: str
    canonical: str
    description: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tools: tuple[str, ...] = ()


def _spec(name: str, canonical: str, description: str, *, required: tuple[str, ...] = (),
          optional: tuple[str, ...] = (), fixed: dict[str, Any] | None = None,
          tools: tuple[str, ...] = ()) -> QwenActionSpec:
    return QwenActionSpec(name, canonical, description, required, optional,
                          MappingProxyType(dict(fixed or {})), tools)


_CU, _MU = (COMPUTER_USE,), (MOBILE_USE,)
_BOTH = (COMPUTER_USE, MOBILE_USE)

# The declaration table. Order within a tool = order of that tool's action enum.
QWEN_ACTIONS: tuple[QwenActionSpec, ...] = (
    # computer_use, as in Qwen3-VL's computer_use cookbook.
    _spec("key", "key", "Performs key down presses on the arguments passed in order, then "
          "performs key releases in reverse order.", required=("keys",), tools=_CU),
    _spec("type", "type", "Type a string of text on the keyboard.", required=("text",), tools=_CU),
    _spec("mouse_move", "mouse_move", "Move the cursor to a specified (x, y) pixel coordinate "
          "on the screen.", required=("coordinate",), tools=_CU),
    _spec("left_click", "click", "Click the left mouse button at a specified (x, y) pixel "
          "coordinate on the screen.", required=("coordinate",), optional=("clicks",),
          fixed={"button": "left", "clicks": 1}, tools=_CU),
    _spec("left_click_drag", "drag", "Click and drag the cursor to a specified (x, y) pixel "
          "coordinate on the screen.", required=("coordinate",), optional=("coordinate2",),
          tools=_CU),
    _spec("right_click", "click", "Click the right mouse button at a specified (x, y) pixel "
          "coordinate on the screen.", required=("coordinate",), optional=("clicks",),
          fixed={"button": "right", "clicks": 1}, tools=_CU),
    _spec("middle_click", "click", "Click the middle mouse button at a specified (x, y) pixel "
          "coordinate on the screen.", required=("coordinate",), optional=("clicks",),
          fixed={"button": "middle", "clicks": 1}, tools=_CU),
    _spec("double_click", "click", "Double-click the left mouse button at a specified (x, y) "
          "pixel coordinate on the screen.", required=("coordinate",),
          fixed={"button": "left", "clicks": 2}, tools=_CU),
    _spec("triple_click", "click", "Triple-click the left mouse button at a specified (x, y) "
          "pixel coordinate on the screen (simulated as double-click since it's the closest "
          "action).", required=("coordinate",), fixed={"button": "left", "clicks": 3}, tools=_CU),
    _spec("scroll", "scroll", "Performs a scroll of the mouse scroll wheel.",
          required=("pixels",), optional=("coordinate",), tools=_CU),
    _spec("hscroll", "scroll", "Performs a horizontal scroll (mapped to regular scroll).",
          required=("pixels",), optional=("coordinate",), tools=_CU),
    # Shared by both tools (their enums list them at different places, see ToolSpec).
    _spec("wait", "wait", "Wait specified seconds for the change to happen.",
          required=("time",), tools=_BOTH),
    _spec("terminate", "terminate", "Terminate the current task and report its completion "
          "status.", required=("status",), tools=_BOTH),
    _spec("answer", "answer", "Answer a question.", required=("text",), tools=_BOTH),
    # mobile_use, as in the mobile-agent cookbook.
    _spec("mobile_key", "key", "Perform a key event on the mobile device.\n    - This "
          "supports adb's `keyevent` syntax.\n    - Examples: \"volume_up\", \"volume_down\", "
          "\"power\", \"camera\", \"clear\".", required=("text",), tools=_MU),
    _spec("click", "click", "Click the point on the screen with coordinate (x, y).",
          required=("coordinate",), optional=("clicks",), fixed={"button": "left", "clicks": 1},
          tools=_MU),
    _spec("long_press", "long_press", "Press the point on the screen with coordinate (x, y) "
          "for specified seconds.", required=("coordinate", "time"), tools=_MU),
    _spec("swipe", "swipe", "Swipe from the starting point with coordinate (x, y) to the end "
          "point with coordinates2 (x2, y2).", required=("coordinate", "coordinate2"),
          optional=("time",), tools=_MU),
    _spec("mobile_type", "type", "Input the specified text into the activated input box.",
          required=("text",), tools=_MU),
    _spec("system_button", "system_button", "Press the system button.", required=("button",),
          tools=_MU),
    _spec("open", "open_app", "Open an app on the device.", required=("text",), tools=_MU),
    # Extensions: parsed from either tool, rendered when no cookbook name fits.
    _spec("navigate", "navigate", "Load a URL in the browser.", required=("url",)),
)

# `key` means the same on both tools but takes `keys` (array) on computer_use and `text`
# (one adb key name) on mobile_use, and `type` is described differently on each; the table
# keeps them apart under distinct spec names that are written as the same wire name.
_SPEC_ALIASES_ON_WIRE = {"mobile_key": "key", "mobile_type": "type"}


def wire_name(spec: QwenActionSpec) -> str:
    """The `action` value written on the wire for a spec."""
    return _SPEC_ALIASES_ON_WIRE.get(spec.name, spec.name)


@dataclass(frozen=True)
class QwenParamSpec:
    """One parameter of a tool. `{required}` in `description` is replaced by the
    "Required only by ..." sentence computed from the table."""

    name: str
    json_type: str
    description: str
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ToolSpec:
    """One function definition: its name, description lines and parameters."""

    name: str
    description: str  # "{resolution_line}" is replaced per dialect/screen
    action_intro: str
    action_order: tuple[str, ...]  # spec names, in enum order
    params: tuple[QwenParamSpec, ...]
    # Per-variant wording of an action's line ({spec name: text}) where a published
    # variant describes it differently from the table (the mobile-agent cookbook's answer).
    action_descriptions: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}))


_COORD_DESC = ("(x, y): The x (pixels from the left edge) and y (pixels from the top edge) "
               "coordinates to move the mouse to.")

TOOLS: dict[str, ToolSpec] = {
    COMPUTER_USE: ToolSpec(
        name=COMPUTER_USE,
        description=(
            "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
            "* This is an interface to a desktop GUI. You do not have access to a terminal or "
            "applications menu. You must click on desktop icons to start applications.\n"
            "* Some applications may take time to start or process actions, so you may need to "
            "wait and take successive screenshots to see the results of your actions. E.g. if "
            "you click on Firefox and a window doesn't open, try wait and taking another "
            "screenshot.\n"
            "{resolution_line}\n"
            "* Whenever you intend to move the cursor to click on an element like an icon, you "
            "should consult a screenshot to determine the coordinates of the element before "
            "moving the cursor.\n"
            "* If you tried clicking on a program or link but it failed to load, even after "
            "waiting, try adjusting your cursor position so that the tip of the cursor visually "
            "falls on the element that you want to click.\n"
            "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
            "center of the element. Don't click boxes on their edges."
        ),
        action_intro="The action to perform. The available actions are:",
        action_order=("key", "type", "mouse_move", "left_click", "left_click_drag",
                      "right_click", "middle_click", "double_click", "triple_click", "scroll",
                      "hscroll", "wait", "terminate", "answer"),
        params=(
            QwenParamSpec("keys", "array", "{required}"),
            QwenParamSpec("text", "string", "{required}"),
            QwenParamSpec("coordinate", "array", _COORD_DESC),
            QwenParamSpec("coordinate2", "array", "(x, y): The end point of a drag that starts "
                          "at `coordinate`. Used only by `action=left_click_drag`; without it "
                          "the drag starts at the current cursor position."),
            QwenParamSpec("pixels", "number", "The amount of scrolling to perform. Positive "
                          "values scroll up, negative values scroll down. {required}"),
            QwenParamSpec("time", "number", "The seconds to wait. {required}"),
            QwenParamSpec("status", "string", "The status of the task. {required}",
                          enum=("success", "failure")),
        ),
    ),
    MOBILE_USE: ToolSpec(
        name=MOBILE_USE,
        description=(
            "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
            "* This is an interface to a mobile device with touchscreen. You can perform "
            "actions like clicking, typing, swiping, etc.\n"
            "* Some applications may take time to start or process actions, so you may need to "
            "wait and take successive screenshots to see the results of your actions.\n"
            "{resolution_line}\n"
            "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
            "center of the element. Don't click boxes on their edges unless asked."
        ),
        action_intro="The action to perform. The available actions are:",
        action_order=("mobile_key", "click", "long_press", "swipe", "mobile_type", "system_button",
                      "open", "wait", "terminate", "answer"),
        params=(
            QwenParamSpec("coordinate", "array", _COORD_DESC + " {required}"),
            QwenParamSpec("coordinate2", "array", _COORD_DESC + " {required}"),
            QwenParamSpec("text", "string", "{required}"),
            QwenParamSpec("time", "number", "The seconds to wait. {required}"),
            QwenParamSpec("button", "string", "Back means returning to the previous interface, "
                          "Home means returning to the desktop, Menu means opening the "
                          "application background menu, and Enter means pressing the enter. "
                          "{required}", enum=("Back", "Home", "Menu", "Enter")),
            QwenParamSpec("status", "string", "The status of the task. {required}",
                          enum=("success", "failure")),
        ),
    ),
}


# Published variants of the two tools (used by prompt profiles, policies.profiles).
# `computer_use` exactly as Qwen3-VL's cookbooks/utils/agent_function_call.py ComputerUse
# (no `coordinate2`); `mobile_use` as cookbooks/mobile_agent.ipynb's system prompt (its
# own enum: no key/open, an `answer` described as "Output the answer.").
COMPUTER_USE_COOKBOOK = "computer_use/cookbook"
MOBILE_USE_AGENT = "mobile_use/mobile_agent"
TOOL_VARIANTS: dict[str, ToolSpec] = {
    COMPUTER_USE: TOOLS[COMPUTER_USE],
    MOBILE_USE: TOOLS[MOBILE_USE],
    COMPUTER_USE_COOKBOOK: ToolSpec(
        name=COMPUTER_USE, description=TOOLS[COMPUTER_USE].description,
        action_intro=TOOLS[COMPUTER_USE].action_intro,
        action_order=TOOLS[COMPUTER_USE].action_order,
        params=tuple(p for p in TOOLS[COMPUTER_USE].params if p.name != "coordinate2"),
    ),
    MOBILE_USE_AGENT: ToolSpec(
        name=MOBILE_USE, description=TOOLS[MOBILE_USE].description,
        action_intro=TOOLS[MOBILE_USE].action_intro,
        action_order=("click", "long_press", "swipe", "mobile_type", "answer", "system_button",
                      "wait", "terminate"),
        params=TOOLS[MOBILE_USE].params,
        action_descriptions=MappingProxyType({"answer": "Output the answer."}),
    ),
}

_SPECS_BY_NAME: dict[str, QwenActionSpec] = {spec.name: spec for spec in QWEN_ACTIONS}


def spec_named(name: str) -> QwenActionSpec:
    """The table entry with this spec name (KeyError if none)."""
    return _SPECS_BY_NAME[name]


def _join_actions(names: list[str]) -> str:
    quoted = [f"`action={n}`" for n in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _resolution_line(converter: CoordinateConverter) -> str:
    if converter.dialect is Dialect.NORMALIZED:
        return ("* Coordinates are fractions of the screen: x from 0.0 (left edge) to 1.0 "
                "(right edge), y from 0.0 (top edge) to 1.0 (bottom edge).")
    return f"* The screen's resolution is {converter.resolution_text}."


def build_tool(tool: ToolSpec, dialect: Dialect | str, screen_size: Size,
               image_size: Size | None = None, include_extensions: bool = False,
               resolution_text: str | None = None) -> dict[str, Any]:
    """One function definition (OpenAI tools format) from a ToolSpec. `resolution_text`
    overrides the "WxH" the description states (the mobile-agent cookbook says 999x999
    for its 0..999 grid where OSWorld's agent says 1000x1000 for the same grid)."""
    converter = CoordinateConverter(dialect, screen_size, image_size)
    specs = [_SPECS_BY_NAME[name] for name in tool.action_order]
    if include_extensions:
        specs += [s for s in QWEN_ACTIONS if not s.tools]
    action_lines = [tool.action_intro] + [
        f"* `{wire_name(s)}`: {tool.action_descriptions.get(s.name, s.description)}"
        for s in specs]
    properties: dict[str, Any] = {
        "action": {
            "description": "\n".join(action_lines),
            "enum": [wire_name(s) for s in specs],
            "type": "string",
        }
    }
    params = list(tool.params)
    if include_extensions:
        params.append(QwenParamSpec("url", "string", "{required}"))
    for param in params:
        required_by = [wire_name(s) for s in specs if param.name in s.required]
        sentence = f"Required only by {_join_actions(required_by)}." if required_by else ""
        if param.name == "button":  # the cookbook's sentence has no final period
            sentence = sentence.rstrip(".")
        entry: dict[str, Any] = {
            "description": param.description.replace("{required}", sentence).strip()}
        # Key order as the cookbooks write it: `button` lists its enum before its type,
        # `status` after (json.dumps keeps insertion order, and the model reads the text).
        if param.enum and param.name == "button":
            entry["enum"] = list(param.enum)
        entry["type"] = param.json_type
        if param.enum and param.name != "button":
            entry["enum"] = list(param.enum)
        properties[param.name] = entry
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description.replace(
                "{resolution_line}",
                f"* The screen's resolution is {resolution_text}." if resolution_text
                else _resolution_line(converter)),
            "parameters": {"properties": properties, "required": ["action"], "type": "object"},
        },
    }


def computer_use_tool(dialect: Dialect | str, screen_size: Size, image_size: Size | None = None,
                      include_extensions: bool = False) -> dict[str, Any]:
    """The `computer_use` function definition (OpenAI tools format) for a dialect.

    The description states the resolution the model should write coordinates in: the
    1000x1000 grid for qwen3, the resized image size for qwen25. `include_extensions`
    also advertises qwen-cua's extra actions (navigate).
    """
    return build_tool(TOOLS[COMPUTER_USE], dialect, screen_size, image_size, include_extensions)


def mobile_use_tool(dialect: Dialect | str, screen_size: Size, image_size: Size | None = None,
                    include_extensions: bool = False) -> dict[str, Any]:
    """The `mobile_use` function definition (OpenAI tools format) for a dialect."""
    return build_tool(TOOLS[MOBILE_USE], dialect, screen_size, image_size, include_extensions)


def tool_name_for_platform(platform: str) -> str:
    """'desktop' and 'web' use computer_use, 'mobile' uses mobile_use."""
    key = platform.strip().lower()
    if key in ("desktop", "web"):
        return COMPUTER_USE
    if key == "mobile":
        return MOBILE_USE
    raise ValueError(f"unknown platform {platform!r}: use one of {', '.join(PLATFORMS)}")


def tool_for_platform(platform: str, dialect: Dialect | str, screen_size: Size,
                      image_size: Size | None = None,
                      include_extensions: bool = False) -> dict[str, Any]:
    """The tool a platform's model gets: computer_use for desktop/web, mobile_use for mobile."""
    if tool_name_for_platform(platform) == MOBILE_USE:
        return mobile_use_tool(dialect, screen_size, image_size, include_extensions)
    return computer_use_tool(dialect, screen_size, image_size, include_extensions)
