"""Parity: responses in the reference forms parse into what the reference harness executes.

Each case is a model response written the way a reference's model answers (the Qwen3-VL
cookbooks' real outputs, OSWorld's Qwen3-VL agent, Qwen-Agent's json5-tolerant function-call
parser, GUI-Owl 1.5's runners), with a note saying where its form comes from, and the
canonical action that harness would perform, derived from the harness code:

- mobile cookbook (QwenLM/Qwen3-VL@96588727 cookbooks/mobile_agent.ipynb): coordinates
  rescaled `round(x / 999 * width)`; actions per utils/agent_function_call.py MobileUse.
- computer-use cookbook (same commit; cookbooks/computer_use.ipynb read in
  Firefly-llm/Qwen3-VL@08254a94): `x / 1000 * width`; actions per ComputerUse.
- OSWorld (karakuri-ai/OSWorld-JP@3301bf9f mm_agents/qwen3vl_agent.py): `int(x * W / 999)`,
  left_click -> pyautogui.click, key -> press / hotkey, scroll -> `pixels =
  args.get("pixels", 0)` then f"pyautogui.scroll({pixels})" (positive = up; the raw value,
  neither rounded nor capped), left_click_drag -> dragTo from the current pointer, terminate -> DONE
  whatever the status.
- Qwen-Agent (QwenLM/Qwen-Agent@06a19046 nous_fncall_prompt.py): tool calls are read with
  json5 (single quotes, trailing commas, unquoted keys).
- GUI-Owl 1.5 (X-PLUG/MobileAgent Mobile-Agent-v3.5/computer_use @47de8588 / utils.py
  @04f5e082): `<thinking>` prefix, blocks read with ast.literal_eval, `int(x / 1000 *
  resized)` (most screens here are multiples of 16 so the resize is the identity; one is
  not, read in the gui-owl profile's `qwen3_resized` dialect), scroll pixels default 1,
  terminate status default "success", a key string pressed as one key.

`OSWORLD_EXECUTION` goes one step further for OSWorld: the pyautogui code the reference's
`parse_response` writes, against what our `--protocol official` sends, for the cases
where our `fast` protocol differs on purpose (terminate failure, triple_click, hscroll,
answer, a scroll at a coordinate, a drag from the cursor, scroll amounts that are not a
whole number of notches up to 100: `--protocol fast` rounds them half up and caps at 100).

Screens are chosen so the references' int() / round() and our round-half-up agree exactly
(e.g. 1998 px wide on the /999 grid); elsewhere they differ by at most 1 px.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from actions import (
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Size,
    Swipe,
    SystemButton,
    Terminate,
    Type,
    Wait,
)
from actions.models import Action
from actions.parsing import parse_tool_calls

PHONE = Size(width=1440, height=3120)  # the mobile cookbook's screenshot
PHONE_999 = Size(width=999, height=1998)
DESK_999 = Size(width=1998, height=999)
DESK_1000 = Size(width=2000, height=1000)
OWL = Size(width=2000, height=992)  # multiples of 16: GUI-Owl's smart_resize is the identity


def tc(args: dict, name: str = "computer_use") -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def mu(args: dict) -> str:
    return tc(args, "mobile_use")


@dataclass(frozen=True)
class Case:
    source: str
    text: str
    dialect: str
    screen: Size
    expected: tuple[Action, ...]
    pointer: tuple[int, int] | None = None
    image: Size | None = None  # the resized image the model saw (qwen3_resized)


MOBILE = "mobile cookbook"
COMPUTER = "computer-use cookbook"
OSWORLD = "OSWorld qwen3vl_agent"
AGENT = "Qwen-Agent nous_fncall_prompt (json5)"
OWL_SRC = "GUI-Owl 1.5 runner"

CASES: list[Case] = [
    # --- mobile cookbook: its real output, then each MobileUse action
    Case(f"{MOBILE}: the notebook's printed model output",
         'Thought: To search for Musk in X, I need to click on the search bar at the top of the '
         'screen. This will allow me to type in the search query.\nAction: "I tapped on the '
         'search bar to begin searching for Musk."\n'
         + mu({"action": "click", "coordinate": [447, 81]}),
         "qwen3_999", PHONE, (Click(x=644, y=253),)),
    Case(f"{MOBILE}: long_press with time", mu({"action": "long_press", "coordinate": [500, 500],
                                                "time": 2}),
         "qwen3_999", PHONE_999, (LongPress(x=500, y=1000, duration_s=2),)),
    Case(f"{MOBILE}: swipe coordinate -> coordinate2",
         mu({"action": "swipe", "coordinate": [500, 800], "coordinate2": [500, 200]}),
         "qwen3_999", PHONE_999, (Swipe(start_x=500, start_y=1600, end_x=500, end_y=400),)),
    Case(f"{MOBILE}: type", mu({"action": "type", "text": "Musk"}), "qwen3_999", PHONE_999,
         (Type(text="Musk"),)),
    Case(f"{MOBILE}: answer (the notebook's enum)", mu({"action": "answer", "text": "42"}),
         "qwen3_999", PHONE_999, (Answer(text="42"),)),
    Case(f"{MOBILE}: system_button Back", mu({"action": "system_button", "button": "Back"}),
         "qwen3_999", PHONE_999, (SystemButton(button="back"),)),
    Case(f"{MOBILE}: system_button Home", mu({"action": "system_button", "button": "Home"}),
         "qwen3_999", PHONE_999, (SystemButton(button="home"),)),
    Case(f"{MOBILE}: system_button Menu (application background menu = app switch)",
         mu({"action": "system_button", "button": "Menu"}), "qwen3_999", PHONE_999,
         (SystemButton(button="menu"),)),
    Case(f"{MOBILE}: system_button Enter", mu({"action": "system_button", "button": "Enter"}),
         "qwen3_999", PHONE_999, (SystemButton(button="enter"),)),
    Case(f"{MOBILE}: wait", mu({"action": "wait", "time": 3}), "qwen3_999", PHONE_999,
         (Wait(seconds=3),)),
    Case(f"{MOBILE}: terminate success", mu({"action": "terminate", "status": "success"}),
         "qwen3_999", PHONE_999, (Terminate(status="success"),)),
    Case(f"{MOBILE}: terminate failure", mu({"action": "terminate", "status": "failure"}),
         "qwen3_999", PHONE_999, (Terminate(status="failure"),)),
    Case("agent_function_call.py MobileUse: key with an adb key name (its example)",
         mu({"action": "key", "text": "volume_up"}), "qwen3_999", PHONE_999,
         (Key(keys=("volume_up",)),)),
    Case("agent_function_call.py MobileUse: key with a KEYCODE_ name",
         mu({"action": "key", "text": "KEYCODE_CAMERA"}), "qwen3_999", PHONE_999,
         (Key(keys=("camera",)),)),
    Case("agent_function_call.py MobileUse: open an app", mu({"action": "open", "text": "X"}),
         "qwen3_999", PHONE_999, (OpenApp(name="X"),)),
    # --- computer-use cookbook (ComputerUse on the 0..1000 grid)
    Case(f"{COMPUTER}: left_click", tc({"action": "left_click", "coordinate": [250, 500]}),
         "qwen3", DESK_1000, (Click(x=500, y=500),)),
    Case(f"{COMPUTER}: double_click", tc({"action": "double_click", "coordinate": [100, 100]}),
         "qwen3", DESK_1000, (Click(x=200, y=100, clicks=2),)),
    Case(f"{COMPUTER}: right_click", tc({"action": "right_click", "coordinate": [900, 900]}),
         "qwen3", DESK_1000, (Click(x=1800, y=900, button="right"),)),
    Case(f"{COMPUTER}: triple_click", tc({"action": "triple_click", "coordinate": [500, 500]}),
         "qwen3", DESK_1000, (Click(x=1000, y=500, clicks=3),)),
    Case(f"{COMPUTER}: key combination", tc({"action": "key", "keys": ["ctrl", "c"]}),
         "qwen3", DESK_1000, (Key(keys=("ctrl", "c")),)),
    Case(f"{COMPUTER}: type", tc({"action": "type", "text": "hello world"}), "qwen3",
         DESK_1000, (Type(text="hello world"),)),
    Case(f"{COMPUTER}: mouse_move", tc({"action": "mouse_move", "coordinate": [10, 20]}),
         "qwen3", DESK_1000, (MouseMove(x=20, y=20),)),
    Case(f"{COMPUTER}: hscroll", tc({"action": "hscroll", "pixels": -2}), "qwen3", DESK_1000,
         (Scroll(direction="left", amount=2),)),
    Case(f"{COMPUTER}: answer", tc({"action": "answer", "text": "Paris"}), "qwen3", DESK_1000,
         (Answer(text="Paris"),)),
    # --- OSWorld's Qwen3VLAgent (/999 grid, pyautogui)
    Case(f"{OSWORLD}: Action line + left_click -> pyautogui.click(int(x*W/999), ...)",
         "Action: Click the Chrome icon.\n" + tc({"action": "left_click",
                                                  "coordinate": [120, 450]}),
         "qwen3_999", DESK_999, (Click(x=240, y=450),)),
    Case(f"{OSWORLD}: one key -> pyautogui.press", tc({"action": "key", "keys": ["enter"]}),
         "qwen3_999", DESK_999, (Key(keys=("enter",)),)),
    Case(f"{OSWORLD}: keys -> pyautogui.hotkey", tc({"action": "key",
                                                      "keys": ["ctrl", "shift", "t"]}),
         "qwen3_999", DESK_999, (Key(keys=("ctrl", "shift", "t")),)),
    Case(f"{OSWORLD}: scroll(-5) scrolls down 5 clicks", tc({"action": "scroll",
                                                             "pixels": -5}),
         "qwen3_999", DESK_999, (Scroll(direction="down", amount=5),)),
    Case(f"{OSWORLD}: left_click_drag -> dragTo from the current pointer",
         tc({"action": "left_click_drag", "coordinate": [500, 500]}), "qwen3_999", DESK_999,
         (Drag(start_x=100, start_y=200, end_x=1000, end_y=500),), pointer=(100, 200)),
    Case(f"{OSWORLD}: terminate -> DONE (status not read)", tc({"action": "terminate"}),
         "qwen3_999", DESK_999, (Terminate(status="success"),)),
    Case(f"{OSWORLD}: double_click -> pyautogui.doubleClick",
         tc({"action": "double_click", "coordinate": [998, 998]}), "qwen3_999", DESK_999,
         (Click(x=1996, y=998, clicks=2),)),
    Case(f"{OSWORLD}: wait -> WAIT", tc({"action": "wait", "time": 2}), "qwen3_999", DESK_999,
         (Wait(seconds=2),)),
    # --- Qwen-Agent's json5 reading
    Case(f"{AGENT}: single quotes and a trailing comma",
         "<tool_call>\n{'name': 'computer_use', 'arguments': {'action': 'left_click', "
         "'coordinate': [500, 500],}}\n</tool_call>", "qwen3", DESK_1000,
         (Click(x=1000, y=500),)),
    Case(f"{AGENT}: arguments as a JSON string",
         '<tool_call>\n{"name": "computer_use", "arguments": "{\\"action\\": \\"type\\", '
         '\\"text\\": \\"hi\\"}"}\n</tool_call>', "qwen3", DESK_1000, (Type(text="hi"),)),
    # --- GUI-Owl 1.5
    Case(f"{OWL_SRC}: <thinking> prefix and an Action line",
         "<thinking>\nThe search field is on top.\n</thinking>Action: click the search field.\n"
         + tc({"action": "left_click", "coordinate": [500, 250]}), "qwen3", OWL,
         (Click(x=1000, y=248),)),
    Case(f"{OWL_SRC}: scroll without pixels -> scroll(1)", tc({"action": "scroll"}), "qwen3",
         OWL, (Scroll(direction="up", amount=1),)),
    Case(f"{OWL_SRC}: terminate without status -> 'success'", tc({"action": "terminate"}),
         "qwen3", OWL, (Terminate(status="success"),)),
    Case(f"{OWL_SRC}: key given as a string -> press that key",
         tc({"action": "key", "keys": "enter"}), "qwen3", OWL, (Key(keys=("enter",)),)),
    Case(f"{OWL_SRC}: a string key 'home' on computer_use stays the keyboard's Home",
         tc({"action": "key", "keys": "home"}), "qwen3", OWL, (Key(keys=("home",)),)),
    Case(f"{OWL_SRC}: a screen that is not a multiple of 16 (1920x1080 seen as 1920x1088): "
         "int(500 / 1000 * 1088) = 544", tc({"action": "left_click", "coordinate": [500, 500]}),
         "qwen3_resized", Size(width=1920, height=1080), (Click(x=960, y=544),),
         image=Size(width=1920, height=1088)),
]

# What OSWorld's Qwen3VLAgent.parse_response writes for a response (the pyautogui code list
# lib_run_single.py hands DesktopEnv.step, [] when it has no branch for the action), against
# what our `--protocol official` sends (benchmarks.osworld_actions.encode_qwen3vl_official) for the
# actions we parse from it. The cases where our `fast` protocol differs on purpose.
OSWORLD_EXECUTION = [
    ("terminate failure -> DONE", tc({"action": "terminate", "status": "failure"}), None,
     ["DONE"]),
    ("triple_click: no branch, nothing sent", tc({"action": "triple_click",
                                                   "coordinate": [100, 100]}), None, []),
    ("hscroll: no branch, nothing sent", tc({"action": "hscroll", "pixels": 3}), None, []),
    ("answer: no branch, nothing sent", tc({"action": "answer", "text": "42"}), None, []),
    ("scroll with a coordinate -> scroll(pixels) where the cursor is",
     tc({"action": "scroll", "pixels": -5, "coordinate": [500, 500]}), None,
     ["pyautogui.scroll(-5)"]),
    ("left_click_drag with only a target -> dragTo from the cursor",
     tc({"action": "left_click_drag", "coordinate": [500, 500]}), (100, 200),
     ["pyautogui.dragTo(1000, 500, duration=0.5)"]),
    ("wait -> WAIT", tc({"action": "wait", "time": 3}), None, ["WAIT"]),
    # scroll -> f"pyautogui.scroll({pixels})": the value as the model wrote it
    ("scroll a fraction: not rounded", tc({"action": "scroll", "pixels": -2.5}), None,
     ["pyautogui.scroll(-2.5)"]),
    ("scroll past 100 notches: not capped", tc({"action": "scroll", "pixels": 500}), None,
     ["pyautogui.scroll(500)"]),
    ("scroll a whole float: written as a float", tc({"action": "scroll", "pixels": 5.0}), None,
     ["pyautogui.scroll(5.0)"]),
    ("scroll a numeric string: formatted as written", tc({"action": "scroll", "pixels": "-3"}),
     None, ["pyautogui.scroll(-3)"]),
]


def test_the_corpus_is_at_least_thirty_responses() -> None:
    assert len(CASES) >= 30
    assert all(case.source for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])
def test_reference_response_parses_to_what_the_harness_executes(case: Case) -> None:
    parsed = parse_tool_calls(case.text, case.dialect, case.screen, case.image,
                              pointer=case.pointer)
    assert parsed.errors == [], parsed.errors
    assert tuple(parsed.actions) == case.expected


@pytest.mark.parametrize(("name", "text", "pointer", "reference_code"), OSWORLD_EXECUTION,
                         ids=[c[0] for c in OSWORLD_EXECUTION])
def test_osworld_official_sends_what_the_qwen3vl_runner_sends(
        name: str, text: str, pointer: tuple[int, int] | None,
        reference_code: list[str]) -> None:
    from benchmarks.osworld_actions import encode_qwen3vl_official

    parsed = parse_tool_calls(text, "qwen3_999", DESK_999, pointer=pointer)
    assert parsed.errors == [], parsed.errors
    sent = [code for action in parsed.actions
            for code in encode_qwen3vl_official(action, pointer)]
    assert sent == reference_code


@pytest.mark.parametrize(("pixels", "fast_code"), [(-2.5, "pyautogui.scroll(-3)"),
                                                   (500, "pyautogui.scroll(100)")])
def test_osworld_fast_keeps_whole_notches_capped_at_100(pixels: float, fast_code: str) -> None:
    """Ours under --protocol fast: the same call scrolls whole notches, at most 100."""
    from benchmarks.osworld_actions import encode

    parsed = parse_tool_calls(tc({"action": "scroll", "pixels": pixels}), "qwen3_999", DESK_999)
    assert [encode(action, "pyautogui") for action in parsed.actions] == [[fast_code]]
