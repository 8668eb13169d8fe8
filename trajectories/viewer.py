"""A static HTML report of a run directory: results table, and every episode step by step.

`build_report(run_dir)` writes ``RUN/report/`` (or another folder)::

    index.html               results table (filters: task substring, outcome)
    episodes/<id>.html       each step: the screenshot the policy saw with its actions drawn
                             on it, thought, raw model output, parse errors, feedback,
                             timings, tokens; the episode's reward and ending
    img/<sha256>.png         the screenshots shown (hard links or copies)
    viewer.css, viewer.js    styling and the table filters

Model output is untrusted text: everything written into the pages goes through
`html.escape`, no recorded text is ever placed inside a script, and each page carries a
Content-Security-Policy that allows only the report's own script file.

Action overlays: an SVG is laid over each screenshot with ``viewBox="0 0 W H"`` in the
environment's input space (W x H = the observation's `screen_size`), stretched to the
displayed image. Canonical actions are in that space, so a click at (x, y) is drawn at
x / W of the displayed width whatever the screenshot's pixel density. Each marker
carries ``data-x`` / ``data-y`` (screen pixels) for tests and tooling.
"""

from __future__ import annotations

import html
import http.server
import json
import logging
import os
import shutil
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from actions.models import Action
from trajectories.record import EpisodeRecord, EpisodeResult, StepRecord
from trajectories.store import RunDir

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("viewer_assets")
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
       "base-uri 'none'; form-action 'none'")


def esc(value: Any) -> str:
    """HTML-escape any value's str() (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str, *, depth: int) -> str:
    up = "../" * depth
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        f"<title>{esc(title)}</title><link rel=\"stylesheet\" href=\"{up}viewer.css\">"
        f"</head><body>\n{body}\n<script src=\"{up}viewer.js\"></script></body></html>\n"
    )


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


# ---------------------------------------------------------------------------- index


def _result_row(result: EpisodeResult) -> str:
    outcome = "success" if result.success else "failure"
    link = f"episodes/{esc(result.episode_id)}.html"
    return (
        f"<tr class=\"{outcome}\" data-task=\"{esc(result.task_id)}\" data-outcome=\"{outcome}\">"
        f"<td><a href=\"{link}\">{esc(result.episode_id)}</a></td><td>{esc(result.task_id)}</td>"
        f"<td>{result.seed}</td><td>{result.sample}</td><td class=\"outcome\">{outcome}</td>"
        f"<td>{result.reward:.3f}</td><td>{result.steps}</td><td>{result.parse_errors}</td>"
        f"<td>{result.action_errors}</td><td>{esc(result.terminated_by)}</td>"
        f"<td class=\"error\">{esc(result.error or '')}</td><td>{result.wall_time_s:.1f}s</td></tr>"
    )


def render_index(run: RunDir, results: list[EpisodeResult], unfinished: list[str]) -> str:
    manifest = run.manifest()
    config = manifest.config
    successes = sum(r.success for r in results)
    rate = f"{successes / len(results):.0%}" if results else "-"
    headers = ["episode", "task", "seed", "sample", "outcome", "reward", "steps",
               "parse errors", "action errors", "ended by", "error", "wall time"]
    rows = "\n".join(_result_row(r) for r in results)
    unfinished_html = ""
    if unfinished:
        items = "".join(f"<li><a href=\"episodes/{esc(e)}.html\">{esc(e)}</a></li>"
                        for e in unfinished)
        unfinished_html = f"<h2>Unfinished episodes</h2><ul>{items}</ul>"
    body = (
        f"<h1>Run {esc(run.path.name)}</h1>"
        f"<p class=\"meta\">suite <b>{esc(config.get('suite'))}</b>, policy "
        f"<b>{esc(config.get('policy'))}</b>; {len(results)} finished episodes, success "
        f"{successes}/{len(results)} ({rate})</p>"
        f"<details><summary>manifest</summary><pre>{esc(manifest.model_dump_json(indent=2))}"
        "</pre></details>"
        "<div class=\"filters\"><label>task <input id=\"filter-task\" type=\"search\"></label>"
        "<label>outcome <select id=\"filter-outcome\"><option value=\"all\">all</option>"
        "<option value=\"success\">success</option><option value=\"failure\">failure</option>"
        "</select></label><span id=\"filter-count\"></span></div>"
        "<table class=\"results\" id=\"results\"><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in headers)
        + f"</tr></thead><tbody>\n{rows}\n</tbody></table>{unfinished_html}"
    )
    return _page(f"Run {run.path.name}", body, depth=0)


# ---------------------------------------------------------------------------- episode


def overlay_svg(actions: list[Action], width: int, height: int) -> str:
    """SVG elements (in screen coordinates) drawing `actions`: circles for points,
    lines for drags/swipes, text boxes for typed text and keys; numbered when several."""
    radius = max(3.0, min(width, height) / 40)
    parts: list[str] = []
    label_y = 14.0
    for number, action in enumerate(actions, start=1):
        tag = f"{number}" if len(actions) > 1 else ""
        kind = esc(action.type)
        x, y = getattr(action, "x", None), getattr(action, "y", None)
        if action.type in ("drag", "swipe"):
            sx, sy = action.start_x, action.start_y  # type: ignore[union-attr]
            ex, ey = action.end_x, action.end_y  # type: ignore[union-attr]
            parts.append(
                f"<line class=\"path {kind}\" x1=\"{sx}\" y1=\"{sy}\" x2=\"{ex}\" y2=\"{ey}\" "
                f"data-x1=\"{sx}\" data-y1=\"{sy}\" data-x2=\"{ex}\" data-y2=\"{ey}\"/>"
                f"<circle class=\"marker start {kind}\" cx=\"{sx}\" cy=\"{sy}\" r=\"{radius / 2}\" "
                f"data-x=\"{sx}\" data-y=\"{sy}\"/>"
                f"<circle class=\"marker end {kind}\" cx=\"{ex}\" cy=\"{ey}\" r=\"{radius}\" "
                f"data-x=\"{ex}\" data-y=\"{ey}\"/>")
            x, y = ex, ey
        elif x is not None and y is not None:
            parts.append(f"<circle class=\"marker {kind}\" cx=\"{x}\" cy=\"{y}\" r=\"{radius}\" "
                         f"data-x=\"{x}\" data-y=\"{y}\"/>")
        text = None
        if action.type == "type":
            text = f"type: {action.text}"  # type: ignore[union-attr]
        elif action.type == "key":
            text = "key: " + "+".join(action.keys)  # type: ignore[union-attr]
        if x is not None and y is not None and tag:
            parts.append(f"<text class=\"label\" x=\"{x + radius}\" y=\"{y - radius}\">"
                         f"{esc(tag)}</text>")
        if text is not None:
            shown = text if len(text) <= 60 else text[:57] + "..."
            parts.append(f"<text class=\"label typed-label\" x=\"4\" y=\"{label_y}\">"
                         f"{esc((tag + ' ') if tag else '')}{esc(shown)}</text>")
            label_y += 14
    return "".join(parts)


def target_svg(info: dict[str, Any]) -> str:
    """SVG of a grounding sample's target region (observation info["grounding"]["region"],
    benchmarks.grounding): a box or polygon outline, or nothing for a refusal sample."""
    region = (info.get("grounding") or {}).get("region") or {}
    outcome = esc((info.get("grounding") or {}).get("outcome", ""))
    if region.get("kind") == "polygon" and region.get("polygon"):
        points = " ".join(f"{x},{y}" for x, y in region["polygon"])
        return f"<polygon class=\"target {outcome}\" points=\"{esc(points)}\"/>"
    if region.get("kind") == "box" and region.get("box"):
        x1, y1, x2, y2 = region["box"]
        return (f"<rect class=\"target {outcome}\" x=\"{x1}\" y=\"{y1}\" width=\"{x2 - x1}\" "
                f"height=\"{y2 - y1}\"/>")
    return ""


def _action_summary(action: Action) -> str:
    data = action.model_dump(mode="json", exclude_defaults=False)
    if action.type == "type":
        return (f"type <span class=\"typed\">{esc(action.text)}</span>")  # type: ignore[union-attr]
    return esc(json.dumps(data, ensure_ascii=False))


def render_step(step: StepRecord, image_href: str) -> str:
    obs = step.observation
    out = step.output
    screen = obs.screen_size
    svg = (f"<svg class=\"overlay\" viewBox=\"0 0 {screen.width} {screen.height}\" "
           f"preserveAspectRatio=\"none\" data-screen-width=\"{screen.width}\" "
           f"data-screen-height=\"{screen.height}\">{target_svg(obs.info)}"
           f"{overlay_svg(list(out.actions), screen.width, screen.height)}"
           "</svg>")
    # small screens (MiniWoB's 160x210) are shown at twice their size; CSS caps the width
    shown_width = obs.screenshot_size.width * (2 if obs.screenshot_size.width < 400 else 1)
    shot = (f"<div class=\"shot\"><img src=\"{esc(image_href)}\" alt=\"step {step.index} "
            f"screenshot\" width=\"{shown_width}\">{svg}</div>")
    actions = "".join(f"<li>{_action_summary(a)}</li>" for a in out.actions) or "<li>none</li>"
    errors = "".join(f"<li class=\"error\">{esc(e)}</li>" for e in out.parse_errors)
    executions = "".join(
        f"<li class=\"error\">action {e.index}: {esc(e.observation.action_error)}</li>"
        for e in step.executions if e.observation is not None and e.observation.action_error)
    timing = (f"policy {_fmt_s(step.policy_s)} (model latency {_fmt_s(out.latency_s)}), "
              f"environment {_fmt_s(step.env_s)}")
    exec_times = [e.observation for e in step.executions if e.observation is not None]
    if exec_times:
        timing += "; " + ", ".join(f"execute {_fmt_s(o.execute_s)} settle {_fmt_s(o.settle_s)}"
                                   for o in exec_times)
    tokens = ""
    if out.prompt_tokens is not None or out.completion_tokens is not None:
        tokens = (f"<p class=\"meta\">tokens: prompt {esc(out.prompt_tokens)}, completion "
                  f"{esc(out.completion_tokens)}; model {esc(out.model)}</p>")
    details = (
        f"<h3>Step {step.index + 1}</h3>"
        f"<p class=\"meta\">{esc(timing)}</p>{tokens}"
        + (f"<p><b>Thought</b></p><pre class=\"thought\">{esc(out.thought)}</pre>"
           if out.thought else "")
        + (f"<details><summary>think</summary><pre>{esc(out.think)}</pre></details>"
           if out.think else "")
        + f"<p><b>Actions</b></p><ul class=\"actions\">{actions}</ul>"
        + (f"<p><b>Parse errors</b></p><ul>{errors}</ul>" if errors else "")
        + (f"<p><b>Action errors</b></p><ul>{executions}</ul>" if executions else "")
        + (f"<p class=\"error\">policy error: {esc(out.error)}</p>" if out.error else "")
        + (f"<p class=\"error\">step error: {esc(step.error)}</p>" if step.error else "")
        + (f"<p><b>Feedback to the policy</b></p><pre>{esc(step.feedback)}</pre>"
           if step.feedback else "")
        + f"<details open><summary>raw model output</summary><pre class=\"raw\">"
          f"{esc(out.raw_text)}</pre></details>"
    )
    return (f"<section class=\"step\" id=\"step-{step.index}\" data-step=\"{step.index}\">"
            f"{shot}<div class=\"details\">{details}</div></section>")


def render_episode(record: EpisodeRecord, result: EpisodeResult | None,
                   steps: list[StepRecord], image_href: dict[str, str]) -> str:
    if result is None:
        ending = "<p class=\"error\">unfinished (no result recorded)</p>"
    else:
        outcome = "success" if result.success else "failure"
        ending = (f"<p class=\"meta\"><b class=\"{outcome}\">{outcome}</b>, reward "
                  f"{result.reward:.3f}, {result.steps} steps, ended by "
                  f"{esc(result.terminated_by)}, {result.wall_time_s:.1f}s"
                  + (f"; answer: {esc(result.answer)}" if result.answer else "")
                  + (f"</p><p class=\"error\">{esc(result.error)}" if result.error else "")
                  + "</p>")
    body = (
        f"<p><a href=\"../index.html\">&larr; all episodes</a></p>"
        f"<h1>{esc(record.episode_id)}</h1>"
        f"<p><b>Instruction:</b> <span class=\"instruction\">{esc(record.instruction)}</span></p>"
        f"<p class=\"meta\">task {esc(record.task.suite)}/{esc(record.task.task_id)} seed "
        f"{record.task.seed} sample {record.sample}; policy {esc(record.policy)}; platform "
        f"{esc(record.platform)}; reset {_fmt_s(record.reset_s)}</p>{ending}"
        + "".join(render_step(s, image_href[s.observation.screenshot_sha256]) for s in steps)
    )
    return _page(record.episode_id, body, depth=1)


# ---------------------------------------------------------------------------- build


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_report(run_dir: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the report (default: RUN/report); returns the path of its index.html."""
    run = RunDir(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    (out / "img").mkdir(exist_ok=True)
    for asset in ("viewer.css", "viewer.js"):
        shutil.copyfile(ASSETS / asset, out / asset)
    results = run.results()
    finished = {r.episode_id: r for r in results}
    unfinished = [e for e in run.episode_ids() if e not in finished]
    for episode_id in run.episode_ids():
        record = run.episode(episode_id)
        steps = run.steps(episode_id)
        hrefs: dict[str, str] = {}
        for step in steps:
            sha = step.observation.screenshot_sha256
            if sha not in hrefs:
                _link_or_copy(run.screenshot_path(sha), out / "img" / f"{sha}.png")
                hrefs[sha] = f"../img/{sha}.png"
        page = render_episode(record, finished.get(episode_id), steps, hrefs)
        (out / "episodes" / f"{episode_id}.html").write_text(page, encoding="utf-8")
    index = out / "index.html"
    index.write_text(render_index(run, results, unfinished), encoding="utf-8")
    for problem in run.problems:
        logger.warning("%s", problem)
    return index


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("viewer: " + format, *args)


@contextmanager
def serve_report(report_dir: str | os.PathLike[str], port: int = 0,
                 host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `report_dir` over HTTP on localhost in a background thread; yields the base
    URL (port 0 picks a free port). The server stops when the block exits."""
    import threading

    handler = partial(_QuietHandler, directory=str(report_dir))
    server = socketserver.ThreadingTCPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="cua-view", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


__all__ = ["CSP", "build_report", "esc", "overlay_svg", "render_episode", "render_index",
           "serve_report"]
