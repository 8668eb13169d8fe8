"""X display plumbing for the desktop environment: our own Xvfb, waiting for a display,
the window manager's config, killing process groups, PNG encoding of mss frames, and
`XTyper` (Unicode text through XTest). environments/desktop.py composes them."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from actions.observation import Size

logger = logging.getLogger(__name__)

class DesktopEnvError(RuntimeError):
    """The desktop environment cannot be used as asked (missing tool, second env, ...)."""



def _bgrx_png(frame: np.ndarray) -> bytes:
    """A (height, width, 4) BGRX screen array as lossless PNG bytes (fast zlib level)."""
    from PIL import Image

    buf = io.BytesIO()
    height, width = frame.shape[:2]
    Image.frombuffer("RGB", (width, height), frame.tobytes(), "raw", "BGRX", 0, 1).save(
        buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise DesktopEnvError(
            f"{tool!r} is not installed; install it with scripts/install.sh "
            f"(Debian: apt-get install {'x11-utils' if tool == 'xprop' else tool})"
        )
    return path


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _group_members(group: int) -> list[int]:
    """Pids of the processes in process group `group` that have not exited (zombies, dead
    but not yet reaped by whoever inherited them, are not counted)."""
    import psutil

    members = []
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if (process.info["status"] != psutil.STATUS_ZOMBIE
                    and os.getpgid(process.pid) == group):
                members.append(process.pid)
    return members


def _kill_group(proc: subprocess.Popen, timeout_s: float = 3.0) -> None:
    """SIGTERM the process group led by `proc`; SIGKILL the group after the leader exits
    (children may outlive it) or after timeout_s; return once every member has exited
    (a signal is delivered asynchronously: on a loaded machine a killed child can still
    be running when the leader has been reaped), or after timeout_s more."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the condition itself, bounded by the deadline


class XServer:
    """An Xvfb display this process started and owns (stderr goes to `log_path`)."""

    def __init__(self, screen_size: Size, start_timeout_s: float = 10.0) -> None:
        _require("Xvfb")
        read_fd, write_fd = os.pipe()
        log = tempfile.NamedTemporaryFile(prefix="cua-xvfb-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(log.name)
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0",
             f"{screen_size.width}x{screen_size.height}x24", "-nolisten", "tcp",
             "-noreset"],
            pass_fds=(write_fd,), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=log,
        )
        log.close()
        os.close(write_fd)
        try:
            number = self._read_display_number(read_fd, start_timeout_s)
            self.display = f":{number}"
            _wait_for_x(self.display, start_timeout_s, self.process)
        except BaseException:
            self.close()
            raise
        logger.info("Xvfb %s started (pid %d, %s)", self.display, self.process.pid, screen_size)

    def _read_display_number(self, read_fd: int, timeout_s: float) -> str:
        import select

        deadline = time.monotonic() + timeout_s
        data = b""
        try:
            while not data.endswith(b"\n"):
                left = deadline - time.monotonic()
                ready, _, _ = select.select([read_fd], [], [], max(left, 0))
                if not ready:
                    raise DesktopEnvError(f"Xvfb did not report a display in {timeout_s} s")
                chunk = os.read(read_fd, 64)
                if not chunk:
                    err = self.log_path.read_text(errors="replace")[-500:]
                    raise DesktopEnvError(f"Xvfb exited before reporting a display: {err}")
                data += chunk
        finally:
            os.close(read_fd)
        return data.decode().strip()

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        _kill_group(self.process)
        self.log_path.unlink(missing_ok=True)


def _wait_for_x(display: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll until an X client can connect to `display` (raise DesktopEnvError after timeout_s)."""
    from Xlib import display as xdisplay
    from Xlib import error as xerror

    _ensure_xauthority()
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DesktopEnvError(f"X server for {display} exited with code {process.returncode}")
        try:
            xdisplay.Display(display).close()
            return
        except (xerror.DisplayError, ConnectionError, OSError) as exc:
            last = exc
            time.sleep(0.02)
    raise DesktopEnvError(f"cannot connect to X display {display} within {timeout_s} s: {last}")


def _openbox_config(runtime_dir: Path) -> Path | None:
    """openbox's own rc.xml without its mouse bindings on client windows.

    Those bindings (press -> focus, raise) make openbox grab every click on an app
    synchronously; under load that grab drops or reorders fast XTest clicks (the second
    click of a double click is lost). DesktopEnv does click-to-focus itself instead.
    """
    system = Path("/etc/xdg/openbox/rc.xml")
    if not system.is_file():
        return None
    text = re.sub(r'(<context name="Client">).*?(</context>)', r"\1\2",
                  system.read_text(encoding="utf-8"), flags=re.S)
    path = runtime_dir / "openbox-rc.xml"
    path.write_text(text, encoding="utf-8")
    return path


def _ensure_xauthority() -> None:
    """python-xlib refuses to connect when no Xauthority file exists at all: point
    XAUTHORITY at one of our own (process-wide; our Xvfb uses no authorization)."""
    current = os.environ.get("XAUTHORITY") or str(Path.home() / ".Xauthority")
    if not Path(current).exists():
        import struct

        path = Path(tempfile.gettempdir()) / f"cua-xauthority-{os.getuid()}"
        # one entry for a host that does not exist: python-xlib prints a warning on stdout
        # for an empty file; with no entry for our display it connects without auth
        fields = [b"cua-no-such-host", b"65535", b"MIT-MAGIC-COOKIE-1", bytes(16)]
        path.write_bytes(struct.pack(">H", 256) + b"".join(
            struct.pack(">H", len(f)) + f for f in fields))
        os.environ["XAUTHORITY"] = str(path)


class XTyper:
    """Types Unicode text with XTest key events, one keysym per character.

    pyautogui cannot type non-ASCII text and, on X, shifts '<' into '>'; `xdotool type`
    remaps one scratch keycode per character, and clients that read the keymap late see
    the next character's mapping (characters get lost). Here every character missing from
    the keymap gets its own spare keycode (both shift levels), all mapped in one change
    before typing and kept mapped afterwards, so no client can see a stale mapping.
    """

    def __init__(self, display: Any) -> None:
        self.display = display
        first = display.display.info.min_keycode
        count = display.display.info.max_keycode - first + 1
        mapping = display.get_keyboard_mapping(first, count)
        self._spare = [first + i for i, syms in enumerate(mapping) if not any(syms)]
        self._extra: dict[int, int] = {}  # keysym -> keycode we mapped it to

    @staticmethod
    def keysym_of(char: str) -> int:
        from Xlib import XK

        if char == "\n":
            return XK.XK_Return
        if char == "\t":
            return XK.XK_Tab
        code = ord(char)
        if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
            return code  # Latin-1 keysyms equal the code point
        return 0x01000000 | code  # X's Unicode keysyms

    def _lookup(self, keysym: int) -> tuple[int, bool] | None:
        if keysym in self._extra:
            return self._extra[keysym], False
        for keycode, index in self.display.keysym_to_keycodes(keysym):
            if index in (0, 1):
                return keycode, index == 1
        return None

    def _map_missing(self, keysyms: list[int]) -> None:
        missing = [k for k in dict.fromkeys(keysyms) if self._lookup(k) is None]
        if not missing:
            return
        if len(missing) > len(self._spare):
            # out of spare keycodes: recycle the oldest mappings (clients may lag on those)
            for keysym in list(self._extra)[: len(missing) - len(self._spare)]:
                self._spare.append(self._extra.pop(keysym))
        for keysym in missing:
            keycode = self._spare.pop(0)
            self.display.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self._extra[keysym] = keycode
        self.display.sync()

    def type(self, text: str) -> None:
        from Xlib import XK, X
        from Xlib.ext.xtest import fake_input

        keysyms = [self.keysym_of(c) for c in text if c != "\r"]
        self._map_missing(keysyms)
        shift = self.display.keysym_to_keycode(XK.XK_Shift_L)
        for keysym in keysyms:
            found = self._lookup(keysym)
            if found is None:
                raise DesktopEnvError(f"cannot type keysym {keysym:#x}: no keycode for it")
            keycode, shifted = found
            if shifted:
                fake_input(self.display, X.KeyPress, shift)
            fake_input(self.display, X.KeyPress, keycode)
            fake_input(self.display, X.KeyRelease, keycode)
            if shifted:
                fake_input(self.display, X.KeyRelease, shift)
        self.display.sync()
