"""Settling on a real Xvfb desktop (pixels only: no page script to ask).

Plumbing tests of our own rules: a reaction that starts late (within the first-change
window) beside a ticking clock is captured, the clock does not hold a step to the
timeout and is reported as masked, and the timeout bounds a window that changes
everywhere forever.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_desktop import desktop, plain_task  # noqa: F401

from actions.models import Click
from environments.desktop import DesktopEnv

APP = Path(__file__).parents[1] / "benchmarks" / "perf" / "settle_probe_app.py"
BLUE = (0, 0, 255)


@pytest.fixture()
def probe_app(desktop: DesktopEnv, request) -> Iterator[tuple[int, int]]:  # noqa: F811
    """Start the probe app with (delay_ms, tick_ms, mode); yield a point of its panel."""
    delay_ms, tick_ms, mode = request.param
    desktop.reset(plain_task())
    desktop.spawn([sys.executable, str(APP), str(delay_ms), str(tick_ms), mode])
    window = desktop.wait_for_window("^cua-settle-probe$")
    x, y, width, height = desktop.window_geometry(window)
    yield x + width // 2, y + height * 2 // 3
    desktop.kill_processes()


@pytest.mark.parametrize("probe_app", [(100, 100, "clock")], indirect=True)
def test_a_late_reaction_beside_a_clock_is_captured(desktop, probe_app) -> None:  # noqa: F811
    """The reaction starts 0.1 s after the click; the windows are wide (1.5 s) so that a
    starved machine (2 shared cores) cannot turn a late frame into a quiet screen."""
    config = desktop.config
    desktop.config = config.model_copy(update={"settle_quiet_s": 0.8,
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
                                               "settle_first_change_s": 1.0})
    try:
        obs = desktop.step(Click(x=probe_app[0], y=probe_app[1]))
    finally:
        desktop.config = config
    assert not obs.settle.settled and obs.settle.reason == "timeout"
    assert obs.settle.frames > 2
