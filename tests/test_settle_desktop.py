"""Settling on a real Xvfb desktop (no page script to ask: pixels and the system's signals).

Plumbing tests of our own rules: a reaction that starts late (within the first-change
window) beside a ticking clock is captured, the clock does not hold a step to the
timeout and is reported as masked, and the timeout bounds a window that changes
everywhere forever. The signals (environments/_desktop_activity.py), each with a real
program the click starts: a late window (a launched program that sleeps before mapping
it) and a CPU-bound launch (one that computes first) are waited for, though the screen
shows nothing for a second, as are an app computing before its dialog and a dialog after
a network call; a dead click still returns in a fraction of that.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest_desktop import desktop, plain_task, wait_until  # noqa: F401

from actions.models import Click
from environments.desktop import DesktopEnv

APP = Path(__file__).parents[1] / "benchmarks" / "perf" / "settle_probe_app.py"
BLUE = (0, 0, 255)
LAUNCHED = (920, 220)  # inside the launched window (settle_probe_app.LAUNCHED_GEOMETRY)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    """A loopback HTTP server whose GET /slow?ms=N answers N ms later (its latency)."""
    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            time.sleep(int(query["ms"][0]) / 1000)  # the server's latency, not a test sync
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slow"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def probe_app(desktop: DesktopEnv, request) -> Iterator[tuple[int, int]]:  # noqa: F811
    """Start the probe app with (delay_ms, tick_ms, mode); yield a point of its panel."""
    delay_ms, tick_ms, mode = request.param
    url = request.getfixturevalue("slow_server") if mode == "http" else ""
    desktop.reset(plain_task())
    desktop.spawn([sys.executable, str(APP), str(delay_ms), str(tick_ms), mode, url])
    window = desktop.wait_for_window("^cua-settle-probe$")
    x, y, width, height = desktop.window_geometry(window)
    yield x + width // 2, y + height * 2 // 3
    desktop.kill_processes()


@pytest.mark.parametrize("probe_app", [(100, 100, "clock")], indirect=True)
def test_a_late_reaction_beside_a_clock_is_captured(desktop, probe_app) -> None:  # noqa: F811
    """The reaction starts 0.1 s after the click; the windows are wide (1.5 s) so that a
    starved machine (2 shared cores) cannot turn a late frame into a quiet screen."""
    config = desktop.config
    desktop.config = config.model_copy(update={"settle_quiet_s": 0.8, "settle_idle_s": 1.5,
                                               "settle_first_change_s": 1.5})
    try:
        obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    finally:
        desktop.config = config
    assert obs.image().convert("RGB").getpixel(probe_app) == BLUE, obs.settle
    assert obs.settle.settled and obs.settle.reason == "quiet"


@pytest.mark.parametrize("probe_app", [(600_000, 100, "clock")], indirect=True)
def test_a_ticking_clock_does_not_hold_steps(desktop, probe_app) -> None:  # noqa: F811
    x, y = probe_app
    for _ in range(3):
        obs = desktop.step(Click(x=x, y=y))
        assert obs.settle.settled and obs.settle.reason == "quiet", obs.settle
    assert obs.settle.masked, "the clock was not reported as masked"
    x0, y0, x1, y1 = obs.settle.masked[0]
    assert y1 < y and obs.info["settle_masked"] == obs.settle.masked  # the clock, not the panel


@pytest.mark.parametrize("probe_app", [(0, 0, "everywhere")], indirect=True)
def test_the_timeout_bounds_a_window_changing_everywhere(desktop, probe_app) -> None:  # noqa: F811
    config = desktop.config
    # windows of 1 s: only an app starved for over a second could look quiet
    desktop.config = config.model_copy(update={"settle_timeout_s": 2.5, "settle_quiet_s": 1.0,
                                               "settle_first_change_s": 1.0,
                                               "settle_idle_s": 1.0})
    try:
        obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    finally:
        desktop.config = config
    assert not obs.settle.settled and obs.settle.reason == "timeout"
    assert obs.settle.frames > 2


# The launch is waited for only while it is in progress, up to the reaction bound (2 s by
# default); under a starved machine a Python program's start alone can take a second, so
# these tests widen the bound: they test the signal, not the default bound.
WIDE_BOUND = {"reaction_bound_s": 20.0, "settle_timeout_s": 30.0}


@pytest.mark.parametrize("probe_app", [(1000, 0, "launch-sleep"), (1000, 0, "launch-compute")],
                         indirect=True, ids=["late-window", "cpu-bound-launch"])
def test_a_launched_program_is_waited_for_until_its_window(desktop, probe_app) -> None:  # noqa: F811
    """The click starts a program that sleeps (or computes) for 1 s before its first
    window; the screen shows nothing meanwhile, far past the idle window (0.15 s) and
    the old first-change window (0.4 s). The step returns with the window on screen."""
    config = desktop.config
    desktop.config = config.model_copy(update=WIDE_BOUND)
    try:
        obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    finally:
        desktop.config = config
    assert obs.image().convert("RGB").getpixel(LAUNCHED) == BLUE, obs.settle
    assert obs.settle.settled and "launching" in obs.settle.waited_for, obs.settle
    assert "window" in obs.settle.waited_for, obs.settle


@pytest.mark.parametrize("probe_app", [(1000, 0, "compute")], indirect=True)
def test_an_app_computing_before_its_dialog_is_waited_for(desktop, probe_app) -> None:  # noqa: F811
    """The click makes the app itself compute for 1 s, then open a window: its CPU use
    holds the step (no new process, no screen change meanwhile)."""
    config = desktop.config
    desktop.config = config.model_copy(update=WIDE_BOUND)
    try:
        obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    finally:
        desktop.config = config
    assert obs.image().convert("RGB").getpixel(LAUNCHED) == BLUE, obs.settle
    assert "cpu" in obs.settle.waited_for, obs.settle


@pytest.mark.parametrize("probe_app", [(1000, 0, "http")], indirect=True)
def test_a_dialog_after_a_network_call_is_waited_for(desktop, probe_app) -> None:  # noqa: F811
    """The click makes the app GET a local URL answered 1 s later, then open a window:
    no CPU, no process, no screen change meanwhile; its connection in flight holds the
    step."""
    config = desktop.config
    desktop.config = config.model_copy(update=WIDE_BOUND)
    try:
        obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    finally:
        desktop.config = config
    assert obs.image().convert("RGB").getpixel(LAUNCHED) == BLUE, obs.settle
    assert "network" in obs.settle.waited_for, obs.settle


@pytest.mark.parametrize("probe_app", [(600_000, 0, "clock")], indirect=True)
def test_a_dead_click_returns_after_the_idle_window(desktop, probe_app) -> None:  # noqa: F811
    """Nothing reacts: no process, window, CPU or pixel change holds the step, which
    ends on the idle window (well under the old 0.4 s first-change window on an idle
    machine; bounded loosely here, the machine is shared)."""
    obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    assert obs.settle.settled and obs.settle.reason == "quiet", obs.settle
    assert obs.settle.waited_for == [], obs.settle


@pytest.mark.parametrize("probe_app", [(600_000, 100, "clock")], indirect=True)
def test_damage_reports_repaints_so_quiet_frames_are_not_grabbed(desktop, probe_app) -> None:  # noqa: F811
    """Xvfb offers DAMAGE: a drawing app (the clock) is reported as damage; once it is
    gone and the screen is still, no damage is reported (the settle reuses its frame)."""
    activity = desktop._activity
    wait_until(activity.screen_damaged, what="a damage report while the clock ticks")
    desktop.kill_processes()
    wait_until(lambda: not activity.screen_damaged() and not activity.screen_damaged(),
               what="no damage on a still screen")
