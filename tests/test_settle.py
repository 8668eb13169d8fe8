"""Settling on real screens: real Chromium on loopback pages (benchmarks/perf/settle.py's
corpus, 1280x720) and the pixel rules it falls back on.

Plumbing tests of our own rules (no published reference defines settling): a delayed
reaction is captured, ambient motion does not hold a step to the timeout, a reaction on
an animated page is still captured, and the timeout bounds a page that never stops
changing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from actions.contracts import Task
from actions.models import Click
from benchmarks.perf.settle import BUTTON_XY, REACTIONS, VIEWPORT, page_path, serve_corpus
from environments._settle import (
    AmbientMemory,
    QuietWindow,
    changed_cells,
    mask_boxes,
    settle_on_pixels,
)
from environments.web import WebConfig, WebEnvironment

DONE_RGB = (0, 90, 200)  # the corpus' "reaction finished" colour of the #out panel
OUT_XY = (100, 380)  # a pixel of the #out panel, away from its text


def test_changed_cells_and_mask_boxes_cover_exactly_the_changed_cells() -> None:
    a = np.zeros((40, 70, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0] = 1        # cell (0, 0)
    b[20, 17] = 9      # cell (1, 1)
    b[39, 69] = 5      # the last, partial cell (2, 4)
    cells = changed_cells(a, b)
    assert cells.shape == (3, 5)
    assert sorted(zip(*np.nonzero(cells), strict=True)) == [(0, 0), (1, 1), (2, 4)]
    mask = np.zeros((3, 5), dtype=bool)
    mask[0:2, 1:3] = True
    mask[2, 4] = True
    assert mask_boxes(mask, a.shape) == ((16, 0, 48, 32), (64, 32, 70, 40))


def _frames(changing: slice | None) -> Iterator[np.ndarray]:
    """Frames whose `changing` columns change every frame (None: none change)."""
    n = 0
    while True:
        frame = np.zeros((32, 64), dtype=np.uint8)
        if changing is not None:
            frame[:, changing] = n % 200
        n += 1
        yield frame


def _fast_window(**changes: float) -> QuietWindow:
    return QuietWindow(**{"quiet_s": 0.05, "first_change_s": 0.08, "poll_s": 0.005,
                          "ambient_after_s": 0.1, **changes})


def test_pixels_settle_beside_ambient_motion_and_report_the_mask() -> None:
    frames = _frames(slice(0, 16))  # a quarter of the screen ticks forever
    result = settle_on_pixels(lambda: next(frames), lambda f: b"png", _fast_window(), 5.0)
    assert result.settled and result.reason == "quiet"
    assert result.masked == ((0, 0, 16, 32),)


def test_learned_ambient_cells_are_masked_from_the_start() -> None:
    memory = AmbientMemory()
    memory.learn(np.array([[True, False, False, False], [True, False, False, False]]))
    frames = _frames(slice(0, 16))
    result = settle_on_pixels(lambda: next(frames), lambda f: b"png",
                              _fast_window(ambient_after_s=60.0), 5.0, memory=memory)
    assert result.settled and result.masked == ((0, 0, 16, 32),)


def test_pixels_time_out_on_a_screen_changing_everywhere() -> None:
    frames = _frames(slice(0, 64))
    result = settle_on_pixels(lambda: next(frames), lambda f: b"png", _fast_window(), 0.5)
    assert not result.settled and result.reason == "timeout"
    assert result.masked == ()  # a mask over most of the screen is not trusted


# ---------------------------------------------------------------- real Chromium


@pytest.fixture(scope="module")
def corpus() -> Iterator[str]:
    with serve_corpus() as base:
        yield base


@pytest.fixture(scope="module")
def env() -> Iterator[WebEnvironment]:
    environment = WebEnvironment(WebConfig(viewport=VIEWPORT))
    yield environment
    environment.close()


def _click(env: WebEnvironment, base: str, reaction: str, ambient: str):
    page = base + page_path({r.name: r for r in REACTIONS}[reaction], ambient)
    env.reset(Task(suite="settle", task_id="t", instruction="click", config={"url": page}))
    return env.step(Click(x=BUTTON_XY[0], y=BUTTON_XY[1]))


def _done(obs) -> bool:
    return obs.image().convert("RGB").getpixel(OUT_XY) == DONE_RGB


@pytest.mark.parametrize("reaction", ["timeout 600 ms", "fetch 500 ms", "spa route"])
def test_a_delayed_reaction_is_captured(env, corpus, reaction) -> None:
    obs = _click(env, corpus, reaction, "none")
    assert _done(obs), f"stale screenshot: {obs.settle}"
    assert obs.settle.settled and obs.settle.reason == "page_idle"
    assert obs.settle.frames == 1  # the page said when: one capture
    assert obs.info["settle_reason"] == "page_idle"


def test_an_ambient_ticker_does_not_hold_a_step(env, corpus) -> None:
    """A ticker already ticking before the action is ambient at once. (One that has not
    ticked yet when the action is marked is learned as ambient only after it has kept
    changing for AMBIENT_SPAN_MS, so the precondition is waited for, by state: the ticker
    has shown three values.)"""
    page = corpus + page_path({r.name: r for r in REACTIONS}["static"], "js ticker")
    env.reset(Task(suite="settle", task_id="t", instruction="click", config={"url": page}))
    env.page.wait_for_function("""() => {
        const seen = window.__tickerSeen = window.__tickerSeen || new Set();
        seen.add(document.getElementById('amb').textContent);
        return seen.size >= 4; }""", polling=10)
    obs = env.step(Click(x=BUTTON_XY[0], y=BUTTON_XY[1]))
    assert obs.settle.settled and obs.settle.reason == "page_idle", obs.settle
    assert obs.settle.frames == 1
    assert obs.settle.waited_for == []
    assert obs.settle.ambient == ["1 DOM node(s) changing on their own"]


@pytest.mark.parametrize(("reaction", "ambient"), [("timeout 300 ms", "css spinner"),
                                                   ("fetch 500 ms", "js ticker"),
                                                   ("css transition", "animated gif")])
def test_a_reaction_on_an_animated_page_is_captured(env, corpus, reaction, ambient) -> None:
    obs = _click(env, corpus, reaction, ambient)
    assert _done(obs), f"stale screenshot: {obs.settle}"
    assert obs.settle.settled and obs.settle.reason == "page_idle"
    if reaction == "css transition":
        assert "animations" in obs.settle.waited_for
        assert obs.image().convert("RGB").getpixel((1100, 380)) == DONE_RGB  # full width


def test_the_timeout_bounds_a_page_changing_everywhere_forever(corpus) -> None:
    """A click that starts a request which never ends and a full-screen repaint every
    frame: the page script reports the request pending for the whole settle_timeout_s
    (reaction_bound_s is larger), so the timeout ends the wait, whatever the renderer
    managed to paint meanwhile. (The pixel rule's own bound: the synthetic-frame test
    above and tests/test_settle_desktop.py.)"""
    config = WebConfig(viewport=VIEWPORT, settle_timeout_s=1.0)
    with WebEnvironment(config) as short:
        short.reset(Task(suite="settle", task_id="t", instruction="", config={
            "url": f"{corpus}/page?r=static&a=none"}))
        short.page.evaluate("""() => { document.getElementById('go').onclick = () => {
            fetch('/slow?ms=30000');
            let n = 0; const paint = () => {
              document.body.style.background = `rgb(${n % 256}, ${(n * 7) % 256}, 90)`;
              n += 1; requestAnimationFrame(paint); }; paint(); }; }""")
        obs = short.step(Click(x=BUTTON_XY[0], y=BUTTON_XY[1]))
    assert not obs.settle.settled and obs.settle.reason == "timeout"
    assert "requests" in obs.settle.waited_for
    assert obs.settle_s < config.settle_timeout_s + 1.0
