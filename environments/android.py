"""The Android environment: a phone or emulator driven through the real `adb` server.

Talks to the adb server (the `adb` program's daemon, port 5037 or
`ANDROID_ADB_SERVER_PORT`) through adbutils, and to the device through ordinary shell
commands, so it works with any device the server lists:

- screenshots with `exec-out screencap -p` (PNG bytes straight over the adb stream; no
  file on the device, no pull);
- taps, swipes and key events with `input`; a long press is a swipe that stays in place
  for the press duration; a drag is a slow swipe;
- text through the ADB keyboard IME (`am broadcast -a ADB_INPUT_B64`) when the device
  has it (`ime list -s` lists `com.android.adbkeyboard/.AdbIME`; it is selected at reset
  and the previous keyboard restored at close), which types any Unicode; otherwise
  `input text` with shell quoting and `%s` for spaces, which types printable ASCII only:
  other text is refused with an `action_error` that says how to install the IME;
- `open_app` by name: an alias table (`AndroidConfig.app_packages`), then the installed
  packages (`pm list packages`) whose name contains the app name; launched through
  `cmd package resolve-activity` + `am start -n`, or `monkey` where that fails;
- the accessibility tree from `uiautomator dump`, the foreground app from
  `dumpsys window`.

Coordinates: the input space is the display's touch pixels, the size `wm size` reports
(the override size when one is set). The screenshot is whatever `screencap` returns;
the observation states both sizes.

After each action `step` waits while the system reports a reaction on its way (the
focused window, resumed activity, app transition or keyboard changed: `dumpsys`,
environments/_android_activity.py) and captures frames until nothing outside ambient
regions (the status-bar clock, a blinking cursor) changed for a quiet window measured in
time, or `settle_timeout_s` passes (no fixed sleeps; docs/settling.md). A device that drops off the
adb server (cable pulled, `adb disconnect`, emulator killed) is detected on the next adb
call; the environment tries to reconnect (`adb connect` for network serials, then waits
for the device) and raises `EnvironmentCrashed`: the loop records the episode as an
error and the run goes on; the next `reset` checks the device again.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import adbutils
from adbutils.errors import AdbError
from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EnvironmentCrashed, Task
from actions.exporters import scroll_swipe
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
from actions.observation import PNG_SIGNATURE, Observation, Size, png_size
from environments._android_activity import AndroidActivity, PhoneState
from environments._android_keys import DEFAULT_APP_PACKAGES, KEYCODES, SYSTEM_BUTTON_KEYCODES
from environments._settle import AmbientMemory, QuietWindow, settle_screenshots

logger = logging.getLogger(__name__)

ADB_KEYBOARD_IME = "com.android.adbkeyboard/.AdbIME"

class AndroidConfig(BaseModel):
    """How to reach the device and how long to wait for it.

    `serial`: the device as `adb devices` lists it ("emulator-5554", "R5CT...",
    "127.0.0.1:5555"); None = the only device attached. A serial of the form HOST:PORT is
    `adb connect`ed when the server does not list it yet.
    `adb_host` / `adb_port`: the adb server (default: ANDROID_ADB_SERVER_HOST/PORT or
    127.0.0.1:5037); the server is started with `adb -P PORT start-server` if it is not
    running and `adb` is on PATH.
    """

    model_config = ConfigDict(frozen=True)

    serial: str | None = None
    adb_host: str = Field(default_factory=lambda: os.environ.get("ANDROID_ADB_SERVER_HOST",
                                                                 "127.0.0.1"))
    adb_port: int = Field(default_factory=lambda: int(os.environ.get("ANDROID_ADB_SERVER_PORT",
                                                                     "5037")))
    settle_timeout_s: float = Field(3.0, gt=0, description="Upper bound of the settle wait.")
    settle_quiet_s: float = Field(
        0.3, gt=0, description="No change outside ambient regions for this long: settled.")
    settle_first_change_s: float = Field(
        0.5, gt=0, description="How long an unchanged screen is watched for a reaction to "
        "begin (a reaction that starts later is missed).")
    settle_signals: bool = Field(
        True, description="Also wait on what the system does: focused window / resumed "
        "activity / app transition / keyboard from `dumpsys` (docs/settling.md); False: "
        "pixels only.")
    settle_idle_s: float = Field(
        0.5, gt=0, description="With signals: how long a screen unchanged and a system at "
        "rest are watched for a reaction to begin (replaces settle_first_change_s).")
    reaction_bound_s: float = Field(
        2.0, gt=0, description="Longest transition in progress that holds a step; after "
        "it, pixels alone decide.")
    command_timeout_s: float = Field(30.0, gt=0, description="Socket timeout of one adb call.")
    reconnect_timeout_s: float = Field(
        5.0, ge=0, description="How long to wait for a lost device to come back.")
    a11y_tree: bool = Field(True, description="Dump the UI hierarchy into each observation "
                            "(uiautomator takes ~1 s on real phones; turn off to save it).")
    use_adb_keyboard: bool = Field(True, description="Type through the ADB keyboard IME "
                                   "when the device has it installed.")
    app_packages: dict[str, str] = Field(
        default_factory=dict, description="App name (lowercase) -> package or "
        "package/activity, consulted before DEFAULT_APP_PACKAGES and `pm list packages`.")
    scroll_fraction_per_notch: float = Field(
        0.1, gt=0, le=1, description="Swipe length of one scroll notch, as a fraction of "
        "the screen's height (or width for left/right).")
    swipe_duration_s: float = Field(0.4, gt=0, description="Duration of scroll swipes.")
    drag_duration_s: float = Field(1.0, gt=0, description="Duration of a drag's swipe.")


class DeviceLost(AdbError):
    """The device stopped answering or left the adb server's list."""


T = TypeVar("T")


class AndroidEnvironment:
    """A device behind the adb server (see the module docstring).

    `last_answer` holds the text of the episode's `answer` action, for evaluators.
    """

    def __init__(self, config: AndroidConfig | None = None, **overrides: Any) -> None:
        self.config = (config or AndroidConfig()).model_copy(update=overrides)
        self.client = adbutils.AdbClient(host=self.config.adb_host, port=self.config.adb_port,
                                         socket_timeout=self.config.command_timeout_s)
        self._ensure_server()
        self.serial = self._pick_serial()
        self.device = self.client.device(serial=self.serial)
        self.task: Task | None = None
        self.last_answer: str | None = None
        self._ambient = AmbientMemory()  # screen cells that change on their own
        self._activity = AndroidActivity(self.shell)  # focus, transitions, keyboard
        self._previous_ime: str | None = None
        self.adb_keyboard = False
        self.screen_size = self._read_screen_size()
        self.density_dpi = self._read_density()
        logger.info("android device %s: %s, %d dpi", self.serial, self.screen_size,
                    self.density_dpi)

    # ------------------------------------------------------------ connection

    def _ensure_server(self) -> None:
        # Probe the port ourselves: adbutils, on a refused connection, runs a bare
        # `adb start-server`, which starts a server on 5037 whatever port was asked for.
        try:
            with socket.create_connection((self.config.adb_host, self.config.adb_port),
                                          timeout=2):
                return
        except OSError:
            pass
        adb = shutil.which("adb")
        if adb is None:
            raise EnvironmentCrashed(
                f"no adb server at {self.config.adb_host}:{self.config.adb_port} and no `adb` "
                "on PATH: install it (Debian: apt-get install adb) or start the server")
        subprocess.run([adb, "-P", str(self.config.adb_port), "start-server"], check=True,
                       capture_output=True, timeout=30)
        self.client.server_version()

    def _pick_serial(self) -> str:
        serial = self.config.serial
        states = {info.serial: info.state for info in self.client.list()}
        if serial is None:
            ready = [s for s, state in states.items() if state == "device"]
            if len(ready) != 1:
                raise EnvironmentCrashed(
                    f"{len(ready)} devices ready on the adb server ({states or 'none'}): "
                    "pass serial=... to pick one")
            return ready[0]
        if states.get(serial) != "device" and _is_network_serial(serial):
            message = self.client.connect(serial, timeout=self.config.command_timeout_s)
            logger.info("adb connect %s: %s", serial, message)
            if not self._wait_online(serial, self.config.reconnect_timeout_s + 5):
                raise EnvironmentCrashed(f"adb connect {serial} failed: {message}")
        elif states.get(serial) != "device":
            raise EnvironmentCrashed(
                f"device {serial!r} is {states.get(serial, 'not attached')}; attached: "
                f"{states or 'none'}")
        return serial

    def _state(self, serial: str) -> str | None:
        try:
            return {i.serial: i.state for i in self.client.list()}.get(serial)
        except (AdbError, OSError):
            return None

    def _wait_online(self, serial: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self._state(serial) == "device":
                try:
                    self.client.device(serial=serial).shell("echo ok", timeout=5)
                    return True
                except (AdbError, OSError):
                    pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _reconnect(self) -> bool:
        """Try to get the device back; True when it answers again."""
        if _is_network_serial(self.serial):
            with contextlib.suppress(AdbError, OSError):
                self.client.disconnect(self.serial)
            with contextlib.suppress(AdbError, OSError):
                logger.info("adb connect %s: %s", self.serial,
                            self.client.connect(self.serial, timeout=5))
        return self._wait_online(self.serial, self.config.reconnect_timeout_s)

    @contextlib.contextmanager
    def _device_call(self, what: str) -> Iterator[None]:
        """Turn a lost device into EnvironmentCrashed (after one reconnection attempt)."""
        try:
            yield
        except (AdbError, OSError) as exc:
            state = self._state(self.serial)
            if state == "device" and not isinstance(exc, DeviceLost | socket.timeout):
                raise  # the device is fine; the command itself failed
            back = self._reconnect()
            raise EnvironmentCrashed(
                f"android device {self.serial} lost during {what} ({type(exc).__name__}: "
                f"{exc}; adb state: {state or 'gone'}); reconnect "
                f"{'succeeded, the next reset can go on' if back else 'failed'}") from exc

    def shell(self, command: str, timeout_s: float | None = None) -> str:
        """Run `command` in the device's shell; returns stdout+stderr (text, stripped).

        Raises EnvironmentCrashed when the device is lost.
        """
        with self._device_call(command.split(" ", 1)[0]):
            return self._shell_raw(command, timeout_s).decode("utf-8", "replace").strip()

    def _shell_raw(self, command: str, timeout_s: float | None = None,
                   service: str = "shell") -> bytes:
        connection = self.device.open_transport(
            timeout=timeout_s or self.config.command_timeout_s)
        try:
            connection.send_command(f"{service}:{command}")
            connection.check_okay()
            chunks = bytearray()
            while True:
                chunk = connection.conn.recv(256 * 1024)
                if not chunk:
                    break
                chunks += chunk
            return bytes(chunks)
        finally:
            connection.close()

    def exec_out(self, command: str) -> bytes:
        """`adb exec-out COMMAND`: raw stdout bytes, no pty and no line-ending rewriting."""
        with self._device_call(command.split(" ", 1)[0]):
            return self._shell_raw(command, service="exec")

    # ------------------------------------------------------------ device facts

    def _read_screen_size(self) -> Size:
        text = self.shell("wm size")
        sizes = dict(re.findall(r"(Physical|Override) size:\s*(\d+x\d+)", text))
        chosen = sizes.get("Override") or sizes.get("Physical")
        if chosen is None:
            raise EnvironmentCrashed(f"cannot read the screen size from `wm size`: {text!r}")
        width, height = (int(v) for v in chosen.split("x"))
        return Size(width=width, height=height)

    def _read_density(self) -> int:
        text = self.shell("wm density")
        values = dict(re.findall(r"(Physical|Override) density:\s*(\d+)", text))
        return int(values.get("Override") or values.get("Physical") or 160)

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {shlex.quote(name)}")

    def foreground_app(self) -> str | None:
        """Package of the focused window, from `dumpsys window`."""
        text = self.shell("dumpsys window | grep -E 'mCurrentFocus|mFocusedApp'")
        return _parse_focus(text)

    def screenshot_png(self) -> bytes:
        """The screen as PNG bytes, via `exec-out screencap -p`."""
        with self._device_call("screencap"):
            png = self._shell_raw("screencap -p", service="exec")
            if not png.startswith(PNG_SIGNATURE):
                # An empty or garbled answer usually means the device went away mid-call.
                raise DeviceLost(f"screencap returned {len(png)} bytes that are not a PNG: "
                                 f"{png[:80]!r}")
            return png

    def ui_tree(self) -> str:
        """The UI hierarchy XML from `uiautomator dump`."""
        text = self.shell("uiautomator dump /sdcard/window_dump.xml >/dev/null && "
                          "cat /sdcard/window_dump.xml")
        start = text.find("<?xml")
        end = text.rfind("</hierarchy>")
        if start < 0 or end < 0:
            logger.warning("uiautomator dump failed: %s", text[:200])
            return ""
        return text[start:end + len("</hierarchy>")]

    # ------------------------------------------------------------ keyboard

    def _setup_keyboard(self) -> None:
        self.adb_keyboard = False
        if not self.config.use_adb_keyboard:
            return
        installed = self.shell("ime list -s -a").split()
        if ADB_KEYBOARD_IME not in installed:
            logger.info("ADB keyboard not installed on %s: typing ASCII via `input text`",
                        self.serial)
            return
        current = self.shell("settings get secure default_input_method")
        if current != ADB_KEYBOARD_IME:
            self._previous_ime = self._previous_ime or current
            self.shell(f"ime enable {ADB_KEYBOARD_IME}")
            self.shell(f"ime set {ADB_KEYBOARD_IME}")
        self.adb_keyboard = True

    def _type_text(self, text: str) -> str | None:
        """Type `text` into the focused field; returns an error message or None."""
        if self.adb_keyboard:
            encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
            self.shell(f"am broadcast -a ADB_INPUT_B64 --es msg {encoded}")
            return None
        if any(not (32 <= ord(ch) < 127 or ch == "\n") for ch in text):
            bad = next(ch for ch in text if not (32 <= ord(ch) < 127 or ch == "\n"))
            return (f"cannot type {bad!r}: `input text` types printable ASCII only and the "
                    f"ADB keyboard IME ({ADB_KEYBOARD_IME}) is not installed on {self.serial}; "
                    "install ADBKeyboard.apk (github.com/senzhk/ADBKeyBoard) with `adb "
                    "install` and reset: the environment then selects it by itself")
        commands: list[str] = []
        for line_index, line in enumerate(text.split("\n")):
            if line_index:
                commands.append("input keyevent 66")
            # `input text` turns "%s" into a space, so a literal "%s" is typed in two parts.
            for part_index, part in enumerate(line.split("%s")):
                if part_index:
                    commands.append("input text %")
                    part = "s" + part
                if part:
                    commands.append("input text " + shlex.quote(part.replace(" ", "%s")))
        output = self.shell(" && ".join(commands)) if commands else ""
        return _command_error(output)

    def _restore_keyboard(self) -> None:
        if self._previous_ime and self._previous_ime != "null":
            with contextlib.suppress(AdbError, OSError, EnvironmentCrashed):
                self.shell(f"ime set {self._previous_ime}")
        self._previous_ime = None

    # ------------------------------------------------------------ apps

    def resolve_app(self, name: str) -> str:
        """Package (or package/activity) of the app called `name`; raises LookupError."""
        key = name.strip().lower()
        for table in (self.config.app_packages, DEFAULT_APP_PACKAGES):
            if key in table and self._installed(table[key].split("/")[0]):
                return table[key]
        if re.fullmatch(r"[\w.]+(/[\w.$]+)?", name) and "." in name and self._installed(
                name.split("/")[0]):
            return name
        packages = [line.removeprefix("package:") for line in
                    self.shell("pm list packages").splitlines() if line.startswith("package:")]
        compact = re.sub(r"[^a-z0-9]", "", key)
        matches = [p for p in packages if compact and compact in p.lower().replace("_", "")]
        # Prefer packages whose last segment is the name ("com.x.contacts" for Contacts).
        matches.sort(key=lambda p: (p.rsplit(".", 1)[-1] != compact, len(p)))
        if not matches:
            raise LookupError(f"no installed app matches {name!r}; add it to "
                              "AndroidConfig.app_packages as name -> package")
        return matches[0]

    def _installed(self, package: str) -> bool:
        return bool(self.shell(f"pm path {shlex.quote(package)}").startswith("package:"))

    def launch(self, package_or_component: str) -> str | None:
        """Start an app's launcher activity; returns an error message or None."""
        if "/" in package_or_component:
            component = package_or_component
        else:
            resolved = self.shell("cmd package resolve-activity --brief -c "
                                  f"android.intent.category.LAUNCHER {package_or_component}")
            lines = [ln.strip() for ln in resolved.splitlines() if "/" in ln]
            component = lines[-1] if lines else ""
        if component:
            output = self.shell(f"am start -n {shlex.quote(component)}")
            if "Error" not in output:
                return None
        output = self.shell(f"monkey -p {shlex.quote(package_or_component.split('/')[0])} "
                            "-c android.intent.category.LAUNCHER 1")
        if "Events injected" in output:
            return None
        return f"could not launch {package_or_component}: {output[-300:]}"

    # ------------------------------------------------------------ Environment API

    def reset(self, task: Task) -> Observation:
        """Check the device, go to the home screen, open `task.config['start_app']` if set."""
        self.prepare(task)
        return self.observe(instruction=task.instruction or None)

    def prepare(self, task: Task) -> None:
        """`reset` without the observation: for wrappers that set the device up further
        (install task data) before the first screenshot."""
        self.task = task
        self.last_answer = None
        self._ambient.forget()  # a new episode: what moved before says nothing
        self._activity.forget()
        if self._state(self.serial) != "device" and not self._reconnect():
            raise EnvironmentCrashed(
                f"android device {self.serial} is not available "
                f"(adb state: {self._state(self.serial) or 'gone'}); reconnect failed")
        self.screen_size = self._read_screen_size()  # `wm size` may have changed
        self._setup_keyboard()
        self.shell("input keyevent 3")
        start_app = task.config.get("start_app")
        if start_app:
            error = self.launch(self.resolve_app(start_app))
            if error:
                raise EnvironmentCrashed(error)

    def step(self, action: Action) -> Observation:
        started = time.perf_counter()
        error = self._execute(action)
        return self.observe(execute_s=time.perf_counter() - started, action_error=error)

    def notify_terminal(self, action: Action) -> None:
        """Record an `answer`/`terminate` action (the loop calls this instead of step)."""
        if isinstance(action, Answer):
            self.last_answer = action.text

    def evaluate(self) -> float:
        """1.0/0.0 against `task.config['expected_answer']`; 0.0 when the task has no check.

        Suites with device-state checks (benchmarks/android) wrap this environment.
        """
        if self.task is None:
            raise RuntimeError("call reset(task) before evaluate()")
        expected = self.task.config.get("expected_answer")
        if expected is None:
            return 0.0
        return float((self.last_answer or "").strip().lower() == str(expected).strip().lower())

    def close(self) -> None:
        self._restore_keyboard()
        self._activity.close()

    # ------------------------------------------------------------ observing

    def observe(self, *, instruction: str | None = None, execute_s: float | None = None,
                action_error: str | None = None) -> Observation:
        """Wait for the system and the screen to settle (docs/settling.md), then capture
        screenshot, UI tree and app."""
        config = self.config
        signals = config.settle_signals
        settled = settle_screenshots(
            self.screenshot_png,
            QuietWindow(quiet_s=config.settle_quiet_s, poll_s=0.0,
                        first_change_s=config.settle_idle_s if signals else
                        config.settle_first_change_s, reaction_bound_s=config.reaction_bound_s),
            config.settle_timeout_s, memory=self._ambient,
            activity=self._activity.poll if signals else None)
        self._activity.settled()
        png = settled.screenshot_png
        tree = self.ui_tree() if self.config.a11y_tree else None
        state = self._activity.last if signals else None
        return Observation(
            screenshot_png=png,
            screen_size=self.screen_size,
            screenshot_size=png_size(png),
            instruction=instruction,
            a11y_tree=tree,
            app=state.package if state is not None and state.package else self.foreground_app(),
            execute_s=execute_s,
            settle_s=settled.settle_s,
            settle=settled.report(),
            action_error=action_error,
            info={"serial": self.serial, **settled.info(), "density_dpi": self.density_dpi},
        )

    # ------------------------------------------------------------ acting

    def _check_point(self, x: int, y: int) -> str | None:
        if x >= self.screen_size.width or y >= self.screen_size.height:
            return f"point ({x}, {y}) is outside the {self.screen_size} screen"
        return None

    def _swipe(self, x1: int, y1: int, x2: int, y2: int, duration_s: float) -> str | None:
        duration_ms = max(1, round(duration_s * 1000))
        timeout = self.config.command_timeout_s + duration_s
        return _command_error(self.shell(f"input swipe {x1} {y1} {x2} {y2} {duration_ms}",
                                         timeout_s=timeout))

    def _execute(self, action: Action) -> str | None:
        """Perform one action; returns an error message for the policy, or None."""
        width, height = self.screen_size.width, self.screen_size.height
        if isinstance(action, Click):
            if error := self._check_point(action.x, action.y):
                return error
            if action.button == "right":  # a touch screen's context click is a long press
                return self._swipe(action.x, action.y, action.x, action.y, 1.0)
            taps = " && ".join([f"input tap {action.x} {action.y}"] * action.clicks)
            return _command_error(self.shell(taps))
        if isinstance(action, LongPress):
            if error := self._check_point(action.x, action.y):
                return error
            return self._swipe(action.x, action.y, action.x, action.y, action.duration_s)
        if isinstance(action, Swipe | Drag):
            points = (action.start_x, action.start_y, action.end_x, action.end_y)
            if error := (self._check_point(*points[:2]) or self._check_point(*points[2:])):
                return error
            duration = action.duration_s if isinstance(action, Swipe) else \
                self.config.drag_duration_s
            return self._swipe(*points, duration)
        if isinstance(action, Scroll):
            return self._scroll(action, width, height)
        if isinstance(action, Type):
            return self._type_text(action.text)
        if isinstance(action, Key):
            unknown = [k for k in action.keys if k not in KEYCODES]
            if unknown:
                return f"no Android key code for {unknown}"
            codes = [str(KEYCODES[k]) for k in action.keys]
            if len(codes) == 1:
                return _command_error(self.shell(f"input keyevent {codes[0]}"))
            return _command_error(self.shell("input keycombination " + " ".join(codes)))
        if isinstance(action, SystemButton):
            code = SYSTEM_BUTTON_KEYCODES[action.button]
            return _command_error(self.shell(f"input keyevent {code}"))
        if isinstance(action, OpenApp):
            try:
                target = self.resolve_app(action.name)
            except LookupError as exc:
                return str(exc)
            return self.launch(target)
        if isinstance(action, Wait):
            time.sleep(action.seconds)  # the action *is* waiting; settling follows
            return None
        if isinstance(action, Answer | Terminate):
            self.notify_terminal(action)
            return None
        if isinstance(action, MouseMove | Navigate):
            return f"{action.type} is not available on Android (no pointer, no address bar)"
        return f"unsupported action {action.type}"

    def _scroll(self, action: Scroll, width: int, height: int) -> str | None:
        """A scroll of N notches is a swipe the other way (content follows the finger);
        the same gesture the AndroidWorld adapter sends (actions.exporters.scroll_swipe)."""
        gesture = scroll_swipe(action, width, height, self.config.scroll_fraction_per_notch,
                               self.config.swipe_duration_s)
        return self._swipe(gesture.start_x, gesture.start_y, gesture.end_x, gesture.end_y,
                           self.config.swipe_duration_s)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` (adbutils calls on `self.device`), turning a lost device into a crash."""
        with self._device_call(getattr(fn, "__name__", "call")):
            return fn()


def _is_network_serial(serial: str) -> bool:
    return bool(re.fullmatch(r"[\w.\-]+:\d+", serial))


def _parse_focus(text: str) -> str | None:
    """The foreground package in `dumpsys window` lines (the settle's parser)."""
    return PhoneState.parse(text).package


def _command_error(output: str) -> str | None:
    """Shell commands print errors instead of failing: recognise the usual ones."""
    lowered = output.lower()
    if any(marker in lowered for marker in ("exception", "error:", "unknown command",
                                            "not found", "usage:")):
        return output.strip()[-500:]
    return None




__all__ = ["ADB_KEYBOARD_IME", "AndroidConfig", "AndroidEnvironment", "DeviceLost", "KEYCODES"]
