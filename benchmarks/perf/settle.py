"""Settling on real screens: step time and stale-screen rate per waiting strategy.

A corpus of loopback pages at 1280x720, each with a button whose click starts a known
reaction — none (static), an immediate change, a change after `setTimeout` (50-1500 ms),
after a `fetch` with server latency (100-1500 ms), a CSS transition, an SPA route change,
a lazy-loaded image — each alone and again beside ambient motion (a JS ticker, a CSS
spinner, an animated GIF, a blinking caret) in a known box. For every page and strategy
the click is stepped once; the step's wall time is recorded and its screenshot compared
with the page's final screen (taken after the reaction surely ended) outside the ambient
box: a difference is a stale screen. Strategies, measured side by side in one run:

- ours: `WebEnvironment` defaults (page script + ambient-aware screen settling);
- two frames (before): the previous rule, two identical consecutive Playwright PNGs;
- fixed sleep 0.5 / 1 / 2 s, then one capture (what many harnesses do);
- single capture: no wait at all — the floor of any strategy's step time.

    python -m benchmarks.perf.settle --repeats 1
    python -m benchmarks.perf.settle --quick          # a handful of pages, for a smoke run
    python -m benchmarks.perf.settle --corpus desktop # Xvfb: a Tk app with a clock, xterm
    python -m benchmarks.perf.settle --corpus android # the virtual phone's probe app

The desktop corpus (a real Xvfb, `DesktopEnv`): benchmarks/perf/settle_probe_app.py,
whose click, 0-1000 ms later, paints a panel blue from a Tk timer (with and without a
clock ticking every 100 ms: a pure timer in an idle app, the documented limit); starts a
program that sleeps or computes 0.5 / 1 / 1.5 s before mapping its first window;
computes 1 s, then opens a window; makes a local HTTP call answered after 1 s, then opens
a dialog; or does nothing (static); and an xterm with a blinking cursor running
`sleep 0.3` / `sleep 1` before printing a red bar. The stale check is the reaction's own
mark (the blue panel or window, the red bar) on the returned screenshot.

The android corpus (the virtual phone behind a private adb server,
benchmarks/android/virtual_device): its probe app (apps/settleprobe.html), whose tap
paints a panel blue 0-1000 ms later from a JS timer (with and without a band at the top
changing colour every 100 ms, a status-bar clock's stand-in), starts an activity whose
first frame is drawn 0.5 / 1 / 1.5 s later (an activity transition), or does nothing;
stale = the panel not blue on the returned `screencap`. Steps of one configuration share
an episode (the ambient band is learned once, as in a real episode).

On both, "ours" (system signals + pixels) runs beside "pixels only (before)" (the same
environment with `settle_signals=False`, the rule it replaced).

The machine is shared: read ratios between rows of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from actions.contracts import Task
from actions.models import Click
from actions.observation import Size
from environments._settle import SettleResult, decode_png, wait_until_settled
from environments.web import WebConfig, WebEnvironment

VIEWPORT = Size(width=1280, height=720)
BUTTON_XY = (140, 70)
AMBIENT_BOX = (992, 32, 1216, 148)  # x0, y0, x1, y1: where ambient motion lives
REFERENCE_EXTRA_S = 1.0  # the final screen is taken this long after the reaction's end


@dataclass(frozen=True)
class Reaction:
    """What a click starts: `js` runs in the click handler; `lasts_s` bounds its end."""

    name: str
    js: str
    lasts_s: float
    kind: str  # static, immediate, timer, request, transition, route, image


def _reactions() -> list[Reaction]:
    reactions = [Reaction("static", "", 0.0, "static"),
                 Reaction("immediate", "show();", 0.0, "immediate")]
    for ms in (50, 150, 300, 600, 1000, 1500):
        reactions.append(Reaction(f"timeout {ms} ms", f"setTimeout(show, {ms});", ms / 1000,
                                  "timer"))
    for ms in (100, 500, 1500):
        reactions.append(Reaction(
            f"fetch {ms} ms", f"fetch('/slow?ms={ms}').then(r => r.text()).then(show);",
            ms / 1000, "request"))
    reactions += [
        Reaction("css transition", "out.style.transition = 'width .5s linear, "
                 "background-color .5s linear'; out.classList.add('wide'); show();", 0.5,
                 "transition"),
        Reaction("spa route", "history.pushState({}, '', '/route/2'); out.textContent = "
                 "'loading'; fetch('/slow?ms=300').then(r => r.text()).then(() => "
                 "requestAnimationFrame(() => show('route 2')));", 0.3, "route"),
        Reaction("lazy image", "out.innerHTML = '<img loading=\"lazy\" src=\"/img?ms=600\" "
                 "width=\"400\" height=\"150\">';", 0.6, "image"),
    ]
    return reactions


REACTIONS = _reactions()

AMBIENT: dict[str, str] = {
    "none": "",
    "js ticker": "<div id='amb'></div><script>const amb = document.getElementById('amb');"
                 "setInterval(() => { amb.textContent = performance.now().toFixed(0); }, 50);"
                 "</script>",
    "css spinner": "<div id='amb'><div class='spin'></div></div>",
    "animated gif": "<img id='amb' src='/spinner.gif' width='96' height='96'>",
    "blinking caret": "<input id='amb' autofocus><script>document.getElementById('amb')"
                      ".focus();</script>",
}

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; font: 22px sans-serif; background: #fff; }}
#go {{ position: absolute; left: 40px; top: 40px; width: 200px; height: 60px; }}
#out {{ position: absolute; left: 40px; top: 200px; width: 600px; height: 200px;
  background: rgb(230, 230, 230); }}
#out.done {{ background: rgb(0, 90, 200); color: #fff; }}
#out.wide {{ width: 1100px; }}
#amb {{ position: absolute; left: 1000px; top: 40px; width: 200px; height: 100px;
  font: 40px monospace; }}
.spin {{ width: 60px; height: 60px; border: 8px solid #ccc; border-top-color: #333;
  border-radius: 50%; animation: spin 1s linear infinite; }}
@keyframes spin {{ to {{ transform: rotate(360deg); }} }}
</style></head><body>
<button id="go">go</button><div id="out">waiting</div>
{ambient}
<script>
const out = document.getElementById('out');
function show(text) {{ out.textContent = typeof text === 'string' ? text : 'done';
  out.classList.add('done'); }}
const go = document.getElementById('go');
go.addEventListener('mousedown', (e) => e.preventDefault());  // the caret keeps its focus
go.onclick = () => {{ {reaction} }};
</script></body></html>"""


def _spinner_gif() -> bytes:
    frames = []
    for i in range(8):
        image = Image.new("P", (96, 96), 0)
        image.putpalette([255, 255, 255, 40, 40, 40] + [0] * 762)
        x = 12 + 9 * i
        image.paste(1, (x, 36, x + 16, 60))
        frames.append(image)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100,
                   loop=0)
    return buffer.getvalue()


def _lazy_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 150), (200, 60, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def page_path(reaction: Reaction, ambient: str) -> str:
    return "/page?" + urllib.parse.urlencode({"r": reaction.name, "a": ambient})


class _Handler(BaseHTTPRequestHandler):
    gif = _spinner_gif()
    png = _lazy_png()

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        if parts.path in ("/slow", "/img"):
            time.sleep(int(query.get("ms", ["300"])[0]) / 1000)  # the server's latency
        if parts.path == "/page":
            reaction = {r.name: r for r in REACTIONS}[query["r"][0]]
            body = PAGE.format(ambient=AMBIENT[query["a"][0]], reaction=reaction.js).encode()
            content_type = "text/html; charset=utf-8"
        elif parts.path == "/slow":
            body, content_type = b"done", "text/plain"
        elif parts.path == "/img":
            body, content_type = self.png, "image/png"
        elif parts.path == "/spinner.gif":
            body, content_type = self.gif, "image/gif"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # (the page may have been left before the answer)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serve_corpus() -> Iterator[str]:
    """The corpus on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def differs_outside(a: bytes, b: bytes, box: tuple[int, int, int, int] | None,
                    tolerance: int = 8) -> bool:
    """Whether two PNG screenshots differ (beyond `tolerance` per channel) outside `box`."""
    x, y = decode_png(a).astype(np.int16), decode_png(b).astype(np.int16)
    if x.shape != y.shape:
        return True
    different = (np.abs(x - y) > tolerance).any(axis=2)
    if box is not None:
        x0, y0, x1, y1 = box
        different[y0:y1, x0:x1] = False
    return bool(different.any())


class TwoFrameWeb(WebEnvironment):
    """The previous settling rule (two identical consecutive Playwright PNGs)."""

    def _settle(self) -> SettleResult:
        page = self.page
        return wait_until_settled(
            lambda: page.screenshot(type="png", animations="allow"), self._is_quiet,
            lambda: page.wait_for_timeout(10), self.config.settle_timeout_s)


STRATEGIES: dict[str, float | None] = {
    "ours": None, "two frames (before)": None, "fixed sleep 0.5 s": 0.5,
    "fixed sleep 1 s": 1.0, "fixed sleep 2 s": 2.0, "single capture (floor)": 0.0,
}


@dataclass
class Sample:
    strategy: str
    reaction: str
    kind: str
    ambient: str
    step_s: float
    stale: bool
    reason: str
    waited_for: list[str]
    reaction_s: float = 0.0  # when the reaction is complete at the earliest (device corpora)


def _task(url: str) -> Task:
    return Task(suite="perf_settle", task_id="page", instruction="click go", config={"url": url})


def _reference(env: WebEnvironment, url: str, reaction: Reaction) -> bytes:
    """The page's final screen: the click, then a sleep well past the reaction's end."""
    env.config = env.config.model_copy(update={"fixed_settle_s": reaction.lasts_s
                                               + REFERENCE_EXTRA_S})
    env.reset(_task(url))
    return env.step(Click(x=BUTTON_XY[0], y=BUTTON_XY[1])).screenshot_png


def run_web(base: str, ambients: list[str], reactions: list[Reaction],
            repeats: int) -> list[Sample]:
    """Every page x strategy, interleaved so that load drifts hit all strategies alike."""
    samples: list[Sample] = []
    config = WebConfig(viewport=VIEWPORT)
    with WebEnvironment(config) as env, TwoFrameWeb(config) as before:
        for _ in range(repeats):
            for ambient in ambients:
                box = None if ambient == "none" else AMBIENT_BOX
                for reaction in reactions:
                    url = base + page_path(reaction, ambient)
                    final = _reference(env, url, reaction)
                    for strategy, sleep_s in STRATEGIES.items():
                        target = before if strategy == "two frames (before)" else env
                        target.config = config.model_copy(update={"fixed_settle_s": sleep_s})
                        target.reset(_task(url))
                        started = time.perf_counter()
                        obs = target.step(Click(x=BUTTON_XY[0], y=BUTTON_XY[1]))
                        step_s = time.perf_counter() - started
                        samples.append(Sample(
                            strategy, reaction.name, reaction.kind, ambient, step_s,
                            differs_outside(obs.screenshot_png, final, box),
                            obs.settle.reason if obs.settle else "?",
                            obs.settle.waited_for if obs.settle else []))
    return samples


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90)) if values else float("nan")


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} / {_p90(values) * 1000:.0f}"


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)}" if flags else "-"


def print_web_table(samples: list[Sample], console: Console) -> dict[str, dict[str, float]]:
    """The summary table; returns the medians for the ratio lines."""
    table = Table(title="web: step time median / p90 (ms), stale screens (returned != final "
                  "outside the ambient box)")
    for column in ("strategy", "static", "static + ambient", "reactions",
                   "reactions + ambient", "stale", "stale + ambient"):
        table.add_column(column, justify="right" if column != "strategy" else "left")
    medians: dict[str, dict[str, float]] = {}
    for strategy in STRATEGIES:
        mine = [s for s in samples if s.strategy == strategy]
        groups = {
            "static": [s for s in mine if s.kind == "static" and s.ambient == "none"],
            "static_ambient": [s for s in mine if s.kind == "static" and s.ambient != "none"],
            "reactions": [s for s in mine if s.kind != "static" and s.ambient == "none"],
            "reactions_ambient": [s for s in mine if s.kind != "static" and s.ambient != "none"],
        }
        medians[strategy] = {k: statistics.median([s.step_s for s in v]) if v else float("nan")
                             for k, v in groups.items()}
        table.add_row(strategy, *(_ms([s.step_s for s in v]) for v in groups.values()),
                      _rate([s.stale for s in groups["reactions"]]),
                      _rate([s.stale for s in groups["reactions_ambient"]]))
    console.print(table)
    _print_stale_per_reaction(samples, console, "web", " (all ambient variants)")
    return medians


# ---------------------------------------------------------------- desktop corpus

# On the desktop and the phone: ours (system signals + pixels) beside the pixels-only rule
# it replaced, the older two-frame rule, fixed sleeps and the single capture; and a
# reference that is no strategy: single captures until the reaction's mark shows, whose
# time is when the reaction became visible under this run's load (a launched program's
# start alone can take a second on a starved machine), the yardstick of "reaction +
# 300 ms".
REFERENCE = "reaction visible (reference)"
DEVICE_STRATEGIES: dict[str, float | None] = {
    "ours": None, "pixels only (before)": None, **{k: v for k, v in STRATEGIES.items()
                                                   if k != "ours"},
    REFERENCE: None}
REFERENCE_LIMIT_S = 6.0  # the reference polls this long past the reaction's nominal time
DESKTOP_DELAYS_MS = (0, 150, 300, 600, 1000)
LAUNCH_DELAYS_MS = (500, 1000, 1500)
PANEL_BLUE, PANEL_GREY = (0, 0, 255), (224, 224, 224)
LAUNCHED_POINT = (920, 220)  # inside settle_probe_app.LAUNCHED_GEOMETRY


@dataclass(frozen=True)
class DesktopCase:
    """One probe configuration: `mode`/`delay_ms`/`tick_ms` of settle_probe_app.py;
    `kind` groups the table's columns; `lasts_s` is when the reaction is complete at the
    earliest (0 for none); `mark` where its blue shows (the panel, or the new window)."""

    name: str
    mode: str
    delay_ms: int
    tick_ms: int
    kind: str  # static, timer, launch, compute, network
    lasts_s: float
    mark: str  # "panel" or "window"


def desktop_cases() -> list[DesktopCase]:
    cases = [DesktopCase("static (dead click)", "clock", 600_000, 0, "static", 0.0, "panel"),
             DesktopCase("static + clock", "clock", 600_000, 100, "static", 0.0, "panel")]
    for tick_ms in (0, 100):
        for ms in DESKTOP_DELAYS_MS:
            cases.append(DesktopCase(f"Tk timer {ms} ms{' + clock' if tick_ms else ''}",
                                     "clock", ms, tick_ms, "timer", ms / 1000, "panel"))
    for how in ("sleep", "compute"):
        for ms in LAUNCH_DELAYS_MS:
            cases.append(DesktopCase(f"launch: {how} {ms} ms, then window", f"launch-{how}",
                                     ms, 0, "launch", ms / 1000, "window"))
    cases += [DesktopCase("compute 1000 ms, then window", "compute", 1000, 0, "compute", 1.0,
                          "window"),
              DesktopCase("HTTP 1000 ms, then dialog", "http", 1000, 0, "network", 1.0,
                          "window")]
    return cases


def _colour(frame: np.ndarray, point: tuple[int, int]) -> tuple[int, ...]:
    """The RGB colour of one pixel of a decoded PNG."""
    return tuple(int(v) for v in frame[point[1], point[0], :3])


def _desktop_strategy(env, strategy: str) -> SettleResult:
    """Wait as `strategy` on the desktop (after the action), then capture."""
    from environments.desktop import _bgrx_png

    start = time.perf_counter()
    if strategy == "two frames (before)":  # the older rule: 3 identical frames, 40 ms apart
        frame, same = env._grab_array(), 1
        while same < 3 and time.perf_counter() - start < env.config.settle_timeout_s:
            time.sleep(0.04)
            current = env._grab_array()
            same = same + 1 if np.array_equal(current, frame) else 1
            frame = current
        return SettleResult(_bgrx_png(frame), time.perf_counter() - start, 0, same >= 3)
    time.sleep(DEVICE_STRATEGIES[strategy] or 0.0)
    return SettleResult(_bgrx_png(env._grab_array()), time.perf_counter() - start, 1, True)


def _env_step(env, action, signals: bool) -> tuple[float, bytes, str]:
    """`env.step(action)` with `settle_signals` set as asked (ours, or the pixels-only
    rule it replaced); (seconds, PNG, what held the step)."""
    started = time.perf_counter()
    config = env.config
    env.config = config.model_copy(update={"settle_signals": signals})
    try:
        obs = env.step(action)
    finally:
        env.config = config
    return (time.perf_counter() - started, obs.screenshot_png,
            ",".join(obs.settle.waited_for) if obs.settle else "")


def _until_seen(capture, seen, limit_s: float) -> bytes:
    """Capture (PNG) until `seen(decoded frame)` or `limit_s` passes; the last capture."""
    deadline = time.perf_counter() + limit_s
    while True:
        png = capture()
        if seen(decode_png(png)) or time.perf_counter() > deadline:
            return png


def _desktop_step(env, action, strategy: str, seen, reaction_s: float
                  ) -> tuple[float, bytes, str]:
    """One step as DesktopEnv.step does it, with `strategy`'s wait; (seconds, PNG, what
    held ours). `seen(frame)` says whether the reaction's mark shows (the reference)."""
    started = time.perf_counter()
    if strategy in ("ours", "pixels only (before)"):
        return _env_step(env, action, signals=strategy == "ours")
    env._execute(action)
    if strategy == REFERENCE:
        png = _until_seen(lambda: _desktop_strategy(env, "single capture (floor)")
                          .screenshot_png, seen, reaction_s + REFERENCE_LIMIT_S)
        return time.perf_counter() - started, png, ""
    png = _desktop_strategy(env, strategy).screenshot_png
    return time.perf_counter() - started, png, ""


def _capture(env) -> np.ndarray:
    return decode_png(_desktop_strategy(env, "single capture (floor)").screenshot_png)


def _wait_screen(env, ready, timeout_s: float = 20.0) -> None:
    """Poll the screen until `ready(frame)` (the corpus app's start state)."""
    deadline = time.perf_counter() + timeout_s
    while not ready(_capture(env)):
        if time.perf_counter() > deadline:
            raise RuntimeError("the desktop corpus app did not reach its start state")
        time.sleep(0.05)


def run_desktop(repeats: int) -> list[Sample]:
    """The Tk probe app (timers, launches, computation, HTTP; clock on/off) and an xterm
    with a blinking cursor."""
    import sys
    from pathlib import Path

    from actions.models import Type
    from environments.desktop import DesktopConfig, DesktopEnv

    app = Path(__file__).with_name("settle_probe_app.py")
    task = Task(suite="perf_settle", task_id="desktop", config={})
    samples: list[Sample] = []
    with serve_corpus() as base, DesktopEnv(DesktopConfig(screen_size=VIEWPORT)) as env:
        for _ in range(repeats):
            for case in desktop_cases():
                env.reset(task)
                env.spawn([sys.executable, str(app), str(case.delay_ms), str(case.tick_ms),
                           case.mode, base + "/slow"])
                x, y, width, height = env.window_geometry(
                    env.wait_for_window("^cua-settle-probe$"))
                point = (x + width // 2, y + height * 2 // 3)  # the app's panel
                mark = point if case.mark == "panel" else LAUNCHED_POINT

                def start_state(frame: np.ndarray, point=point) -> bool:
                    return (_colour(frame, point) == PANEL_GREY
                            and _colour(frame, LAUNCHED_POINT) != PANEL_BLUE)

                for strategy in DEVICE_STRATEGIES:
                    env.step(Click(x=point[0], y=point[1], button="right"))
                    _wait_screen(env, start_state)
                    def mark_shown(frame: np.ndarray, mark=mark) -> bool:
                        return _colour(frame, mark) == PANEL_BLUE

                    if strategy == REFERENCE and case.kind == "static":
                        continue  # nothing will show
                    step_s, png, held = _desktop_step(env, Click(x=point[0], y=point[1]),
                                                      strategy, mark_shown, case.lasts_s)
                    shown = _colour(decode_png(png), mark)
                    samples.append(Sample(
                        strategy, case.name, case.kind, "clock" if case.tick_ms else "none",
                        step_s, case.kind != "static" and shown != PANEL_BLUE, held, [],
                        case.lasts_s))
            env.reset(task)
            env.spawn(["xterm", "-bc", "-geometry", "80x24+0+0", "-e", "bash --norc"])
            env.wait_for_window("xterm|bash")
            for sleep_s in (0.3, 1.0):
                for strategy in DEVICE_STRATEGIES:
                    env.step(Type(text="clear\n"))
                    _wait_screen(env, lambda frame: not _red_bar(frame))
                    command = f"sleep {sleep_s}; printf '\\033[41m%40s\\033[0m\\n' ''\n"
                    step_s, png, held = _desktop_step(env, Type(text=command), strategy,
                                                      _red_bar, sleep_s)
                    samples.append(Sample(strategy, f"xterm: sleep {sleep_s}; print", "process",
                                          "blinking cursor", step_s,
                                          not _red_bar(decode_png(png)), held, [], sleep_s))
    return samples


# ---------------------------------------------------------------- android corpus

ANDROID_PROBE = "com.vdev.settleprobe"
ANDROID_PANEL, ANDROID_GO = (360, 600), (360, 1160)  # screen px, see apps/settleprobe.html


def android_cases() -> list[DesktopCase]:
    """The probe app's configurations (DesktopCase.mode: "timer", "static", "launch")."""
    cases = [DesktopCase("static (dead tap)", "static", -1, 0, "static", 0.0, "panel"),
             DesktopCase("static + band", "static", -1, 100, "static", 0.0, "panel")]
    for tick_ms in (0, 100):
        for ms in DESKTOP_DELAYS_MS:
            cases.append(DesktopCase(f"JS timer {ms} ms{' + band' if tick_ms else ''}",
                                     "timer", ms, tick_ms, "timer", ms / 1000, "panel"))
    for ms in LAUNCH_DELAYS_MS:
        cases.append(DesktopCase(f"activity transition, first frame after {ms} ms", "launch",
                                 ms, 0, "transition", ms / 1000, "panel"))
    return cases


def _android_step(env, strategy: str, reaction_s: float) -> tuple[float, bytes, str]:
    """Tap the probe's button as AndroidEnvironment.step does, waiting as `strategy`."""
    started = time.perf_counter()
    action = Click(x=ANDROID_GO[0], y=ANDROID_GO[1])
    if strategy in ("ours", "pixels only (before)"):
        return _env_step(env, action, signals=strategy == "ours")
    env._execute(action)
    if strategy == REFERENCE:
        png = _until_seen(env.screenshot_png,
                          lambda frame: _colour(frame, ANDROID_PANEL) == PANEL_BLUE,
                          reaction_s + REFERENCE_LIMIT_S)
        return time.perf_counter() - started, png, ""
    if strategy == "two frames (before)":  # the older rule: two identical screencaps
        png = wait_until_settled(env.screenshot_png, lambda: True, lambda: None,
                                 env.config.settle_timeout_s).screenshot_png
    else:
        time.sleep(DEVICE_STRATEGIES[strategy] or 0.0)
        png = env.screenshot_png()
    return time.perf_counter() - started, png, ""


def run_android(repeats: int) -> list[Sample]:
    """The probe app on the virtual phone: timers x ambient band on/off, activity
    transitions, dead taps."""
    import os
    import socket
    import subprocess

    from benchmarks.android.tasks import content_insert
    from benchmarks.android.virtual_device import VirtualDeviceProcess
    from environments.android import AndroidEnvironment

    with socket.socket() as sock:  # a private adb server: never the developer's 5037
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run(["adb", "-P", str(port), "start-server"], check=True, capture_output=True,
                   timeout=30, env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})
    samples: list[Sample] = []
    try:
        with VirtualDeviceProcess() as device:
            env = AndroidEnvironment(serial=device.address, adb_port=port, a11y_tree=False)
            task = Task(suite="perf_settle", task_id="android",
                        config={"start_app": ANDROID_PROBE})
            for _ in range(repeats):
                for case in android_cases():
                    env.shell(f"pm clear {ANDROID_PROBE}")
                    content_insert(env, ANDROID_PROBE, "config",
                                   delay_ms=case.delay_ms if case.mode == "timer" else -1,
                                   tick_ms=case.tick_ms, everywhere=0,
                                   launch_ms=case.delay_ms if case.mode == "launch" else 0)
                    env.reset(task)
                    for strategy in DEVICE_STRATEGIES:
                        if strategy == REFERENCE and case.kind == "static":
                            continue  # nothing will show
                        # a launch starts the probe over: panel grey, no reaction pending
                        env.shell(f"am start -n {ANDROID_PROBE}/.MainActivity")
                        if _colour(decode_png(env.screenshot_png()),
                                   ANDROID_PANEL) != PANEL_GREY:
                            raise RuntimeError("the probe app did not start over")
                        step_s, png, held = _android_step(env, strategy, case.lasts_s)
                        shown = _colour(decode_png(png), ANDROID_PANEL)
                        samples.append(Sample(
                            strategy, case.name, case.kind,
                            "band" if case.tick_ms else "none", step_s,
                            case.kind != "static" and shown != PANEL_BLUE, held, [],
                            case.lasts_s))
            env.close()
    finally:
        subprocess.run(["adb", "-P", str(port), "kill-server"], capture_output=True, timeout=30)
    return samples


def _red_bar(frame: np.ndarray) -> bool:
    """Whether xterm's red background (205, 0, 0) shows anywhere."""
    rgb = frame[..., :3].astype(np.int16)
    return bool(((rgb[..., 0] > 150) & (rgb[..., 1] < 40) & (rgb[..., 2] < 40)).sum() > 200)


def print_device_table(samples: list[Sample], console: Console, corpus: str,
                       columns: dict[str, tuple[str, ...]]) -> None:
    """Step time median / p90 per column of reaction kinds, stale counts, and how ours
    compares with the targets (static <= 1.5x the floor, reactions <= reaction + 300 ms)."""
    table = Table(title=f"{corpus}: step time median / p90 (ms); stale = the reaction's "
                  "mark missing from the returned screenshot")
    table.add_column("strategy")
    for column in columns:
        table.add_column(column, justify="right")
    work = [c for c in columns if c not in ("static", "pure timers")]  # caused by work
    table.add_column("stale: timers", justify="right")
    table.add_column("stale: work (" + ", ".join(work) + ")", justify="right")
    for strategy in DEVICE_STRATEGIES:
        mine = [s for s in samples if s.strategy == strategy]
        cells = [_ms([s.step_s for s in mine if s.kind in kinds]) for kinds in columns.values()]
        worked = [s for s in mine if s.kind not in ("static", "timer")]
        table.add_row(strategy, *cells, _rate([s.stale for s in mine if s.kind == "timer"]),
                      _rate([s.stale for s in worked]))
    console.print(table)
    _print_stale_per_reaction(samples, console, corpus, strategies=DEVICE_STRATEGIES)
    ours = [s for s in samples if s.strategy == "ours"]
    floor = [s.step_s for s in samples if s.strategy == "single capture (floor)"
             and s.kind == "static"]
    static = [s.step_s for s in ours if s.kind == "static"]
    if floor and static:
        console.print(f"{corpus}: ours / single capture on static steps, median: "
                      f"{statistics.median(static) / statistics.median(floor):.2f}x "
                      f"(target <= 1.5x)")
    seen = {s.reaction: s.step_s for s in samples if s.strategy == REFERENCE and not s.stale}
    caught = [s for s in ours if s.kind not in ("static", "timer") and not s.stale
              and s.reaction in seen]
    if caught:
        over = {s.reaction: s.step_s - seen[s.reaction] for s in caught}
        worst = max(over, key=over.__getitem__)
        console.print(f"{corpus}: ours on work-caused reactions, step - when the reaction "
                      f"became visible (reference): median "
                      f"{statistics.median(over.values()) * 1000:.0f} ms, max "
                      f"{over[worst] * 1000:.0f} ms ({worst}) (target <= 300 ms)")
    held = statistics.multimode(s.reason for s in ours if s.kind not in ("static", "timer"))
    console.print(f"{corpus}: what held ours on work-caused reactions (mode): {held}")


DESKTOP_COLUMNS = {"static": ("static",), "pure timers": ("timer",), "launches": ("launch",),
                   "compute / HTTP": ("compute", "network"), "xterm": ("process",)}
ANDROID_COLUMNS = {"static": ("static",), "pure timers": ("timer",),
                   "transitions": ("transition",)}


def _print_stale_per_reaction(samples: list[Sample], console: Console, corpus: str,
                              note: str = "", strategies: dict | None = None) -> None:
    strategies = strategies or STRATEGIES
    kinds = Table(title=f"{corpus}: stale screens per reaction{note}")
    kinds.add_column("reaction")
    for strategy in strategies:
        kinds.add_column(strategy, justify="right")
    for reaction in dict.fromkeys(s.reaction for s in samples):
        kinds.add_row(reaction, *(_rate([s.stale for s in samples if s.reaction == reaction
                                         and s.strategy == strategy]) for strategy in strategies))
    console.print(kinds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="passes over the corpus")
    parser.add_argument("--quick", action="store_true",
                        help="a few pages only (static, timeout 300 ms, fetch 500 ms; "
                        "without ambient motion and with the JS ticker)")
    parser.add_argument("--json", help="also write every sample to this JSON file")
    parser.add_argument("--corpus", choices=("web", "desktop", "android"), default="web")
    args = parser.parse_args(argv)
    console = Console(width=150)
    if args.corpus in ("desktop", "android"):
        if args.corpus == "desktop":
            samples = run_desktop(args.repeats)
            print_device_table(samples, console, "desktop", DESKTOP_COLUMNS)
        else:
            samples = run_android(args.repeats)
            print_device_table(samples, console, "android", ANDROID_COLUMNS)
        console.print(f"load average during the run: {os.getloadavg()}")
        if args.json:
            with open(args.json, "w") as file:
                json.dump([dataclasses.asdict(s) for s in samples], file, indent=1)
        return
    reactions, ambients = REACTIONS, list(AMBIENT)
    if args.quick:
        reactions = [r for r in REACTIONS if r.name in ("static", "timeout 300 ms",
                                                        "fetch 500 ms")]
        ambients = ["none", "js ticker"]
    with serve_corpus() as base:
        samples = run_web(base, ambients, reactions, args.repeats)
    medians = print_web_table(samples, console)
    floor = medians["single capture (floor)"]
    ours = medians["ours"]
    console.print(
        f"ours / single capture, median step: static {ours['static'] / floor['static']:.2f}x, "
        f"static + ambient {ours['static_ambient'] / floor['static_ambient']:.2f}x, "
        f"reactions + ambient {ours['reactions_ambient'] / floor['reactions_ambient']:.2f}x")
    reasons = statistics.multimode(s.reason for s in samples if s.strategy == "ours")
    console.print(f"ours returned mostly because: {', '.join(reasons)}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump([dataclasses.asdict(s) for s in samples], file, indent=1)


if __name__ == "__main__":
    main()
