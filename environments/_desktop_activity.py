"""What the X desktop is doing after an action, beyond its pixels (docs/settling.md).

A click that starts a program, or makes an app compute before it paints, shows nothing
for a while; pixels alone cannot tell that wait from a dead click. `DesktopActivity`
reads the system instead, on an X connection of its own:

- **windows**: top-level windows created, mapped, unmapped, configured or reparented
  (SubstructureNotify on the root window), the active window and the client list
  changing (PropertyNotify of `_NET_ACTIVE_WINDOW` / `_NET_CLIENT_LIST` on the root):
  events, each restarting the quiet window as a pixel change does;
- **requests**: a TCP connection a watched process opened since the action and still
  holds (connecting or established: an answer awaited) is "network" — a dialog after a
  network call; a request on a connection kept alive from before is not seen;
- **repaints** (the DAMAGE extension, where the server offers it): the settle grabs a
  frame only after the screen was drawn on (`screen_damaged()`), instead of every poll;
- **startup notification** (freedesktop startup-notification spec: `_NET_STARTUP_INFO`
  client messages to the root): a launch announced with "new:" is work in progress until
  its "remove:";
- **processes** (psutil): the process trees of the apps (the environment's own children
  and the owners of client windows, `_NET_WM_PID`). A process started since the action
  that is still alive while no window has been mapped since is "launching"; a process
  running or runnable at a sample (state R: on a starved machine a computing app gets a
  small share of a core, but the scheduler still lists it as running), or using more
  than `cpu_busy_fraction` of a core over a sample, is "cpu" — unless it was as busy
  between the previous step and this action (a video, a busy loop: ambient).

Tk and many toolkits set no `_NET_WM_PID`, so a new window ends "launching" for every
process started since the action (its CPU, if it still computes, keeps the step waiting).
A reaction driven by a pure timer in an already idle app shows none of these: only the
first-change window catches it (the documented limit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable

import psutil

from environments._settle import Activity
from environments._x_damage import RootDamage

logger = logging.getLogger(__name__)

_IN_FLIGHT = (psutil.CONN_SYN_SENT, psutil.CONN_ESTABLISHED)
_WINDOW_EVENTS = ("CreateNotify", "MapNotify", "UnmapNotify", "DestroyNotify",
                  "ConfigureNotify", "ReparentNotify")


class DesktopActivity:
    """Windows, startup notifications and app processes of one X display.

    `roots()` returns the pids whose process trees are watched (besides the owners of
    client windows). Call `begin()` just before an action, then `poll()` while settling.
    """

    def __init__(self, display_name: str, roots: Callable[[], Iterable[int]],
                 cpu_busy_fraction: float = 0.15, sample_s: float = 0.02) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self.cpu_busy_fraction = cpu_busy_fraction
        self.sample_s = sample_s
        self._roots = roots
        self._display = xdisplay.Display(display_name)
        self._root = self._display.screen().root
        self._root.change_attributes(event_mask=X.SubstructureNotifyMask
                                     | X.PropertyChangeMask)
        self._display.sync()
        try:
            self._damage: RootDamage | None = RootDamage(self._display)
        except LookupError:  # no DAMAGE on this server: every frame is grabbed
            self._damage = None
        self._damaged = True  # the screen was drawn on since the last screen_damaged()
        self._seen: dict[str, None] = {}  # events read and not yet reported by poll()
        atom = self._display.intern_atom
        self._focus_atoms = {atom("_NET_ACTIVE_WINDOW"), atom("_NET_CLIENT_LIST")}
        self._client_list = atom("_NET_CLIENT_LIST")
        self._wm_pid = atom("_NET_WM_PID")
        self._startup_atoms = {atom("_NET_STARTUP_INFO_BEGIN"), atom("_NET_STARTUP_INFO")}
        self._event_names = {getattr(X, name): name for name in _WINDOW_EVENTS}
        self._x = X
        self._partial: dict[int, bytes] = {}  # startup messages in flight, per sender
        self._launches: set[str] = set()  # startup ids announced and not yet removed
        self._cpu: dict[int, float] = {}  # pid -> cpu seconds at the last sample
        self._sampled_at = time.perf_counter()
        self._before: set[int] = set()  # pids alive at begin()
        self._sockets_before: set[tuple] = set()  # TCP connections open at begin()
        self._ambient_cpu: set[int] = set()  # pids as busy before the action as after
        self._window_since = False
        self._busy: tuple[str, ...] = ()
        self._running: set[int] = set()  # watched pids in state R at the last sample

    # ------------------------------------------------------------ processes

    def _window_pids(self) -> set[int]:
        from Xlib.error import XError

        pids: set[int] = set()
        try:
            clients = self._root.get_full_property(self._client_list, self._x.AnyPropertyType)
            for window_id in (clients.value if clients is not None else []):
                window = self._display.create_resource_object("window", int(window_id))
                prop = window.get_full_property(self._wm_pid, self._x.AnyPropertyType)
                if prop is not None and len(prop.value):
                    pids.add(int(prop.value[0]))
        except XError:
            pass  # a window went away meanwhile: its pid does not matter now
        return pids

    def _scan(self) -> dict[int, tuple[float, bool]]:
        """pid -> (cpu seconds, alive and not a zombie) for every watched process (and the
        set `self._running` of those running or waiting for a CPU now): the
        roots and their descendants, found through each thread's `children` list in /proc
        (a walk of a few processes, not a scan of every process on the machine)."""
        watched: dict[int, tuple[float, bool]] = {}
        self._running = set()
        pending = list(set(self._roots()) | self._window_pids())
        while pending:
            pid = pending.pop()
            if pid in watched:
                continue
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    times = proc.cpu_times()
                    status = proc.status()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            alive = status != psutil.STATUS_ZOMBIE
            if status == psutil.STATUS_RUNNING:
                self._running.add(pid)
            watched[pid] = (times.user + times.system, alive)
            pending.extend(_children(pid))
        return watched

    def _sample(self) -> tuple[dict[int, tuple[float, bool]], dict[int, float]]:
        """The watched processes now and each one's share of a core since the last sample."""
        now = time.perf_counter()
        elapsed = max(now - self._sampled_at, 1e-3)
        scan = self._scan()
        shares = {pid: (cpu - self._cpu[pid]) / elapsed for pid, (cpu, _) in scan.items()
                  if pid in self._cpu}
        self._cpu = {pid: cpu for pid, (cpu, _) in scan.items()}
        self._sampled_at = now
        return scan, shares

    # ------------------------------------------------------------ X events

    def _drain(self) -> None:
        """Read the queued X events; note what they say happened (window, focus, damage)."""
        seen = self._seen
        with contextlib.suppress(Exception):  # a broken connection: no signal, not a crash
            while self._display.pending_events():
                event = self._display.next_event()
                if self._damage is not None and event.type == self._damage.event_type:
                    self._damaged = True
                    self._damage.rearm()
                    continue
                name = self._event_names.get(event.type)
                if name is not None:
                    seen["window"] = None
                    if name == "MapNotify":
                        self._window_since = True
                elif event.type == self._x.PropertyNotify and event.atom in self._focus_atoms:
                    seen["focus"] = None
                elif (event.type == self._x.ClientMessage
                      and event.client_type in self._startup_atoms):
                    self._startup_message(event)

    def screen_damaged(self) -> bool:
        """Whether anything was drawn on the screen since the last call (DAMAGE); always
        True where the server does not offer DAMAGE. A settle grabs a frame only then."""
        if self._damage is None:
            return True
        self._drain()
        damaged, self._damaged = self._damaged, False
        return damaged

    def _startup_message(self, event) -> None:
        """Collect one 20-byte piece of a startup-notification message (NUL-terminated)."""
        sender = int(event.window.id)
        if event.client_type == self._display.intern_atom("_NET_STARTUP_INFO_BEGIN"):
            self._partial[sender] = b""
        data = bytes(event.data[1]) if isinstance(event.data[1], (bytes, list)) else b""
        buffer = self._partial.get(sender, b"") + data
        if b"\0" not in buffer:
            self._partial[sender] = buffer
            return
        self._partial.pop(sender, None)
        text = buffer.split(b"\0", 1)[0].decode("utf-8", "replace")
        kind, _, rest = text.partition(":")
        launch_id = _startup_id(rest)
        if kind == "new" and launch_id:
            self._launches.add(launch_id)
        elif kind == "remove":
            self._launches.discard(launch_id)

    # ------------------------------------------------------------ the settle's view

    def _requests(self, pids: Iterable[int]) -> set[tuple]:
        """The watched processes' client TCP connections in flight (connecting or open)."""
        open_now: set[tuple] = set()
        for pid in pids:
            try:
                connections = psutil.Process(pid).net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            open_now.update((pid, c.laddr, c.raddr) for c in connections
                            if c.raddr and c.status in _IN_FLIGHT)
        return open_now

    def begin(self) -> None:
        """Mark the action: what runs now is the baseline, what starts later is its work."""
        self._drain()  # events from before the action are not its reaction
        self._seen = {}
        scan, shares = self._sample()
        # busy between steps (or running right now, with nothing asked of it): ambient CPU
        self._ambient_cpu = {pid for pid, share in shares.items()
                             if share > self.cpu_busy_fraction} | self._running
        self._before = set(scan)
        self._sockets_before = self._requests(scan)
        self._window_since = False
        self._busy = ()

    def poll(self) -> Activity:
        """What is in progress now and what happened since the previous poll."""
        self._drain()
        events, self._seen = tuple(self._seen), {}
        if time.perf_counter() - self._sampled_at >= self.sample_s:
            scan, shares = self._sample()
            busy: list[str] = []
            if not self._window_since and any(
                    alive for pid, (_, alive) in scan.items() if pid not in self._before):
                busy.append("launching")
            # Running (or runnable: a starved machine gives a computing app a small share
            # of a core, but the scheduler still lists it as running), or above the share.
            if any(pid not in self._ambient_cpu for pid in self._running) or any(
                    share > self.cpu_busy_fraction for pid, share in shares.items()
                    if pid not in self._ambient_cpu):
                busy.append("cpu")
            if self._launches:
                busy.append("startup")
            if self._requests(scan) - self._sockets_before:
                busy.append("network")
            self._busy = tuple(busy)
        return Activity(busy=self._busy, events=events)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._display.close()


def _startup_id(fields: str) -> str:
    """The ID value of a startup-notification message's key=value list (quoted or not)."""
    match = re.search(r'(?:^|\s)ID=(?:"((?:[^"\\]|\\.)*)"|(\S+))', fields)
    return (match.group(1) or match.group(2) or "") if match else ""


def _children(pid: int) -> list[int]:
    """Direct children of a process, from /proc/PID/task/TID/children (Linux >= 3.5);
    psutil's own walk where that file is missing."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as file:
                children += [int(c) for c in file.read().split()]
        except FileNotFoundError:
            with contextlib.suppress(psutil.Error):
                return [c.pid for c in psutil.Process(pid).children()]
        except OSError:
            continue
    return children
