"""What the phone's system is doing after an action, from adb (docs/settling.md).

A tap that starts an activity shows nothing until the new window draws its first frame;
pixels alone cannot tell that wait from a dead tap. One shell call per poll reads:

- `dumpsys window -a`: `mCurrentFocus` (the focused window, `null` while a started app
  has not drawn), `mFocusedApp` and `mAppTransitionState` (APP_STATE_IDLE / READY /
  RUNNING / TIMEOUT);
- `dumpsys activity activities`: `mResumedActivity` (`topResumedActivity` on Android 10+);
- `dumpsys input_method`: `mInputShown` (the soft keyboard up or down).

Formats as AOSP's own CTS parsers read them (TeamWin/android_cts @ c356bf1f,
hostsidetests/services/activityandwindowmanager/util/src/android/server/cts/
WindowManagerState.java and ActivityManagerState.java). A change of the focused window,
app or resumed activity since the action is an event ("focus"), as is the keyboard
showing or hiding ("ime"); a transition in progress or a focused app without a focused
window is work in progress ("transition").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from environments._settle import Activity

STATE_COMMAND = (
    "dumpsys window -a | grep -E 'mCurrentFocus|mFocusedApp|mAppTransitionState'; "
    "dumpsys activity activities | grep -E 'mResumedActivity|topResumedActivity'; "
    "dumpsys input_method | grep -E 'mInputShown'"
)
_BUSY_TRANSITIONS = ("APP_STATE_READY", "APP_STATE_RUNNING")


@dataclass(frozen=True)
class PhoneState:
    """The system's view of the foreground, parsed from `STATE_COMMAND`'s output.

    `focus` is the focused window's name (a component, or a window title), None when
    `mCurrentFocus=null`; `focused_app` and `resumed` the components of the focused app
    and the resumed activity; `transition` the app transition state; `ime_shown` whether
    the soft keyboard is up. A field the device did not print is None.
    """

    focus: str | None
    focused_app: str | None
    resumed: str | None
    transition: str | None
    ime_shown: bool | None

    @classmethod
    def parse(cls, text: str) -> PhoneState:
        focus = re.search(r"mCurrentFocus=(?:Window\{[0-9a-fA-F]+ u\d+ ([^}]+)\}|(null))", text)
        app = re.search(r"mFocusedApp=[^\n]*?ActivityRecord\{\S+ u\d+ (\S+)", text)
        resumed = re.search(r"(?:mResumedActivity: |topResumedActivity=)ActivityRecord"
                            r"\{\S+ u\d+ (\S+)", text)
        transition = re.search(r"mAppTransitionState=(\S+)", text)
        shown = re.search(r"mInputShown=(true|false)", text)
        return cls(
            focus=focus.group(1) if focus and focus.group(1) else None,
            focused_app=app.group(1) if app else None,
            resumed=resumed.group(1) if resumed else None,
            transition=transition.group(1) if transition else None,
            ime_shown=(shown.group(1) == "true") if shown else None,
        )

    @property
    def package(self) -> str | None:
        """The foreground app's package (of the focused window, else the focused app)."""
        for name in (self.focus, self.focused_app):
            if name and "/" in name:
                return name.split("/", 1)[0]
        return None

    def busy(self) -> tuple[str, ...]:
        drawing = self.focused_app is not None and self.focus is None
        return ("transition",) if drawing or self.transition in _BUSY_TRANSITIONS else ()


class AndroidActivity:
    """Polls the phone's foreground state through `shell` (one adb call per poll).

    The call runs beside the settle's `screencap` rather than after it: each poll returns
    the state read while the previous frame was captured (one frame old, a hint of what
    is on its way) and starts the next read. The baseline an action is compared with is
    the state its previous settle ended on (no extra call before the action); `last` is
    the newest state read.
    """

    def __init__(self, shell: Callable[[str], str]) -> None:
        self._shell = shell
        self.last: PhoneState | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phone-state")
        self._next: Future[PhoneState] | None = None

    def read(self) -> PhoneState:
        self.last = PhoneState.parse(self._shell(STATE_COMMAND))
        return self.last

    def poll(self) -> Activity:
        before = self.last
        now = self._next.result() if self._next is not None else self.read()
        self.last = now
        self._next = self._pool.submit(lambda: PhoneState.parse(self._shell(STATE_COMMAND)))
        events: list[str] = []
        if before is not None:
            if (before.focus, before.focused_app, before.resumed) != (
                    now.focus, now.focused_app, now.resumed):
                events.append("focus")
            if before.ime_shown != now.ime_shown:
                events.append("ime")
        return Activity(busy=now.busy(), events=tuple(events))

    def settled(self) -> None:
        """The settle ended: take the read in flight if it is done (else drop it)."""
        future, self._next = self._next, None
        if future is not None and future.done() and future.exception() is None:
            self.last = future.result()

    def forget(self) -> None:
        self.settled()
        self.last = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
