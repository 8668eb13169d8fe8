"""A desktop environment on a real X server: Xvfb (or a user's display), pyautogui, mss.

By default the environment starts and owns its own Xvfb display (a free display number
chosen by Xvfb itself through `-displayfd`) plus a small EWMH window manager (openbox,
when installed) so that windows get titles, focus follows clicks and the active window
is known. With `display=":N"` it attaches to an existing X display instead (a user's
real screen): then pyautogui's fail-safe stays on (throw the pointer into a screen
corner to abort) and a warning is logged, because the agent moves the real pointer.

Input goes through pyautogui (mouse, keys, scroll, drag, hotkeys); text is typed with
XTest key events by `XTyper`, which maps characters missing from the keymap to spare
keycodes first, so any Unicode text arrives correctly (pyautogui types only ASCII, and
`xdotool type` loses characters when typing fast). Screenshots come from mss. After each
action the environment waits while the system works on it (a program launching, an app
computing, windows changing: environments/_desktop_activity.py) and until the screen is
quiet outside ambient regions, or a bound passes (docs/settling.md); it never sleeps a
fixed time. The X server, Xvfb plumbing and text typing live in environments/_x11.py.

Apps are started by the task's setup (see `DesktopTaskRunner` and benchmarks/desktop);
every process the environment starts runs in its own process group, and all of them are
killed on reset and close. Each reset also gives the apps a fresh, empty home directory
(`home_dir`; HOME points there), the analogue of OSWorld reverting its VM snapshot.

Process-global state (documented because pyautogui forces it): pyautogui keeps ONE X
connection in module globals (`pyautogui._pyautogui_x11._display`) and reads $DISPLAY
when first imported. This module imports pyautogui lazily, with $DISPLAY set to our
display for the import only, and then points pyautogui's connection at our display.
Hence only one DesktopEnv may be open per process at a time; opening a second raises
`DesktopEnvError`. `XAUTHORITY` is set to a file of ours when the user has none, because
python-xlib refuses to connect without one (our own Xvfb uses no authorization).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from actions.contracts import EnvironmentCrashed, Task
from actions.models import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    MouseMove,
    OpenApp,
    Scroll,
    SystemButton,
    Terminate,
    Type,
    Wait,
    mobile_key_error,
)
from actions.observation import Observation, Size, png_size
from environments._desktop_activity import DesktopActivity
from environments._settle import AmbientMemory, QuietWindow, SettleResult, settle_on_pixels
from environments._x11 import (
    DesktopEnvError,
    XServer,
    XTyper,
    _bgrx_png,
    _environ,
    _kill_group,
    _openbox_config,
    _require,
    _wait_for_x,
)
from environments._x_windows import XWindows

logger = logging.getLogger(__name__)


class DesktopConfig(BaseModel):
    """How to run the desktop.

    `screen_size` applies only to an owned Xvfb; an attached display keeps its size.
    Settling (docs/settling.md): after an action, the screen is grabbed every
    `settle_poll_s` seconds while the system works on it (`settle_signals`: a launched
    program without its window yet, an app using CPU, window events; up to
    `reaction_bound_s`) and until nothing outside ambient regions (a clock, a blinking
    cursor) changed for `settle_quiet_s` — or, when nothing changed or happened at all,
    for `settle_idle_s` (`settle_first_change_s` without signals) — or
    `settle_timeout_s` passes.
    """

    model_config = ConfigDict(frozen=True)

    screen_size: Size = Size(width=1280, height=720)
    display: str | None = Field(
        None, description="Attach to this X display (e.g. ':0') instead of starting Xvfb."
    )
    window_manager: str | None = Field(
        "openbox", description="Window manager to start on an owned Xvfb; None for none."
    )
    settle_poll_s: float = Field(0.04, gt=0, le=1)
    settle_quiet_s: float = Field(
        0.2, gt=0, description="No change outside ambient regions for this long: settled.")
    settle_first_change_s: float = Field(
        0.4, gt=0, description="How long an unchanged screen is watched for a reaction to "
        "begin (a reaction that starts later is missed).")
    settle_timeout_s: float = Field(3.0, gt=0, le=60)
    settle_signals: bool = Field(
        True, description="Also wait on what the system does (windows, startup "
        "notification, app processes' CPU; docs/settling.md); False: pixels only.")
    settle_idle_s: float = Field(
        0.15, gt=0, description="With signals: how long a screen unchanged and a system "
        "at rest are watched for a reaction to begin (replaces settle_first_change_s).")
    reaction_bound_s: float = Field(
        2.0, gt=0, description="Longest work in progress (a launch, a computation) that "
        "holds a step; after it, pixels alone decide.")
    cpu_busy_fraction: float = Field(
        0.15, gt=0, le=1, description="An app using more of a core than this is working.")
    start_timeout_s: float = Field(10.0, gt=0)
    work_dir: Path | None = Field(
        None, description="Where per-reset home directories live (default: a temp dir)."
    )
    launch_commands: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "terminal": ["xterm"], "xterm": ["xterm"],
            "text editor": ["mousepad"], "mousepad": ["mousepad"],
        },
        description="OpenApp names (lowercase) -> command line.",
    )

    @field_validator("screen_size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        # accept "1920x1080" (CLI: --env-option screen_size=1920x1080)
        if isinstance(value, str):
            width, _, height = value.lower().partition("x")
            return {"width": int(width), "height": int(height)}
        return value


class DesktopTaskRunner(Protocol):
    """Sets a task up on the desktop and scores its end state (benchmarks provide it)."""

    def setup(self, env: DesktopEnv, task: Task) -> None: ...

    def evaluate(self, env: DesktopEnv, task: Task) -> float: ...


# pyautogui key names for our canonical key names (actions.models.NAMED_KEYS).
_PYAUTOGUI_KEYS: dict[str, str] = {
    "ctrl": "ctrl", "shift": "shift", "alt": "alt", "meta": "winleft", "enter": "enter",
    "escape": "esc", "tab": "tab", "space": "space", "backspace": "backspace",
    "delete": "delete", "insert": "insert", "home": "home", "end": "end",
    "pageup": "pageup", "pagedown": "pagedown", "up": "up", "down": "down",
    "left": "left", "right": "right", "capslock": "capslock",
    "printscreen": "printscreen", "menu": "apps",
}

_ACTIVE_LOCK = threading.Lock()
_active_display: str | None = None  # the display of the one open DesktopEnv, if any


def pyautogui_key(name: str) -> str:
    """pyautogui's name for one canonical key name (see actions.models.normalize_key)."""
    return _PYAUTOGUI_KEYS.get(name, name)


class DesktopEnv(XWindows):
    """The desktop Environment (see actions.contracts.Environment).

    Coordinates of actions are X screen pixels of the display; `Observation.screen_size`
    and `screenshot_size` are both the display's size (no scaling on X).
    """

    platform = "desktop"

    def __init__(
        self, config: DesktopConfig | None = None, task_runner: DesktopTaskRunner | None = None
    ) -> None:
        global _active_display
        self.config = config or DesktopConfig()
        self.task_runner = task_runner
        for tool in ("xdotool", "xprop"):
            _require(tool)
        with _ACTIVE_LOCK:
            if _active_display is not None:
                raise DesktopEnvError(
                    f"a DesktopEnv on display {_active_display} is already open in this process; "
                    "close it first (pyautogui drives one X display per process), or run "
                    "another environment in another process"
                )
            _active_display = "(starting)"
        self._closed = False
        self._processes: list[subprocess.Popen] = []
        self._root = Path(tempfile.mkdtemp(prefix="cua-desktop-", dir=self.config.work_dir))
        self._home_counter = 0
        self.home_dir: Path = self._root / "home-0"
        self.home_dir.mkdir()
        self.task: Task | None = None
        self.actions_taken: list[Action] = []
        # folder of the current task's own files (expected outputs); set by the task runner
        self.task_files_dir: Path | None = None
        self.xserver: XServer | None = None
        self._wm: subprocess.Popen | None = None
        self._typer: XTyper | None = None
        self._click_to_focus = False  # set when our window manager leaves focus to us
        self._ambient = AmbientMemory()  # screen cells that change on their own
        self._activity: DesktopActivity | None = None  # windows, launches, CPU (settling)
        try:
            self._start_display()
        except BaseException:
            self._release()
            raise
        # a program that forgets close() (or dies on an exception) leaves no Xvfb behind
        atexit.register(self.close)

    # ----------------------------------------------------------------- display lifetime
    def _start_display(self) -> None:
        global _active_display
        if self.config.display is None:
            self.xserver = XServer(self.config.screen_size, self.config.start_timeout_s)
            self.display = self.xserver.display
            self.owns_display = True
        else:
            self.display = self.config.display
            self.owns_display = False
            _wait_for_x(self.display, self.config.start_timeout_s)
            logger.warning(
                "attaching to the existing X display %s: the agent moves the real pointer and "
                "types on the real keyboard; pyautogui's fail-safe is ON (move the pointer "
                "into a screen corner to abort)", self.display,
            )
        _active_display = self.display
        self._bind_pyautogui()
        import mss

        self._mss = mss.MSS(display=self.display)
        monitor = self._mss.monitors[0]
        self.screen_size = Size(width=monitor["width"], height=monitor["height"])
        if self.owns_display and self.config.window_manager:
            self._start_window_manager(self.config.window_manager)
        self._activity = DesktopActivity(
            self.display, lambda: [p.pid for p in self._processes],
            cpu_busy_fraction=self.config.cpu_busy_fraction)

    def _bind_pyautogui(self) -> None:
        from Xlib import display as xdisplay

        with _environ("DISPLAY", self.display):
            import pyautogui
            from pyautogui import _pyautogui_x11
        self._xdisplay = xdisplay.Display(self.display)
        _pyautogui_x11._display = self._xdisplay
        pyautogui.PAUSE = 0  # no built-in sleep after each call: we settle on the screen
        pyautogui.MINIMUM_DURATION = 0
        pyautogui.FAILSAFE = not self.owns_display
        self._pyautogui = pyautogui

    def _start_window_manager(self, name: str) -> None:
        if shutil.which(name) is None:
            logger.warning(
                "window manager %r not installed: windows get no title bars and the active "
                "window is the X input focus (install it with scripts/install.sh)", name,
            )
            return
        argv = [name]
        if name == "openbox":
            config = _openbox_config(self._root)
            if config is not None:
                argv += ["--config-file", str(config)]
            self._click_to_focus = True
        self._wm = subprocess.Popen(
            argv, env=self.app_environment(), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:  # EWMH WMs announce themselves on the root window
            out = self._x(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], check=False)
            if "window id" in out:
                return
            if self._wm.poll() is not None:
                raise DesktopEnvError(f"window manager {name} exited with code {self._wm.returncode}")
            time.sleep(0.02)
        raise DesktopEnvError(f"window manager {name} did not start in {self.config.start_timeout_s} s")

    def _stop_display(self) -> None:
        """Kill the apps, the window manager and our Xvfb; drop our X connections."""
        self.kill_processes()
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        for closer in (lambda: self._mss.close(), lambda: self._xdisplay.close()):
            with contextlib.suppress(Exception):
                closer()
        if self._wm is not None:
            _kill_group(self._wm)
            self._wm = None
        if self.xserver is not None:
            self.xserver.close()
            self.xserver = None
        self._typer = None
        self._click_to_focus = False

    def _release(self) -> None:
        global _active_display
        self._closed = True
        atexit.unregister(self.close)
        self._stop_display()
        shutil.rmtree(self._root, ignore_errors=True)
        with _ACTIVE_LOCK:
            _active_display = None

    def close(self) -> None:
        """Kill every process the environment started, its window manager and its Xvfb."""
        if not self._closed:
            self._release()

    def __enter__(self) -> DesktopEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _display_died(self) -> bool:
        return self.xserver is not None and not self.xserver.alive()

    def _check_alive(self) -> None:
        if self._closed:
            raise DesktopEnvError("this DesktopEnv is closed")
        if self._display_died():
            raise EnvironmentCrashed(
                f"Xvfb {self.display} died (exit code {self.xserver.process.returncode}); "
                "the next reset() starts a new one"
            )

    # ----------------------------------------------------------------- processes
    def app_environment(self) -> dict[str, str]:
        """Environment variables for apps: our display, the per-reset home, quiet GTK."""
        env = dict(os.environ)
        env.update({
            "DISPLAY": self.display, "HOME": str(self.home_dir),
            "XDG_CONFIG_HOME": str(self.home_dir / ".config"),
            "XDG_DATA_HOME": str(self.home_dir / ".local/share"),
            "XDG_CACHE_HOME": str(self.home_dir / ".cache"),
            "XDG_RUNTIME_DIR": str(self._root), "NO_AT_BRIDGE": "1",
            # GSettings in a key file under this episode's XDG_CONFIG_HOME: what one
            # process sets (a task's `gsettings set`) the next one reads, for the episode.
            "GSETTINGS_BACKEND": "keyfile", "GTK_OVERLAY_SCROLLING": "0",
        })
        return env

    def expand_path(self, path: str) -> Path:
        """Expand `~` and $VARS in a task path against the apps' environment (HOME = home_dir)."""
        env = self.app_environment()
        text = re.sub(r"^~(?=/|$)", str(self.home_dir), path)
        text = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), text)
        return Path(text)

    def spawn(self, command: str | Sequence[str], shell: bool = False) -> subprocess.Popen:
        """Start an app in its own process group (killed on reset/close); don't wait."""
        argv = command if isinstance(command, str) else list(command)
        if shell and not isinstance(argv, str):
            argv = " ".join(argv)
        proc = subprocess.Popen(
            argv, shell=shell, env=self.app_environment(), cwd=self.home_dir,
            start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._processes.append(proc)
        logger.debug("spawned %s (pid %d)", argv, proc.pid)
        return proc

    def run(
        self, command: str | Sequence[str], shell: bool = False, timeout_s: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion in the apps' environment; return its output."""
        argv = command if isinstance(command, str) else list(command)
        if shell and not isinstance(argv, str):
            argv = " ".join(argv)
        proc = subprocess.Popen(
            argv, shell=shell, env=self.app_environment(), cwd=self.home_dir,
            start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def kill_processes(self) -> None:
        """Kill every app this environment started (whole process groups)."""
        for proc in self._processes:
            _kill_group(proc)
        self._processes.clear()

    def _x(self, argv: list[str], check: bool = True) -> str:
        result = subprocess.run(
            argv, env=self.app_environment(), capture_output=True, text=True, timeout=10
        )
        if check and result.returncode != 0:
            raise DesktopEnvError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout

    # ----------------------------------------------------------------- screen
    def _grab(self) -> Any:
        return self._mss.grab(self._mss.monitors[0])

    def _grab_array(self) -> np.ndarray:
        """The screen as a (height, width, 4) BGRX array (mss's own buffer, no copy)."""
        frame = self._grab()
        return np.frombuffer(frame.raw, dtype=np.uint8).reshape(frame.size[1], frame.size[0], 4)

    def settle(self) -> SettleResult:
        """Wait until the system is at rest (no launch, computation or window change in
        progress, up to the reaction bound) and nothing outside ambient regions changed
        for the quiet window (docs/settling.md). `begin_action()` marks the action."""
        cfg = self.config
        activity = self._activity if cfg.settle_signals else None
        last: list[np.ndarray] = []

        def grab() -> np.ndarray:  # a new frame only when DAMAGE says the screen changed
            if not last or activity is None or activity.screen_damaged():
                last[:] = [self._grab_array()]
            return last[0]

        return settle_on_pixels(
            grab, _bgrx_png,
            QuietWindow(quiet_s=cfg.settle_quiet_s, poll_s=cfg.settle_poll_s,
                        first_change_s=cfg.settle_idle_s if activity else
                        cfg.settle_first_change_s, reaction_bound_s=cfg.reaction_bound_s),
            cfg.settle_timeout_s, memory=self._ambient,
            activity=activity.poll if activity is not None else None,
        )

    def begin_action(self) -> None:
        """Mark the moment before an action: processes, windows and CPU use from now on
        are its reaction (settle() waits for them)."""
        if self._activity is not None and self.config.settle_signals:
            self._activity.begin()

    def screenshot_png(self, frame: Any | None = None) -> bytes:
        """The screen (or a grabbed frame) as lossless PNG bytes."""

        frame = frame if frame is not None else self._grab()
        return _bgrx_png(np.frombuffer(frame.raw, dtype=np.uint8).reshape(
            frame.size[1], frame.size[0], 4))

    def pointer_position(self) -> tuple[int, int]:
        x, y = self._pyautogui.position()
        return int(x), int(y)

    def _observe(self, settled: SettleResult, info: dict[str, Any],
                 **fields: Any) -> Observation:
        return Observation(
            screenshot_png=settled.screenshot_png, screen_size=self.screen_size,
            screenshot_size=png_size(settled.screenshot_png), app=self.active_window_title(),
            pointer=self.pointer_position(), settle_s=settled.settle_s, settle=settled.report(),
            info={**info, **settled.info()}, **fields,
        )

    # ----------------------------------------------------------------- Environment
    def reset(self, task: Task) -> Observation:
        """Kill the previous task's apps, give a fresh home, run the task's setup, observe.

        If our Xvfb died, a new one (with its window manager) is started first.
        """
        if self._display_died():
            logger.warning("Xvfb %s died; starting a new display", self.display)
            self._stop_display()
            self._start_display()
        self._check_alive()
        self.kill_processes()
        self._home_counter += 1
        old_home = self.home_dir
        self.home_dir = self._root / f"home-{self._home_counter}"
        self.home_dir.mkdir()
        shutil.rmtree(old_home, ignore_errors=True)
        self.task = task
        self.actions_taken = []
        self._pyautogui.moveTo(self.screen_size.width // 2, self.screen_size.height // 2)
        self.begin_action()  # the setup's apps are the reset's reaction
        if self.task_runner is not None:
            self.task_runner.setup(self, task)
        self._ambient.forget()
        return self._observe(self.settle(), {"display": self.display},
                             instruction=task.instruction or None)

    def step(self, action: Action) -> Observation:
        """Execute one action, wait for the screen to settle, observe."""
        self._check_alive()
        self.actions_taken.append(action)
        self._ambient.learn_before_action(self._grab_array())  # cells that moved meanwhile
        self.begin_action()
        start = time.monotonic()
        error: str | None = None
        try:
            error = self._execute(action)
        except self._pyautogui.FailSafeException:
            raise
        except (subprocess.SubprocessError, OSError, DesktopEnvError) as exc:
            error = f"{action.type} failed: {exc}"
        execute_s = time.monotonic() - start
        if error:
            logger.info("action %s not executed: %s", action.type, error)
        return self._observe(self.settle(), {}, execute_s=execute_s, action_error=error)

    def notify_terminal(self, action: Action) -> None:
        """Record an action the loop handled itself (terminate/answer) without step().

        Evaluators read the last action (OSWorld scores an 'infeasible' task 1.0 only when
        the agent's last action is FAIL, i.e. terminate with status 'failure').
        """
        self.actions_taken.append(action)

    def evaluate(self) -> float:
        """Score the end state with the task's evaluator (needs a task_runner)."""
        if self.task is None:
            raise DesktopEnvError("evaluate() before reset(): no task")
        if self.task_runner is None:
            raise DesktopEnvError(
                "this DesktopEnv has no task runner, so it cannot evaluate; build it through "
                "benchmarks.desktop.DesktopSuite().make_environment()"
            )
        return self.task_runner.evaluate(self, self.task)

    # ----------------------------------------------------------------- input
    def _check_point(self, x: int, y: int) -> None:
        if not (0 <= x < self.screen_size.width and 0 <= y < self.screen_size.height):
            raise DesktopEnvError(f"point ({x}, {y}) is outside the screen {self.screen_size}")

    def _execute(self, action: Action) -> str | None:
        """Drive the action; return an error message for actions that don't apply here."""
        gui = self._pyautogui
        match action:
            case Click(x=x, y=y, button=button, clicks=clicks):
                self._check_point(x, y)
                self._focus_window_at(x, y)
                gui.click(x, y, clicks=clicks, interval=0.0, button=button)
            case MouseMove(x=x, y=y):
                self._check_point(x, y)
                gui.moveTo(x, y)
            case Drag(start_x=sx, start_y=sy, end_x=ex, end_y=ey):
                self._check_point(sx, sy)
                self._check_point(ex, ey)
                self._focus_window_at(sx, sy)
                gui.mouseDown(button="left")
                steps = 12  # intermediate motion events: apps track drags by motion
                for i in range(1, steps + 1):
                    gui.moveTo(sx + (ex - sx) * i // steps, sy + (ey - sy) * i // steps)
                gui.mouseUp(button="left")
            case Scroll(direction=direction, amount=amount, x=x, y=y):
                if x is not None and y is not None:
                    self._check_point(x, y)
                    gui.moveTo(x, y)
                if direction in ("up", "down"):
                    gui.scroll(amount if direction == "up" else -amount)
                else:
                    gui.hscroll(amount if direction == "right" else -amount)
            case Type(text=text):
                self.type_text(text)
            case Key(keys=keys):
                if error := mobile_key_error(keys, "the desktop"):
                    return error
                names = [pyautogui_key(k) for k in keys]
                if len(names) == 1:
                    gui.press(names[0])
                else:
                    gui.hotkey(*names, interval=0.0)
            case SystemButton(button="enter"):
                gui.press("enter")
            case OpenApp(name=name):
                command = self.config.launch_commands.get(name.strip().lower())
                if command is None:
                    return (f"unknown app {name!r}; known: "
                            f"{', '.join(sorted(self.config.launch_commands))}")
                self.spawn(command)
            case Wait(seconds=seconds):
                time.sleep(seconds)  # the action itself asks for time to pass
            case Answer() | Terminate():
                pass  # recorded in actions_taken; evaluators read it (e.g. 'infeasible')
            case _:
                return f"{action.type!r} is not available on a desktop"
        return None

    def _focus_window_at(self, x: int, y: int) -> None:
        """Move the pointer to (x, y); with our openbox, focus and raise the app window
        there first, as a click-to-focus window manager does on a press."""
        from Xlib import X
        from Xlib.protocol import event

        self._pyautogui.moveTo(x, y)
        if not self._click_to_focus:
            return
        window = self.client_window_at_pointer()
        if window is None or window == self.active_window_id():
            return
        display = self._xdisplay
        message = event.ClientMessage(  # EWMH activation request, source = user action
            window=display.create_resource_object("window", window),
            client_type=self._atom("_NET_ACTIVE_WINDOW"), data=(32, [2, X.CurrentTime, 0, 0, 0]),
        )
        display.screen().root.send_event(
            message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)
        display.sync()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # bounded: some windows refuse focus
            if self.active_window_id() == window:
                return
            time.sleep(0.005)

    def type_text(self, text: str) -> None:
        """Type any Unicode text into the focused window (see `XTyper`)."""
        if self._typer is None:
            self._typer = XTyper(self._xdisplay)
        self._typer.type(text)
