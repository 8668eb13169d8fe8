"""DesktopEnv double: OSWorld's API over our own Xvfb desktop (see __init__)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from actions.contracts import Task
from actions.models import Terminate
from actions.observation import Size
from benchmarks.desktop.evaluators import OSWorldTaskRunner
from benchmarks.desktop.taskfile import LOCAL_TASKS_DIR
from environments.desktop import DesktopConfig
from environments.desktop import DesktopEnv as QwenDesktop


def _fix_less_than(command: str) -> str:
    """OSWorld 1.0.2's rewrite of pyautogui.typewrite('...<...') calls (exactly that call
    shape; escapes decoded) into typewrite pieces and hotkey("shift", ","); others unchanged."""
    def fix(match: re.Match) -> str:
        quote, content = match.group(1), match.group(2)
        try:
            content = content.encode("utf-8").decode("unicode_escape")
        except UnicodeDecodeError:
            pass
        if "<" not in content:
            return match.group(0)
        pieces = []
        for i, part in enumerate(content.split("<")):
            if i:
                pieces.append('pyautogui.hotkey("shift", ",")')
            if part:
                pieces.append(f"pyautogui.typewrite({quote}{part}{quote})")
        return "; ".join(pieces)

    return re.sub(r"pyautogui\.typewrite\(([\"'])(.*?)\1\)", fix, command)


class _Controller:
    def __init__(self, desk: QwenDesktop) -> None:
        self.desk = desk
        self.recording = False

    def get_screenshot(self) -> bytes | None:
        return self.desk.screenshot_png()

    def start_recording(self) -> None:
        """Stand-in for the VM server's screen recording (ffmpeg there): a marker file."""
        self.recording = True

    def end_recording(self, dest: str) -> None:
        if self.recording:
            Path(dest).write_bytes(b"stand-in recording\n")
        self.recording = False

    def execute_python_command(self, command: str) -> None:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = self.desk.display
        try:
            exec(command, {"pyautogui": self.desk._pyautogui, "time": time})  # noqa: S102
        finally:
            if old is None:
                os.environ.pop("DISPLAY")
            else:
                os.environ["DISPLAY"] = old

    def execute_action(self, action: Any) -> None:
        """computer_13 semantics of OSWorld's PythonController.execute_action."""
        if action in ("WAIT", "FAIL", "DONE"):
            return
        kind, p = action["action_type"], action.get("parameters", {})
        code = {
            "MOVE_TO": lambda: f"pyautogui.moveTo({p['x']}, {p['y']})",
            "CLICK": lambda: (f"pyautogui.click(button={p['button']!r}, x={p['x']}, y={p['y']}, "
                              f"clicks={p.get('num_clicks', 1)})"),
            "DRAG_TO": lambda: (f"pyautogui.dragTo({p['x']}, {p['y']}, duration=0.3, "
                                "button='left', mouseDownUp=True)"),
            "SCROLL": lambda: f"pyautogui.hscroll({p.get('dx', 0)}); pyautogui.vscroll({p.get('dy', 0)})",
            "TYPING": lambda: f"pyautogui.typewrite({p['text']!r})",
            "PRESS": lambda: f"pyautogui.press({p['key']!r})",
            "HOTKEY": lambda: f"pyautogui.hotkey({', '.join(repr(k) for k in p['keys'])})",
        }[kind]()
        self.execute_python_command(code)


class DesktopEnv:
    def __init__(self, provider_name: str = "vmware", region: str | None = None,
                 path_to_vm: str | None = None, snapshot_name: str = "init_state",
                 action_space: str = "pyautogui", cache_dir: str = "cache",
                 screen_size: tuple[int, int] = (1920, 1080), headless: bool = False,
                 require_a11y_tree: bool = True, require_terminal: bool = False,
                 os_type: str = "Ubuntu", enable_proxy: bool = False,
                 client_password: str = "") -> None:
        assert action_space in ("computer_13", "pyautogui")
        self.action_space = action_space
        self.desk = QwenDesktop(DesktopConfig(screen_size=Size(width=screen_size[0],
                                                               height=screen_size[1])),
                                task_runner=OSWorldTaskRunner())
        self.controller = _Controller(self.desk)
        self.action_history: list[Any] = []
        self.task: Task | None = None

    def _get_obs(self) -> dict[str, Any]:
        return {"screenshot": self.controller.get_screenshot(), "accessibility_tree": None,
                "terminal": None, "instruction": self.task.instruction if self.task else None}

    def reset(self, task_config: dict[str, Any] | None = None, seed=None, options=None):
        self.action_history.clear()
        domain = (task_config.get("snapshot") or "os") if task_config else "os"
        self.task = Task(suite="osworld", task_id=task_config["id"], instruction=task_config[
            "instruction"], config={"osworld": task_config,
                                    "task_dir": str(Path(LOCAL_TASKS_DIR) / domain)})
        self.desk.reset(self.task)
        return self._get_obs()

    def step(self, action: Any, pause: float = 2):
        self.action_history.append(action)
        done, info = False, {}
        if action == "WAIT":
            time.sleep(pause)
        elif action in ("FAIL", "DONE"):
            done, info = True, {action.lower(): True}
        if self.action_space == "computer_13":
            self.controller.execute_action(action)
        elif action not in ("WAIT", "FAIL", "DONE"):
            self.controller.execute_python_command(_fix_less_than(action))
        time.sleep(pause)
        return self._get_obs(), 0, done, info

    def evaluate(self) -> float:
        if self.action_history and self.action_history[-1] == "FAIL":
            self.desk.notify_terminal(Terminate(status="failure"))
        return self.desk.evaluate()

    def close(self) -> None:
        self.desk.close()
