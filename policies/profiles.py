"""Prompt profiles: named reproductions of published Qwen3-VL agent setups.

A profile is everything that decides what the model is shown, as data plus a few hooks:
the system text (what precedes the tools block, which variant of the tool with which
descriptions and enum, how its JSON is written, the response-format block that follows),
how the instruction and the steps no longer shown as screenshots are worded, whether the
image comes before or after that text, how many past screenshots are replayed and what the
replayed assistant turns contain, the coordinate grid, and the generation budget. The one
prompt builder (`policies.prompting.build_prompt`) reads a profile; nothing else differs.

| profile              | reproduces                                                       |
|----------------------|------------------------------------------------------------------|
| `qwen-cua`           | qwen-cua's own layout (the default before profiles): cookbook    |
|                      | system + tool, history as text + 2 replayed screenshots          |
| `qwen3-computer-use` | Qwen3-VL cookbooks/computer_use.ipynb + utils/agent_function_call|
| `qwen3-mobile`       | Qwen3-VL cookbooks/mobile_agent.ipynb                            |
| `osworld-qwen3vl`    | OSWorld mm_agents/qwen3vl_agent.py (Qwen3VLAgent defaults)       |
| `gui-owl`            | X-PLUG/MobileAgent Mobile-Agent-v3.5 computer_use runner         |

Sources (repo, path, commit) are in each profile's `sources`; the golden files under
tests/golden/ pin the full rendered prompt of each profile for a fixed three-step history.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actions.contracts import StepHistory
from actions.dialects import Dialect
from actions.observation import Size
from actions.schemas import (
    COMPUTER_USE,
    COMPUTER_USE_COOKBOOK,
    MOBILE_USE,
    MOBILE_USE_AGENT,
    TOOL_VARIANTS,
    TOOLS,
    build_tool,
    spec_named,
    tool_name_for_platform,
)

__all__ = [
    "DEFAULT_PROFILE", "PROFILES", "PromptProfile", "UnknownProfile", "action_sentence",
    "default_profile_for_suite", "get_profile", "profile_names",
]

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
TASK_PROGRESS_PREFIX = (
    "Task progress (You have done the following operation on the current device): "
)

# The response-format blocks appended after the tools section.
THOUGHT_ACTION_FORMAT = (  # Qwen3-VL cookbooks/mobile_agent.ipynb
    "\n\n# Response format\n\nResponse format for every step:\n"
    "1) Thought: one concise sentence explaining the next move (no multi-step reasoning).\n"
    "2) Action: a short imperative describing what to do in the UI.\n"
    "3) A single <tool_call>...</tool_call> block containing only the JSON: "
    '{"name": <function-name>, "arguments": <args-json-object>}.\n\n'
    "Rules:\n- Output exactly in the order: Thought, Action, <tool_call>.\n"
    "- Be brief: one sentence for Thought, one for Action.\n"
    "- Do not output anything else outside those three parts.\n"
    "- If finishing, use action=terminate in the tool call."
)
ACTION_ONLY_FORMAT = (  # OSWorld mm_agents/qwen3vl_agent.py
    "\n\n# Response format\n\nResponse format for every step:\n"
    "1) Action: a short imperative describing what to do in the UI.\n"
    "2) A single <tool_call>...</tool_call> block containing only the JSON: "
    '{"name": <function-name>, "arguments": <args-json-object>}.\n\n'
    "Rules:\n- Output exactly in the order: Action, <tool_call>.\n"
    "- Be brief: one sentence for Action.\n"
    "- Do not output anything else outside those parts.\n"
    "- If finishing, use action=terminate in the tool call."
)
GUI_OWL_FORMAT = (  # MobileAgent Mobile-Agent-v3.5/computer_use/utils.py SYSTEM_PROMPT
    "\n\n# Response format\n\nResponse format for every step:\n"
    "1) Action: a short imperative describing what to do in the UI.\n"
    "2) A single <tool_call>...</tool_call> block containing only the JSON: "
    '{"name": <function-name>, "arguments": <args-json-object>}.\n\n'
    "Rules:\n- Output exactly in the order: Action, <tool_call>.\n"
    "- Be brief: one for Action.\n"
    "- Do not output anything else outside those two parts.\n"
    "- If finishing, use action=terminate in the tool call."
)

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_THINK_BLOCK = re.compile(r"<(think|thinking)>.*?</\1>", re.DOTALL)


class UnknownProfile(KeyError):
    """A profile name that is not defined; the message lists the defined ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def strip_think(text: str) -> str:
    """`text` without `<think>` / `<thinking>` content (also the Thinking models' form whose
    opening tag is in the prompt: everything up to a lone closing tag)."""
    for close_tag, open_tag in (("</think>", "<think>"), ("</thinking>", "<thinking>")):
        close = text.find(close_tag)
        open_ = text.find(open_tag)
        if close >= 0 and (open_ < 0 or close < open_):
            text = text[close + len(close_tag):]
    return _THINK_BLOCK.sub("", text).strip()


def action_sentence(raw_text: str) -> str | None:
    """The text after the first "Action:" line of a response (the response-format blocks'
    one-sentence action), or None. Read as OSWorld's Qwen3VLAgent.parse_response does:
    the first line whose stripped form starts with "action:" (any case), split on
    "Action:"."""
    for line in strip_think(raw_text).split("\n"):
        line = line.strip()
        if line.lower().startswith("action:"):
            return line.split("Action:")[-1].strip()
    return None


def _tool_calls(raw_text: str) -> list[str]:
    return [c.strip() for c in _TOOL_CALL_BLOCK.findall(strip_think(raw_text)) if c.strip()]


# --- history-line hooks: one line per step that is no longer shown as a screenshot -----

def _line_thought_and_calls(step: StepHistory) -> str:
    """qwen-cua: "Step i: <thought> <tool call JSON> [feedback];"."""
    calls = _tool_calls(step.output.raw_text)
    thought = (step.output.thought or "").strip()
    parts = ([thought] if thought else []) + calls
    if not calls:
        parts.append("(no valid action)")
    line = " ".join(" ".join(parts).split())
    if step.feedback:
        line += f" [{' '.join(step.feedback.split())}]"
    return f"Step {step.index + 1}: {line};"


def _step_action_text(step: StepHistory) -> str:
    """The step's "Action:" sentence; without one, its thought; without that, its calls."""
    sentence = action_sentence(step.output.raw_text)
    if sentence:
        return sentence
    thought = " ".join((step.output.thought or "").split())
    return thought or " ".join(" ".join(_tool_calls(step.output.raw_text)).split())


# OSWorld names a step without an "Action:" line after the pyautogui call it produced:
# "Performing <function> action" (Qwen3VLAgent.parse_response).
_OSWORLD_PYAUTOGUI_NAME = {
    "left_click": "click", "right_click": "rightClick", "middle_click": "middleClick",
    "double_click": "doubleClick", "type": "typewrite", "scroll": "scroll",
    "mouse_move": "moveTo", "left_click_drag": "dragTo",
}


def _osworld_action_text(step: StepHistory) -> str:
    sentence = action_sentence(step.output.raw_text)
    if sentence:
        return sentence
    for call in _tool_calls(step.output.raw_text):
        try:
            args = json.loads(call).get("arguments", {})
            name = args.get("action")
        except (json.JSONDecodeError, AttributeError):
            continue
        if name == "key":
            keys = args.get("keys", [])
            name = "hotkey" if isinstance(keys, list) and len(keys) > 1 else "press"
        else:
            name = _OSWORLD_PYAUTOGUI_NAME.get(name)
        if name:
            return f"Performing {name} action"
    return ""


def _gui_owl_action_text(step: StepHistory) -> str:
    """GUI-Owl: the text between "Action:" and "<tool_call>" when both are present, else
    the whole response (Mobile-Agent-v3.5 computer_use/utils.py build_messages)."""
    text = step.output.raw_text
    if "Action:" in text and "<tool_call>" in text:
        return text.split("Action:")[1].split("<tool_call>")[0].strip()
    return text


# --- instruction hooks: the text of the first user turn ---------------------------------

def _instruction_qwen_cua(instruction: str, steps: Sequence[StepHistory]) -> str:
    text = f"The user query: {instruction}"
    if steps:
        text += "\n" + TASK_PROGRESS_PREFIX + " ".join(_line_thought_and_calls(s) for s in steps)
    return text + "\n"


def _instruction_mobile_cookbook(instruction: str, steps: Sequence[StepHistory]) -> str:
    # mobile_agent.ipynb: 'Step ' + str(idx + 1) + ': ' + his without newlines and double
    # quotes + '; ', and the query line always carries the progress clause (empty at first).
    history = "".join(
        f"Step {s.index + 1}: {_step_action_text(s).replace(chr(10), '').replace(chr(34), '')}; "
        for s in steps)
    return f"The user query: {instruction}.\n{TASK_PROGRESS_PREFIX}{history}.\n"


def _instruction_computer_use_cookbook(instruction: str, steps: Sequence[StepHistory]) -> str:
    # computer_use.ipynb is single-step and sends the raw query ({"type": "text", "text":
    # user_query}); later steps, which it has no wording for, take the mobile cookbook's.
    return _instruction_mobile_cookbook(instruction, steps) if steps else instruction


def _previous_actions_instruction(action_text: Callable[[StepHistory], str], lead: str
                                  ) -> Callable[[str, Sequence[StepHistory]], str]:
    """OSWorld's / GUI-Owl's instruction: "Step i: <action>" lines joined by newlines for
    the steps before the replayed window, "None" when there are none."""
    def instruction_text(instruction: str, steps: Sequence[StepHistory]) -> str:
        lines = [f"Step {s.index + 1}: {action_text(s)}" for s in steps]
        previous = "\n".join(lines) if lines else "None"
        return (f"{lead}Please generate the next move according to the UI screenshot, "
                f"instruction and previous actions.\n\nInstruction: {instruction}\n\n"
                f"Previous actions:\n{previous}")
    return instruction_text


_instruction_osworld = _previous_actions_instruction(_osworld_action_text, "\n")
_instruction_gui_owl = _previous_actions_instruction(_gui_owl_action_text, "")


# --- tool hooks -------------------------------------------------------------------------

ToolBuilder = Callable[[str, Dialect, Size, "Size | None", bool], dict[str, Any]]


def _table_tool(computer_variant: str, mobile_variant: str,
                resolution_text: str | None = None) -> ToolBuilder:
    def build(platform: str, dialect: Dialect, screen: Size, image: Size | None,
              include_extensions: bool) -> dict[str, Any]:
        is_mobile = tool_name_for_platform(platform) == MOBILE_USE
        variant = TOOL_VARIANTS[mobile_variant if is_mobile else computer_variant]
        return build_tool(variant, dialect, screen, image, include_extensions,
                          resolution_text=resolution_text)
    return build


def _cookbook_action_lines(order: Sequence[str]) -> list[str]:
    return [f"* `{name}`: {spec_named(name).description}" for name in order]


def _osworld_tool(platform: str, dialect: Dialect, screen: Size, image: Size | None,
                  include_extensions: bool) -> dict[str, Any]:
    """OSWorld's Qwen3VLAgent tools_def (coordinate_type "relative"): its own description
    lines, a 14-line action description but an 11-name enum, terse parameter texts, and
    Qwen-Agent's name_for_human / args_format keys."""
    description = "\n".join([
        "Use a mouse and keyboard to interact with a computer, and take screenshots.",
        "* This is an interface to a desktop GUI. You do not have access to a terminal or "
        "applications menu. You must click on desktop icons to start applications.",
        "* Some applications may take time to start or process actions, so you may need to "
        "wait and take successive screenshots to see the results of your actions. E.g. if you "
        "click on Firefox and a window doesn't open, try wait and taking another screenshot.",
        "* The screen's resolution is 1000x1000.",
        "* Whenever you intend to move the cursor to click on an element like an icon, you "
        "should consult a screenshot to determine the coordinates of the element before moving "
        "the cursor.",
        "* If you tried clicking on a program or link but it failed to load even after "
        "waiting, try adjusting your cursor position so that the tip of the cursor visually "
        "falls on the element that you want to click.",
        "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center "
        "of the element. Don't click boxes on their edges unless asked.",
    ])
    # A triple-quoted block in the source: a leading newline and 8 trailing spaces.
    actions = "\n" + "\n".join(_cookbook_action_lines(TOOLS[COMPUTER_USE].action_order)) \
        + "\n        "
    return {"type": "function", "function": {
        "name_for_human": "computer_use", "name": "computer_use", "description": description,
        "parameters": {"properties": {
            "action": {"description": actions, "enum": [
                "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click",
                "middle_click", "double_click", "scroll", "wait", "terminate"],
                "type": "string"},
            "keys": {"description": "Required only by `action=key`.", "type": "array"},
            "text": {"description": "Required only by `action=type`.", "type": "string"},
            "coordinate": {"description": "The x,y coordinates for mouse actions.",
                           "type": "array"},
            "pixels": {"description": "The amount of scrolling.", "type": "number"},
            "time": {"description": "The seconds to wait.", "type": "number"},
            "status": {"description": "The status of the task.", "type": "string",
                       "enum": ["success", "failure"]},
        }, "required": ["action"], "type": "object"},
        "args_format": "Format the arguments as a JSON object.",
    }}


def _gui_owl_tool(platform: str, dialect: Dialect, screen: Size, image: Size | None,
                  include_extensions: bool) -> dict[str, Any]:
    """GUI-Owl 1.5's computer_use (Mobile-Agent-v3.5 computer_use/utils.py SYSTEM_PROMPT):
    the cookbook tool without the cursor-consulting lines, with `interact`."""
    description = "\n".join(
        line for line in TOOLS[COMPUTER_USE].description.split("\n")
        if not line.startswith(("* Whenever", "* If you tried"))
    ).replace("{resolution_line}", "* The screen's resolution is 1000x1000.") \
        + " unless asked."
    description = description.replace("edges. unless asked.", "edges unless asked.")
    overrides = {
        "triple_click": "Triple-click the left mouse button at a specified (x, y) pixel "
                        "coordinate on the screen.",
        "hscroll": "Performs a horizontal scroll.",
    }
    order = list(TOOLS[COMPUTER_USE].action_order)
    lines = [f"* `{name}`: {overrides.get(name, spec_named(name).description)}"
             for name in order]
    lines.append("* `interact`: Resolve the blocking window by interacting with the user.")
    coordinate = ("(x, y): The x (pixels from the left edge) and y (pixels from the top edge) "
                  "coordinates to move the mouse to. Required only by `action=mouse_move` and "
                  "`action=left_click_drag`.")
    return {"type": "function", "function": {
        "name": "computer_use", "description": description,
        "parameters": {"properties": {
            "action": {"description": "The action to perform. The available actions are:\n"
                       + "\n".join(lines), "enum": order + ["interact"], "type": "string"},
            "keys": {"description": "Required only by `action=key`.", "type": "array"},
            "text": {"description": "Required only by `action=type`, `action=answer` and "
                     "`action=interact`.", "type": "string"},
            "coordinate": {"description": coordinate, "type": "array"},
            "pixels": {"description": "The amount of scrolling to perform. Positive values "
                       "scroll up, negative values scroll down. Required only by "
                       "`action=scroll` and `action=hscroll`.", "type": "number"},
            "time": {"description": "The seconds to wait. Required only by `action=wait`.",
                     "type": "number"},
            "status": {"description": "The status of the task. Required only by "
                       "`action=terminate`.", "type": "string", "enum": ["success", "failure"]},
        }, "required": ["action"], "type": "object"},
    }}


def describe_action(action: Any) -> str:
    """A short imperative for one canonical action (the "Action:" sentence of an answer
    rebuilt for an expert step), in input-space pixels."""
    kind = getattr(action, "type", "")
    at = f" at ({getattr(action, 'x', '?')}, {getattr(action, 'y', '?')})"
    if kind == "click":
        times = {2: "Double-click", 3: "Triple-click"}.get(action.clicks, "Click")
        button = "" if action.button == "left" else f" with the {action.button} button"
        return f"{times}{at}{button}."
    simple = {
        "mouse_move": lambda a: f"Move the mouse{at}.",
        "long_press": lambda a: f"Long-press{at}.",
        "type": lambda a: f"Type {json.dumps(a.text, ensure_ascii=False)}.",
        "key": lambda a: f"Press {'+'.join(a.keys)}.",
        "scroll": lambda a: f"Scroll {a.direction} {a.amount}.",
        "drag": lambda a: f"Drag from ({a.start_x}, {a.start_y}) to ({a.end_x}, {a.end_y}).",
        "swipe": lambda a: f"Swipe from ({a.start_x}, {a.start_y}) to ({a.end_x}, {a.end_y}).",
        "system_button": lambda a: f"Press the {a.button.capitalize()} button.",
        "open_app": lambda a: f"Open {a.name}.",
        "navigate": lambda a: f"Open {a.url}.",
        "wait": lambda a: "Wait.",
        "answer": lambda a: f"Answer {json.dumps(a.text, ensure_ascii=False)}.",
        "terminate": lambda a: f"Finish the task ({a.status}).",
    }
    return simple[kind](action) if kind in simple else f"{kind}."


@dataclass(frozen=True)
class PromptProfile:
    """One published agent setup (see the module docstring).

    system_head: the text before the "# Tools" block ("" for none).
    tool: builds the function definition for (platform, dialect, screen, image, extensions).
    tool_json_ascii: json.dumps(ensure_ascii=...) of the tool (Qwen-Agent writes UTF-8,
        OSWorld's agent calls json.dumps with its defaults).
    response_format: the block appended after the tools section ("" for none).
    instruction_text: (instruction, steps shown as text) -> the first user turn's text.
    image_first: the first user turn is [image, text] (else [text, image]).
    history_images: previous steps replayed with their screenshots as user/assistant turns.
    replay_raw: replayed assistant turns hold the raw response (think stripped) for every
        profile; replay_feedback: the agent's feedback (parse/action errors) opens the next
        user turn (qwen-cua only; no reference sends feedback).
    dialect: the coordinate grid the prompt promises (qwen3 = /1000, qwen3_999 = /999).
    max_new_tokens: the response budget the reference uses for Instruct checkpoints.
    image_max_pixels: the reference's resize bound for screenshots (None = the checkpoint's
        preprocessor); factor 32 (Qwen3-VL) unless image_factor says otherwise.
    """

    name: str
    reproduces: str
    sources: tuple[str, ...]
    system_head: str
    tool: ToolBuilder
    instruction_text: Callable[[str, Sequence[StepHistory]], str]
    response_format: str = ""
    tool_json_ascii: bool = False
    image_first: bool = False
    history_images: int = 2
    replay_feedback: bool = False
    dialect: Dialect = Dialect.QWEN3
    max_new_tokens: int = 512
    image_max_pixels: int | None = None
    image_factor: int = 32
    default_for: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    answer_format: str = "thought"  # "thought" | "thought_action" | "action"
    # Whether requests carry every sampling setting (qwen-cua's own profile) or only the
    # explicitly set ones: the references send none (OSWorld's qwen3vl_agent.py has
    # temperature/top_p commented out, the cookbooks and GUI-Owl pass model + messages).
    sends_sampling: bool = False

    def expert_answer(self, thought: str, actions: Sequence[Any], calls_text: str) -> str:
        """The assistant text for an expert step in this profile's response format:
        thought + calls; "Thought: ...\nAction: ...\n<calls>"; or "Action: ...\n<calls>"
        (the Action sentence describes the actions, the Thought is the recorded thought)."""
        sentence = " ".join(describe_action(a) for a in actions)
        if self.answer_format == "thought_action":
            return f"Thought: {thought or sentence}\nAction: {sentence}\n{calls_text}"
        if self.answer_format == "action":
            return f"Action: {sentence}\n{calls_text}"
        return f"{thought}\n{calls_text}" if thought else calls_text

    def system_text(self, tool: dict[str, Any]) -> str:
        """The system message: head, tools block, response-format block."""
        tool_json = json.dumps(tool, ensure_ascii=self.tool_json_ascii)
        head = self.system_head
        return head + TOOLS_HEADER + "\n" + tool_json + TOOLS_FOOTER + self.response_format

    def template_hash(self) -> str:
        """sha256 (first 16 hex) over everything the profile renders, for a fixed screen:
        changes whenever any template text, tool, layout setting or budget changes."""
        screen = Size(width=1000, height=1000)
        from actions.contracts import PolicyOutput

        fake = [StepHistory.model_construct(
            index=i, observation=None, feedback="feedback",
            output=PolicyOutput(raw_text='Thought: t\nAction: "a"\n<tool_call>\n{"name": '
                                '"computer_use", "arguments": {"action": "wait", "time": 1}}'
                                '\n</tool_call>', thought="t")) for i in range(2)]
        parts = {
            "tools": [self.system_text(self.tool(p, self.dialect, screen, screen, False))
                      for p in ("desktop", "mobile")],
            "instruction": self.instruction_text("INSTRUCTION", fake),
            "settings": [self.answer_format, self.image_first, self.history_images,
                         self.replay_feedback,
                         self.dialect.value, self.max_new_tokens, self.image_max_pixels,
                         self.image_factor],
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return digest[:16]


QWEN3_VL = "QwenLM/Qwen3-VL@96588727e44c78b25ba03ea03b8e12f7e64fd0da"
_FIREFLY = "Firefly-llm/Qwen3-VL cookbooks/computer_use.ipynb@08254a9479ce9a7946f106150e124b071cd91f2c"
_OSWORLD = ("karakuri-ai/OSWorld-JP mm_agents/qwen3vl_agent.py"
            "@3301bf9fd54cef911c6788543fba9da99bd4bfcf")
_GUI_OWL = ("X-PLUG/MobileAgent Mobile-Agent-v3.5/computer_use/utils.py"
            "@04f5e082d9a7fb4669a3f0197e9967b627565985 and run_gui_owl_1_5_for_pc.py"
            "@47de8588c56b7e1058f9af42a78ec9b30cbeb3e8")

PROFILES: dict[str, PromptProfile] = {p.name: p for p in (
    PromptProfile(
        name="qwen-cua",
        reproduces="qwen-cua's own layout before profiles: the cookbook system prompt and "
                   "tools (with coordinate2 on computer_use, answer on mobile_use), the mobile "
                   "cookbook's 'The user query' / 'Task progress' text, and the last 2 steps "
                   "replayed with their screenshots. Not a published setup.",
        sources=(f"{QWEN3_VL} cookbooks/utils/agent_function_call.py",
                 f"{QWEN3_VL} cookbooks/mobile_agent.ipynb"),
        system_head="You are a helpful assistant.\n\n",
        tool=_table_tool(COMPUTER_USE, MOBILE_USE),
        instruction_text=_instruction_qwen_cua,
        history_images=2, replay_feedback=True, sends_sampling=True,
    ),
    PromptProfile(
        name="qwen3-computer-use",
        reproduces="Qwen3-VL's computer-use cookbook: 'You are a helpful assistant.' plus the "
                   "computer_use tool of utils/agent_function_call.py rendered by Qwen-Agent's "
                   "NousFnCallPrompt, one screenshot before the text, coordinates on the "
                   "0..1000 grid, the raw query as the first user text. The cookbook is "
                   "single-step; earlier steps are written as the mobile cookbook writes "
                   "them (its 'The user query' and 'Task progress' lines).",
        sources=(f"{QWEN3_VL} cookbooks/utils/agent_function_call.py", _FIREFLY,
                 "QwenLM/Qwen-Agent qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py"
                 "@06a190465090cc15f73d539529e314a9cc1d99da"),
        system_head="You are a helpful assistant.\n\n",
        tool=_table_tool(COMPUTER_USE_COOKBOOK, MOBILE_USE),
        instruction_text=_instruction_computer_use_cookbook,
        image_first=True, history_images=0,
        default_for=("web", "desktop", "miniwob"),
    ),
    PromptProfile(
        name="qwen3-mobile",
        reproduces="Qwen3-VL's mobile-agent cookbook: its system prompt verbatim (the "
                   "mobile_use variant without key/open, 'The screen's resolution is 999x999', "
                   "the Thought/Action/<tool_call> response format), the user query with the "
                   "'Task progress' line of earlier Action sentences, one screenshot after the "
                   "text, coordinates divided by 999.",
        sources=(f"{QWEN3_VL} cookbooks/mobile_agent.ipynb",),
        system_head="\n\n",
        tool=_table_tool(COMPUTER_USE_COOKBOOK, MOBILE_USE_AGENT, resolution_text="999x999"),
        instruction_text=_instruction_mobile_cookbook,
        response_format=THOUGHT_ACTION_FORMAT, history_images=0, dialect=Dialect.QWEN3_999,
        default_for=("android", "androidworld"), answer_format="thought_action",
    ),
    PromptProfile(
        name="osworld-qwen3vl",
        reproduces="OSWorld's Qwen3VLAgent (defaults: history_n 4, coordinate_type relative, "
                   "max_tokens 32768): its tools_def and Action-only response format, "
                   "'Previous actions' for steps older than the 4 replayed (screenshot, raw "
                   "response) pairs, image before the instruction, coordinates divided by 999, "
                   "screenshots resized to at most 13,107,200 px (factor 32).",
        sources=(_OSWORLD,),
        system_head="", tool=_osworld_tool, tool_json_ascii=True,
        instruction_text=_instruction_osworld, response_format=ACTION_ONLY_FORMAT,
        image_first=True, history_images=4, dialect=Dialect.QWEN3_999,
        max_new_tokens=32768, image_max_pixels=16 * 16 * 4 * 12800,
        default_for=("osworld",), answer_format="action",
    ),
    PromptProfile(
        name="gui-owl",
        reproduces="GUI-Owl 1.5's desktop runner (Mobile-Agent-v3.5 computer_use): its "
                   "SYSTEM_PROMPT (computer_use with interact, Action-only format), the "
                   "instruction before the image, 'Previous actions' for steps older than the 4 "
                   "replayed, coordinates on the 0..1000 grid, screenshots resized with factor "
                   "16 to at most 10,035,200 px.",
        sources=(_GUI_OWL,),
        system_head="", tool=_gui_owl_tool, instruction_text=_instruction_gui_owl,
        response_format=GUI_OWL_FORMAT, history_images=4, dialect=Dialect.QWEN3_RESIZED,
        image_max_pixels=10_035_200, image_factor=16, answer_format="action",
    ),
)}

DEFAULT_PROFILE = "qwen-cua"


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str | PromptProfile) -> PromptProfile:
    """The profile named `name` (or `name` itself); UnknownProfile lists the choices."""
    if isinstance(name, PromptProfile):
        return name
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise UnknownProfile(f"unknown prompt profile {name!r}: use one of "
                             f"{', '.join(PROFILES)}")
    return PROFILES[key]


def default_profile_for_suite(suite: str) -> str:
    """The profile a suite is evaluated with unless --prompt-profile says otherwise."""
    key = suite.strip().lower()
    for profile in PROFILES.values():
        if key in profile.default_for:
            return profile.name
    return DEFAULT_PROFILE
