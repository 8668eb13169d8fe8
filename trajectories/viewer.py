"""A static HTML report of a run directory: results table, and every episode step by step.

`build_report(run_dir)` writes ``RUN/report/`` (or another folder)::

    index.html               plots (trajectories.plots: success by task, steps and latency
                             distributions) and the results table (filters: task, outcome)
    plots/*.png              the plots, rendered by matplotlib
    episodes/<id>.html       each step: the screenshot the policy saw with its actions drawn
                             on it and named in a caption, thought, raw model output, parse
                             errors, feedback, the user's interventions, timings, tokens;
                             the episode's reward and ending; keys j / k move between steps
    img/<sha256>.png         the screenshots shown (hard links or copies)
    viewer.css, viewer.js    styling, the table filters, keyboard navigation

`build_comparison(run_a, run_b, out)` writes a task-by-task comparison of two runs.

Model output is untrusted text: the index and comparison pages are Jinja2 templates
(viewer_assets/*.j2) with autoescape on, the episode pages escape through `html.escape`, no
recorded text is ever placed inside a script, and each page carries a
Content-Security-Policy that allows only the report's own script file.

Action overlays: an SVG is laid over each screenshot with ``viewBox="0 0 W H"`` in the
environment's input space (W x H = the observation's `screen_size`), stretched to the
displayed image. Canonical actions are in that space, so a click at (x, y) is drawn at
x / W of the displayed width whatever the screenshot's pixel density. Each marker
carries ``data-x`` / ``data-y`` (screen pixels) for tests and tooling. Overlays never hide
what they point at: points get hollow rings, numbers sit beside them, and what an action
types or presses is written in the caption under the screenshot, not over it.
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
from actions.words import action_in_words
from trajectories.plots import RunData, run_plots, success_by_task
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


INDEX_HEADERS = ["episode", "task", "seed", "sample", "outcome", "reward", "steps",
                 "parse errors", "action errors", "ended by", "error", "wall time"]


def _templates():
    """The report's Jinja2 templates (viewer_assets/*.j2), autoescaping everything."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(ASSETS),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def render_index(run: RunDir, results: list[EpisodeResult], unfinished: list[str],
                 plots: list[Any] | None = None) -> str:
    manifest = run.manifest()
    successes = sum(r.success for r in results)
    return _templates().get_template("index.html.j2").render(
        csp=CSP, run_name=run.path.name, config=manifest.config,
        manifest_json=manifest.model_dump_json(indent=2), results=results,
        successes=successes, rate=f"{successes / len(results):.0%}" if results else "-",
        headers=INDEX_HEADERS, unfinished=unfinished, plots=plots or [])


# ---------------------------------------------------------------------------- episode


def overlay_svg(actions: list[Action], width: int, height: int) -> str:
    """SVG elements (in screen coordinates) drawing `actions` so that they never hide what
    they point at: a ring around each point (hollow, its centre left clear), an arrow for
    drags/swipes, and the action's number beside the ring when there are several. What
    an action is (its text, keys) goes in the caption under the screenshot, not over it."""
    radius = max(4.0, min(width, height) / 40)
    parts: list[str] = []
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
        if x is not None and y is not None and tag:
            # beside the ring, on the side with room, never on the point itself
            lx = x + radius + 2 if x + radius + 14 < width else x - radius - 12
            ly = y - radius - 2 if y - radius - 12 > 0 else y + radius + 12
            parts.append(f"<text class=\"label\" x=\"{lx}\" y=\"{ly}\">{esc(tag)}</text>")
    return "".join(parts)


def caption_html(actions: list[Action]) -> str:
    """The actions in words under the screenshot (numbered like the overlay's labels)."""
    if not actions:
        return "<figcaption class=\"caption\">no action</figcaption>"
    items = []
    for number, action in enumerate(actions, start=1):
        tag = f"{number}. " if len(actions) > 1 else ""
        if action.type == "type":
            words = f"type <span class=\"typed\">{esc(action.text)}</span>"  # type: ignore[union-attr]
        else:
            words = esc(action_in_words(action))
        items.append(f"<span class=\"caption-action\">{esc(tag)}{words}</span>")
    return f"<figcaption class=\"caption\">{' · '.join(items)}</figcaption>"


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
    shot = (f"<figure class=\"frame\"><div class=\"shot\"><img src=\"{esc(image_href)}\" "
            f"alt=\"step {step.index} screenshot\" width=\"{shown_width}\">{svg}</div>"
            f"{caption_html(list(out.actions))}</figure>")
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
        + "".join(f"<p class=\"intervention\"><b>User</b>: {esc(_intervention_words(i))}</p>"
                  for i in _interventions(step))
        + (f"<p><b>Feedback to the policy</b></p><pre>{esc(step.feedback)}</pre>"
           if step.feedback else "")
        + f"<details open><summary>raw model output</summary><pre class=\"raw\">"
          f"{esc(out.raw_text)}</pre></details>"
    )
    return (f"<section class=\"step\" id=\"step-{step.index}\" data-step=\"{step.index}\">"
            f"{shot}<div class=\"details\">{details}</div></section>")


def _interventions(step: StepRecord) -> list[dict[str, Any]]:
    return [e.observation.info["intervention"] for e in step.executions
            if e.observation is not None and "intervention" in e.observation.info]


def _intervention_words(intervention: dict[str, Any]) -> str:
    kind = str(intervention.get("kind", "?"))
    detail = {"edit": f"edited the text from {intervention.get('original')!r} to "
                      f"{intervention.get('text')!r}",
              "skip": "skipped the action (refused)", "approve": "approved the action",
              "stop": "stopped the episode", "resume": "paused, acted by hand, resumed",
              "end": "paused and ended the episode"}.get(kind, kind)
    reason = intervention.get("reason")
    return detail + (f" ({reason})" if reason else "")


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
        "<p class=\"keys\">keys: j / k next / previous step, g / G first / last</p>"
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
    plots = run_plots([_run_data(run, results)], out / "plots")
    index = out / "index.html"
    index.write_text(render_index(run, results, unfinished, plots), encoding="utf-8")
    for problem in run.problems:
        logger.warning("%s", problem)
    return index


def _run_data(run: RunDir, results: list[EpisodeResult], name: str | None = None) -> RunData:
    steps = [step for eid in run.episode_ids() for step in run.steps(eid)]
    return RunData(name=name or run.path.name, results=results, steps=steps)


def build_comparison(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str],
                     out_dir: str | os.PathLike[str]) -> Path:
    """Compare two runs task by task: OUT/index.html (success per task in each run, the
    change, mean steps; plots of both side by side) with each run's own report in OUT/a
    and OUT/b. Returns the path of OUT/index.html."""
    out = Path(out_dir)
    runs = [RunDir(run_a), RunDir(run_b)]
    names = [r.path.name for r in runs]
    if names[0] == names[1]:
        names = [f"A: {names[0]}", f"B: {names[1]}"]
    out.mkdir(parents=True, exist_ok=True)
    for asset in ("viewer.css", "viewer.js"):
        shutil.copyfile(ASSETS / asset, out / asset)
    results = [r.results() for r in runs]
    for run, sub_dir in zip(runs, ("a", "b"), strict=True):
        build_report(run.path, out / sub_dir)
    data = [_run_data(run, res, name) for run, res, name in zip(runs, results, names,
                                                                  strict=True)]
    plots = run_plots(data, out / "plots")
    rates = success_by_task(data)
    rows = []
    for task, per_run in rates.items():
        (rate_a, n_a), (rate_b, n_b) = per_run
        steps = []
        for res in results:
            counts = [r.steps for r in res if r.task_id == task]
            steps.append(f"{sum(counts) / len(counts):.1f}" if counts else "-")
        if n_a and n_b:
            delta = rate_b - rate_a
            change = f"{delta:+.0%}" if delta else "="
            change_class = "better" if delta > 0 else "worse" if delta < 0 else "same"
        else:
            change, change_class = ("only in " + (names[0] if n_a else names[1])), "only"
        rows.append({"task": task, "rates": [f"{rate_a:.0%} of {n_a}" if n_a else "-",
                                             f"{rate_b:.0%} of {n_b}" if n_b else "-"],
                     "change": change, "change_class": change_class, "steps": steps})
    summaries = []
    for run, res, name, sub_dir in zip(runs, results, names, ("a", "b"), strict=True):
        successes = sum(r.success for r in res)
        summaries.append({"name": name, "href": f"{sub_dir}/index.html",
                          "policy": run.manifest().config.get("policy"), "successes": successes,
                          "episodes": len(res),
                          "rate": f"{successes / len(res):.0%}" if res else "-"})
    index = out / "index.html"
    index.write_text(_templates().get_template("compare.html.j2").render(
        csp=CSP, names=names, runs=summaries, rows=rows, plots=plots), encoding="utf-8")
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


__all__ = ["CSP", "build_comparison", "build_report", "caption_html", "esc", "overlay_svg",
           "render_episode", "render_index", "serve_report"]
