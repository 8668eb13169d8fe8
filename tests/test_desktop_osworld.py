"""The OSWorld adapter: generated pyautogui code really acts on our Xvfb; computer_13
dicts follow OSWorld's action space; without OSWorld or a provider it fails fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest_desktop import Probe, desktop, plain_task, wait_until  # noqa: F401
from typer.testing import CliRunner

from actions.models import Click, Drag, Key, MouseMove, Scroll, Terminate, Type, Wait
from agent.cli.main import app
from benchmarks.osworld import (
    OSWorldSuite,
    OSWorldUnavailable,
    check_available,
)
from benchmarks.osworld_actions import to_computer_13, to_pyautogui_code
from environments.desktop import DesktopEnv


@pytest.fixture()
def probe(desktop: DesktopEnv) -> Probe:  # noqa: F811
    desktop.reset(plain_task())
    return Probe(desktop)


def run_code(env: DesktopEnv, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute OSWorld pyautogui code as its VM server does (pyautogui, time in scope)."""
    monkeypatch.setenv("DISPLAY", env.display)  # code may shell out (xdotool)
    exec(code, {"pyautogui": env._pyautogui, "time": time})  # noqa: S102


def test_pyautogui_code_clicks_drags_scrolls(desktop: DesktopEnv, probe: Probe,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = probe.point(0.4, 0.6)
    run_code(desktop, to_pyautogui_code(Click(x=x, y=y)), monkeypatch)
    run_code(desktop, to_pyautogui_code(Click(x=x, y=y, button="right")), monkeypatch)
    run_code(desktop, to_pyautogui_code(Click(x=x, y=y, clicks=2)), monkeypatch)
    # every release too before clearing: the double click's last release must not land
    # among the drag's events
    wait_until(lambda: len(probe.events("press")) == 4 and len(probe.events("release")) == 4,
               what=lambda: str(probe.events()))
    assert [(e["b"], e["x"], e["y"]) for e in probe.events("press")] == [
        (1, x, y), (3, x, y), (1, x, y), (1, x, y)]
    probe.clear()
    run_code(desktop, to_pyautogui_code(MouseMove(x=x + 5, y=y + 5)), monkeypatch)
    assert desktop.pointer_position() == (x + 5, y + 5)
    (sx, sy), (ex, ey) = probe.point(0.2, 0.4), probe.point(0.7, 0.8)
    run_code(desktop, to_pyautogui_code(Drag(start_x=sx, start_y=sy, end_x=ex, end_y=ey)),
             monkeypatch)
    wait_until(lambda: probe.events("release"), what=lambda: str(probe.events()))
    assert [(e["x"], e["y"]) for e in probe.events("press")] == [(sx, sy)]
    assert [(e["x"], e["y"]) for e in probe.events("release")] == [(ex, ey)]
    probe.clear()
    run_code(desktop, to_pyautogui_code(Scroll(direction="down", amount=2, x=x, y=y)),
             monkeypatch)
    wait_until(lambda: len(probe.events("press")) == 2, what=lambda: str(probe.events()))
    assert [(e["b"], e["x"], e["y"]) for e in probe.events("press")] == [(5, x, y)] * 2


def test_pyautogui_code_types_and_presses_keys(desktop: DesktopEnv, probe: Probe,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = probe.point(0.5, 0.04)
    desktop.step(Click(x=x, y=y))  # focus the entry
    # ASCII goes through pyautogui.typewrite; '<' through shift+',' (pyautogui would type
    # '>' on this keymap, as on OSWorld's VM)
    text = "Hello, world! 42 [ok] <a> <<b"
    run_code(desktop, to_pyautogui_code(Type(text=text)), monkeypatch)
    wait_until(lambda: probe.text() == text,
               what=lambda: str(probe.events("text")[-1:]))
    run_code(desktop, to_pyautogui_code(Key(keys=("ctrl", "a"))), monkeypatch)  # line start
    run_code(desktop, to_pyautogui_code(Key(keys=("delete",))), monkeypatch)
    wait_until(lambda: probe.text() == text[1:],
               what=lambda: str(probe.events("text")[-1:]))


def test_pyautogui_code_types_unicode(desktop: DesktopEnv, probe: Probe,  # noqa: F811
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = probe.point(0.5, 0.04)
    desktop.step(Click(x=x, y=y))
    for text in ("Grüße, 世界 ☕ <naïve> ", "Ωmega ∑ ĉu? ñ"):  # the second maps new keysyms
        before = probe.text()
        code = to_pyautogui_code(Type(text=text))
        assert code.startswith("exec(") and "xdotool" not in code
        run_code(desktop, code, monkeypatch)
        wait_until(lambda b=before, t=text: probe.text() == b + t,
                   what=lambda: str(probe.events("text")[-1:]))


def test_special_strings() -> None:
    assert to_pyautogui_code(Wait(seconds=1)) == "WAIT"
    assert to_pyautogui_code(Terminate(status="success")) == "DONE"
    assert to_pyautogui_code(Terminate(status="failure")) == "FAIL"


# OSWorld's computer_13 action space: action_type -> allowed parameter names.
COMPUTER_13 = {
    "MOVE_TO": {"x", "y"}, "CLICK": {"button", "x", "y", "num_clicks"},
    "MOUSE_DOWN": {"button"}, "MOUSE_UP": {"button"}, "RIGHT_CLICK": {"x", "y"},
    "DOUBLE_CLICK": {"x", "y"}, "DRAG_TO": {"x", "y"}, "SCROLL": {"dx", "dy"},
    "TYPING": {"text"}, "PRESS": {"key"}, "KEY_DOWN": {"key"}, "KEY_UP": {"key"},
    "HOTKEY": {"keys"},
}


@pytest.mark.parametrize(("action", "expected"), [
    (Click(x=3, y=4, button="right", clicks=2),
     [{"action_type": "CLICK", "parameters": {"button": "right", "x": 3, "y": 4, "num_clicks": 2}}]),
    (MouseMove(x=1, y=2), [{"action_type": "MOVE_TO", "parameters": {"x": 1, "y": 2}}]),
    (Drag(start_x=1, start_y=2, end_x=3, end_y=4),
     [{"action_type": "MOVE_TO", "parameters": {"x": 1, "y": 2}},
      {"action_type": "DRAG_TO", "parameters": {"x": 3, "y": 4}}]),
    (Scroll(direction="up", amount=3), [{"action_type": "SCROLL", "parameters": {"dx": 0, "dy": 3}}]),
    (Scroll(direction="left", amount=2, x=5, y=6),
     [{"action_type": "MOVE_TO", "parameters": {"x": 5, "y": 6}},
      {"action_type": "SCROLL", "parameters": {"dx": -2, "dy": 0}}]),
    (Type(text="Gruesse"), [{"action_type": "TYPING", "parameters": {"text": "Gruesse"}}]),
    (Type(text="a<b"), [{"action_type": "TYPING", "parameters": {"text": "a"}},
                        {"action_type": "HOTKEY", "parameters": {"keys": ["shift", ","]}},
                        {"action_type": "TYPING", "parameters": {"text": "b"}}]),
    (Key(keys=("enter",)), [{"action_type": "PRESS", "parameters": {"key": "enter"}}]),
    (Key(keys=("ctrl", "meta", "s")),
     [{"action_type": "HOTKEY", "parameters": {"keys": ["ctrl", "win", "s"]}}]),
    (Wait(seconds=2), ["WAIT"]),
    (Terminate(status="failure"), ["FAIL"]),
])
def test_computer_13_mapping(action, expected) -> None:
    mapped = to_computer_13(action)
    assert mapped == expected
    for item in mapped:
        if isinstance(item, dict):
            assert set(item["parameters"]) <= COMPUTER_13[item["action_type"]]


def test_computer_13_refuses_non_ascii_text() -> None:
    from benchmarks.osworld_actions import UnsupportedActionError

    with pytest.raises(UnsupportedActionError, match="non-ASCII"):
        to_computer_13(Type(text="Grüße"))


def _fake_checkout(root: Path) -> Path:
    (root / "evaluation_examples" / "examples" / "os").mkdir(parents=True)
    (root / "evaluation_examples" / "test_nogdrive.json").write_text(json.dumps({"os": ["t1"]}))
    (root / "evaluation_examples" / "examples" / "os" / "t1.json").write_text(json.dumps({
        "id": "t1", "instruction": "do it", "config": [],
        "evaluator": {"func": "infeasible"}}))
    return root


def test_osworld_suite_reads_a_checkout_and_fails_fast_without_desktop_env(tmp_path: Path) -> None:
    suite = OSWorldSuite(osworld_dir=_fake_checkout(tmp_path), provider="docker")
    assert suite.list_tasks() == ["os/t1"]
    task = suite.make_task("os/t1")
    assert task.instruction == "do it" and task.config["domain"] == "os"
    with pytest.raises(OSWorldUnavailable, match="desktop_env"):
        suite.make_environment()
    with pytest.raises(OSWorldUnavailable, match="unknown provider"):
        check_available("qemu-magic")
    with pytest.raises(OSWorldUnavailable, match="test_nogdrive.json"):
        OSWorldSuite(osworld_dir=tmp_path / "nowhere")


def test_cua_osworld_run_fails_fast(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["osworld", "run", "--osworld-dir",
                                      str(_fake_checkout(tmp_path)), "--provider", "docker"])
    assert result.exit_code == 2
    assert "desktop_env" in result.output and "not installed" in result.output
