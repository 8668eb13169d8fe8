"""Waiting for a UI to settle without fixed sleeps, and a watchdog for hung drivers.

Shared by environments: `settle_on_pixels` grabs frames until nothing outside ambient
regions (cells that change on their own: clocks, cursors, spinners) changed for a quiet
window measured in time, or a time bound passes; the web environment first asks its page
script whether a reaction is still pending (environments/_page_settle.js), the desktop
and the phone pass what the system is doing (`Activity`: windows, processes, CPU, app
transitions; environments/_desktop_activity.py, environments/_android_activity.py).
`Watchdog` bounds any blocking driver call by killing the process it waits on.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from actions.observation import SettleReport

logger = logging.getLogger(__name__)


Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in screenshot pixels, x1/y1 exclusive


@dataclass(frozen=True)
class SettleResult:
    """What a settle wait saw.

    `screenshot_png` is the last frame captured (the observation's screenshot);
    `settle_s` the seconds spent from the first poll to the return; `frames` how many
    frames were captured; `settled` is False when `timeout_s` passed first (the screen
    kept changing or the page kept reporting pending work). `reason` says why it returned:
    "page_idle" (the page script reported nothing pending: one capture), "quiet" (no change
    outside ambient regions for the quiet window), "stable" (two identical frames, the old
    rule), "fixed_sleep", or "timeout". `waited_for` names what held the step (timers,
    requests, animations, ..., "screen" for pixel change); `masked` the screen regions
    ignored as ambient motion; `ambient` what the page script ignored as ambient.
    """

    screenshot_png: bytes
    settle_s: float
    frames: int
    settled: bool
    reason: str = "stable"
    waited_for: tuple[str, ...] = ()
    masked: tuple[Box, ...] = ()
    ambient: tuple[str, ...] = ()

    def report(self) -> SettleReport:
        """The observation's `settle` field."""
        return SettleReport(
            settled=self.settled, reason=self.reason, frames=self.frames,
            waited_for=list(self.waited_for), masked=[list(b) for b in self.masked],
            ambient=list(self.ambient),
        )

    def info(self) -> dict[str, object]:
        """The same facts for `Observation.info` (which the trajectory store records)."""
        info: dict[str, object] = {"settled": self.settled, "frames": self.frames,
                                   "settle_reason": self.reason}
        if self.waited_for:
            info["settle_waited_for"] = list(self.waited_for)
        if self.masked:
            info["settle_masked"] = [list(b) for b in self.masked]
        if self.ambient:
            info["settle_ambient"] = list(self.ambient)
        return info


def wait_until_settled(
    capture: Callable[[], bytes],
    is_quiet: Callable[[], bool],
    wait_a_little: Callable[[], None],
    timeout_s: float,
) -> SettleResult:
    """The old two-frame rule, kept as the "before" baseline of benchmarks/perf/settle.py.

    Captures frames until two consecutive ones are identical while `is_quiet()` holds,
    or `timeout_s` passes. It returns a stale screen when a page reacts after the first
    two frames, and waits out the timeout on any page with ambient motion.
    """
    start = time.perf_counter()
    deadline = start + timeout_s
    previous: bytes | None = None
    frames = 0
    while True:
        if not is_quiet() and time.perf_counter() < deadline:
            previous = None  # a frame from before the page went quiet proves nothing
            wait_a_little()
            continue
        frame = capture()
        frames += 1
        if previous is not None and frame == previous and is_quiet():
            return SettleResult(frame, time.perf_counter() - start, frames, settled=True)
        if time.perf_counter() >= deadline:
            logger.debug("screen did not settle within %.2f s (%d frames)", timeout_s, frames)
            return SettleResult(frame, time.perf_counter() - start, frames, settled=False,
                                reason="timeout")
        previous = frame


# ------------------------------------------------------------------ pixel settling

CELL_PX = 16  # change is tracked per square cell of this many screenshot pixels


def changed_cells(a: np.ndarray, b: np.ndarray, cell_px: int = CELL_PX) -> np.ndarray:
    """Per `cell_px` square cell, whether any pixel differs between frames `a` and `b`.

    Frames are (height, width[, channels]) arrays of one size; the result is a boolean
    grid of ceil(height / cell_px) x ceil(width / cell_px).
    """
    if a.shape != b.shape:
        return np.ones(_grid_shape(b.shape, cell_px), dtype=bool)
    diff = a != b
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    rows = np.logical_or.reduceat(diff, np.arange(0, diff.shape[0], cell_px), axis=0)
    return np.logical_or.reduceat(rows, np.arange(0, diff.shape[1], cell_px), axis=1)


def _grid_shape(shape: tuple[int, ...], cell_px: int) -> tuple[int, int]:
    return (-(-shape[0] // cell_px), -(-shape[1] // cell_px))


def mask_boxes(mask: np.ndarray, frame_shape: tuple[int, ...],
               cell_px: int = CELL_PX) -> tuple[Box, ...]:
    """Masked cells as pixel boxes: one box per run of masked cells in a row of cells,
    merged with the identical run of the row above (a compact, exact cover)."""
    height, width = frame_shape[0], frame_shape[1]
    boxes: list[list[int]] = []
    open_runs: dict[tuple[int, int], list[int]] = {}
    for row in range(mask.shape[0]):
        runs: dict[tuple[int, int], list[int]] = {}
        cols = np.flatnonzero(mask[row])
        if cols.size:
            breaks = np.flatnonzero(np.diff(cols) > 1)
            starts = np.concatenate(([cols[0]], cols[breaks + 1]))
            ends = np.concatenate((cols[breaks], [cols[-1]]))
            for c0, c1 in zip(starts.tolist(), ends.tolist(), strict=True):
                y1 = min(height, (row + 1) * cell_px)
                box = open_runs.get((c0, c1))
                if box is not None:
                    box[3] = y1
                else:
                    box = [c0 * cell_px, row * cell_px, min(width, (c1 + 1) * cell_px), y1]
                    boxes.append(box)
                runs[(c0, c1)] = box
        open_runs = runs
    return tuple((b[0], b[1], b[2], b[3]) for b in boxes)


@dataclass(frozen=True)
class Activity:
    """What the system (not the screen) reported at one poll during a settle.

    `busy` names work in progress now, whose result is not on screen yet: "launching" (a
    process started since the action has no window yet), "cpu" (an app burns CPU),
    "startup" (a launch announced by startup notification), "network" (an app's request
    in flight), "transition" (an Android app
    transition, or a focused app whose window is not drawn yet). `events` names what
    happened since the previous poll: "window" (created, mapped, unmapped, configured),
    "focus" (the active window or focused activity changed), "ime" (the keyboard shown or
    hidden). Both hold the step: busy until it ends (or the reaction bound passes), an
    event like a pixel change (the quiet window restarts).
    """

    busy: tuple[str, ...] = ()
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuietWindow:
    """When a screen without a page script counts as settled. Times in seconds.

    After the action the screen must show no change outside ambient cells for `quiet_s`
    since its last change; when nothing at all has changed yet it waits `first_change_s`
    for the reaction to begin (a reaction that starts later than that is missed).
    A cell that keeps changing for `ambient_after_s` (three changes or more) is ambient:
    a clock, a blinking cursor, a spinner. A mask over more than `max_ambient_fraction`
    of the screen is not trusted (the screen is changing, not its corner): nothing is
    masked then, and only the timeout ends the wait. With an activity source,
    `reaction_bound_s` bounds how long "busy" holds a step (after it, pixels alone decide).
    """

    quiet_s: float
    first_change_s: float
    poll_s: float = 0.03
    ambient_after_s: float = 1.0
    max_ambient_fraction: float = 0.5
    reaction_bound_s: float = 2.0


class AmbientMemory:
    """Screen cells seen changing on their own, remembered across steps of one screen.

    Cells found ambient — changing periodically during a settle, or changing while nothing
    was done (between a settle's return and the next action) in two recent intervals, so
    that a window that merely opened late is not taken for a clock — stay masked for
    `keep_steps` settles after they were last seen changing.
    """

    def __init__(self, keep_steps: int = 8) -> None:
        self.keep_steps = keep_steps
        self._age: np.ndarray | None = None  # settles left for which each cell stays masked
        self._idle_changes: np.ndarray | None = None  # decaying count of unprompted changes
        self.last_frame: np.ndarray | None = None  # the frame the last settle returned

    def mask(self, grid_shape: tuple[int, int]) -> np.ndarray:
        if self._age is None or self._age.shape != grid_shape:
            self._age = np.zeros(grid_shape, dtype=np.int16)
            self._idle_changes = np.zeros(grid_shape, dtype=np.float32)
        return self._age > 0

    def learn(self, cells: np.ndarray) -> None:
        """Mark `cells` (a boolean grid) as ambient."""
        self.mask(cells.shape)
        assert self._age is not None
        self._age[cells] = self.keep_steps

    def learn_before_action(self, frame: np.ndarray) -> None:
        """Count the cells that changed between the last settle's frame and `frame` (taken
        just before the next action, nothing done in between); twice recently: ambient."""
        if self.last_frame is None or self.last_frame.shape != frame.shape:
            return
        changed = changed_cells(self.last_frame, frame)
        self.mask(changed.shape)
        assert self._idle_changes is not None
        self._idle_changes *= 0.75
        self._idle_changes += changed
        self.learn(self._idle_changes >= 1.5)

    def age(self) -> None:
        if self._age is not None:
            np.subtract(self._age, 1, out=self._age, where=self._age > 0)

    def forget(self) -> None:
        self._age = None
        self._idle_changes = None
        self.last_frame = None


def settle_on_pixels(
    grab: Callable[[], np.ndarray],
    encode: Callable[[np.ndarray], bytes],
    window: QuietWindow,
    timeout_s: float,
    memory: AmbientMemory | None = None,
    first: tuple[np.ndarray, bytes | None] | None = None,
    is_quiet: Callable[[], bool] = lambda: True,
    wait: Callable[[float], None] = time.sleep,
    activity: Callable[[], Activity] | None = None,
) -> SettleResult:
    """Grab frames until nothing outside ambient cells changed for the quiet window.

    `grab` returns a frame as an array; `encode` turns the returned frame into the
    observation's PNG, once. `memory` carries ambient cells between steps (and learns the
    ones found here). `first` is an already grabbed frame to start from (with its PNG if
    it has one). `is_quiet` is a further signal (network idle) that must hold to return
    early. `activity` is polled once per frame: while it reports work in progress (up to
    `window.reaction_bound_s`) the step waits, and its events restart the quiet window
    as a pixel change does. Returns after `timeout_s` at the latest, with the newest frame.
    """
    start = time.perf_counter()
    frame, png = first if first is not None else (grab(), None)
    frames = 1 if first is None else 0
    grid = _grid_shape(frame.shape, CELL_PX)
    prior = memory.mask(grid) if memory is not None else np.zeros(grid, dtype=bool)
    first_change = np.full(grid, np.inf)
    last_change = np.full(grid, -np.inf)
    changes = np.zeros(grid, dtype=np.int32)
    periodic = np.zeros(grid, dtype=bool)
    waited = False
    held: dict[str, None] = {}  # what the activity source reported, in order
    last_activity: float | None = None
    while True:
        now = time.perf_counter() - start
        if activity is not None:
            report = activity()
            busy = report.busy if now < window.reaction_bound_s else ()
            if busy or report.events:
                last_activity = now
                held.update(dict.fromkeys(busy + report.events))
        periodic = (changes >= 3) & (last_change - first_change >= window.ambient_after_s)
        masked = prior | periodic
        if masked.mean() > window.max_ambient_fraction:
            masked = np.zeros(grid, dtype=bool)
        relevant = ~masked & (changes > 0)
        last = float(last_change[relevant].max()) if relevant.any() else None
        if last_activity is not None:
            last = last_activity if last is None else max(last, last_activity)
        quiet = (now >= window.first_change_s if last is None
                 else now - last >= window.quiet_s)
        if now >= timeout_s:  # first: a window that ends with the time proves nothing
            reason, settled = "timeout", False
            break
        if quiet and is_quiet():
            reason, settled = "quiet", True
            break
        wait(min(window.poll_s, max(0.0, timeout_s - now)))
        current = grab()
        frames += 1
        t = time.perf_counter() - start
        # most frames equal the last one: one comparison, no per-cell work (the CPU a
        # frame costs matters on a starved machine)
        same = current.shape == frame.shape and np.array_equal(current, frame)
        changed = np.zeros(grid, dtype=bool) if same else changed_cells(frame, current)
        if changed.shape != grid:  # the screen changed size: start over on the new grid
            grid = changed.shape
            prior = memory.mask(grid) if memory is not None else np.zeros(grid, dtype=bool)
            first_change = np.full(grid, np.inf)
            last_change = np.full(grid, t)
            changes = np.zeros(grid, dtype=np.int32)
        elif changed.any():
            waited = True
            np.minimum(first_change, np.where(changed, t, np.inf), out=first_change)
            last_change[changed] = t
            changes += changed
        if not same:
            png = None
        frame = current
    if memory is not None:
        memory.age()
        if masked.any():
            memory.learn(periodic)
        memory.last_frame = frame
    return SettleResult(
        png if png is not None else encode(frame), time.perf_counter() - start, frames,
        settled, reason, (*held, *(("screen",) if waited else ())),
        mask_boxes(masked, frame.shape),
    )


def decode_png(png: bytes) -> np.ndarray:
    """A PNG as an array of its pixels (for comparing frames)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)


def settle_screenshots(
    capture_png: Callable[[], bytes],
    window: QuietWindow,
    timeout_s: float,
    memory: AmbientMemory | None = None,
    first_png: bytes | None = None,
    activity: Callable[[], Activity] | None = None,
) -> SettleResult:
    """`settle_on_pixels` for a source that only gives PNG screenshots (adb screencap, a
    VM's screenshot endpoint): each is decoded to compare, the returned PNG is the
    device's own bytes (never re-encoded). For callers that settle a screen between
    steps, e.g. after a reset or before an evaluation; `first_png` is a screenshot the
    caller already has (it counts as the first frame); `activity` as in `settle_on_pixels`.

        settle_screenshots(vm.screenshot, QuietWindow(quiet_s=0.5, first_change_s=1.0), 10.0)
    """
    pngs: dict[int, bytes] = {}

    def grab() -> np.ndarray:
        png = capture_png()
        frame = decode_png(png)
        pngs.clear()
        pngs[id(frame)] = png
        return frame

    def encode(frame: np.ndarray) -> bytes:
        return pngs[id(frame)]

    first = (decode_png(first_png), first_png) if first_png is not None else None
    return settle_on_pixels(grab, encode, window, timeout_s, memory, first=first,
                            activity=activity)


class Watchdog:
    """Calls `on_expire` from a timer thread if the guarded block runs past `timeout_s`.

    Used around blocking driver calls: `on_expire` kills the driven process, which makes
    the blocked call fail at once instead of hanging forever. `fired` tells afterwards
    whether that happened.
    """

    def __init__(self, timeout_s: float, on_expire: Callable[[], None]) -> None:
        self.timeout_s = timeout_s
        self._on_expire = on_expire
        self._timer: threading.Timer | None = None
        self.fired = False

    def _fire(self) -> None:
        self.fired = True
        logger.warning("watchdog: no answer within %.1f s, killing the process", self.timeout_s)
        self._on_expire()

    def __enter__(self) -> Watchdog:
        self.fired = False
        self._timer = threading.Timer(self.timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
