"""Window queries and requests on the desktop environment's X connection: the active
window and its title, the app window under the pointer, finding windows by title, their
geometry, activating and closing them. `DesktopEnv` (environments/desktop.py) mixes this
in; it provides `_xdisplay` (its python-xlib connection), `_x` (runs an X tool such as
xdotool on its display) and `_wm` (its window manager process, None without one)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from environments._x11 import DesktopEnvError


class XWindows:
    """The window half of `DesktopEnv` (see the module docstring)."""

    _xdisplay: Any
    _wm: subprocess.Popen | None

    def _x(self, argv: list[str], check: bool = True) -> str:
        raise NotImplementedError

    def _atom(self, name: str) -> int:
        return self._xdisplay.intern_atom(name)

    def active_window_id(self) -> int | None:
        """The EWMH active window (_NET_ACTIVE_WINDOW on the root), None if none/no WM."""
        from Xlib import X
        from Xlib.error import XError

        root = self._xdisplay.screen().root
        try:
            prop = root.get_full_property(self._atom("_NET_ACTIVE_WINDOW"), X.AnyPropertyType)
        except XError:
            return None
        return int(prop.value[0]) if prop is not None and len(prop.value) and prop.value[0] else None

    def _window_name(self, window_id: int) -> str | None:
        from Xlib.error import XError

        window = self._xdisplay.create_resource_object("window", window_id)
        try:
            prop = window.get_full_property(self._atom("_NET_WM_NAME"), self._atom("UTF8_STRING"))
            if prop is not None and prop.value:
                value = prop.value
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            name = window.get_wm_name()
        except XError:  # the window went away meanwhile
            return None
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        return name or None

    def active_window_title(self) -> str | None:
        """Title of the active window (EWMH), else of the X input focus; None if none."""
        window = self.active_window_id()
        if window is not None:
            return self._window_name(window)
        if self._wm is not None:
            return None  # our EWMH window manager says no window is active
        out = self._x(["xdotool", "getwindowfocus", "getwindowname"], check=False).strip()
        return out or None

    def client_window_at_pointer(self) -> int | None:
        """The top-level app window (one with WM_STATE) under the pointer, if any."""
        from Xlib.error import XError

        wm_state = self._atom("WM_STATE")
        try:
            child = self._xdisplay.screen().root.query_pointer().child
            pending = [child] if child else []
            while pending:  # the WM's frame holds the client: search below it
                window = pending.pop(0)
                if window.get_property(wm_state, wm_state, 0, 0) is not None:
                    return int(window.id)
                pending.extend(window.query_tree().children)
        except XError:
            return None
        return None

    def find_windows(self, title_regex: str) -> list[int]:
        """Ids of visible windows whose title matches `title_regex`."""
        out = self._x(["xdotool", "search", "--onlyvisible", "--name", title_regex], check=False)
        return [int(w) for w in out.split()]

    def window_geometry(self, window_id: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) of a window's client area, in screen pixels."""
        out = self._x(["xdotool", "getwindowgeometry", "--shell", str(window_id)])
        values = dict(line.split("=", 1) for line in out.split() if "=" in line)
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def window_title(self, window_id: int) -> str:
        return self._x(["xdotool", "getwindowname", str(window_id)]).strip()

    def wait_for_window(self, title_regex: str, timeout_s: float = 10.0) -> int:
        """Poll until a visible window's title matches; return its id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            windows = self.find_windows(title_regex)
            if windows:
                return windows[-1]
            time.sleep(0.03)
        raise DesktopEnvError(f"no window titled like {title_regex!r} within {timeout_s} s")

    def activate_window(self, window_id: int) -> None:
        self._x(["xdotool", "windowactivate", "--sync", str(window_id)], check=False)

    def close_window(self, window_id: int) -> None:
        """Ask the window manager to close a window politely (EWMH _NET_CLOSE_WINDOW)."""
        from Xlib import X
        from Xlib.protocol import event

        display = self._xdisplay
        window = display.create_resource_object("window", window_id)
        message = event.ClientMessage(
            window=window, client_type=display.intern_atom("_NET_CLOSE_WINDOW"),
            data=(32, [X.CurrentTime, 2, 0, 0, 0]),
        )
        display.screen().root.send_event(
            message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask
        )
        display.flush()
