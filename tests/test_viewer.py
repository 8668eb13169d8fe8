"""The HTML report in real headless Chromium: it renders, filters work, action overlays
sit where the actions were and leave the point itself visible, keys move between steps,
the plots load, two runs compare task by task, and script-injection strings in model
output stay text. Plumbing tests against recorded runs built here."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from actions.contracts import PolicyOutput, Task
from actions.models import Click, Drag, Type
from actions.observation import Observation, Size
from environments.web import CHROMIUM_FLAGS
from trajectories.record import ActionExecution, EpisodeRecord, EpisodeResult, StepRecord
from trajectories.store import RunWriter
from trajectories.viewer import build_comparison, build_report, serve_report

INJECTIONS = (
    '<img src=x onerror="window.__pwned = \'img\'">',
    "</script><script>window.__pwned = 'script'</script>",
    '<svg onload="window.__pwned = \'svg\'"></svg>',
    "\" onmouseover=\"window.__pwned='attr'\" x=\"",
)
SCREEN = Size(width=400, height=300)


def _png(size: Size, color: str) -> bytes:
    image = Image.new("RGB", (size.width, size.height), color)
    ImageDraw.Draw(image).rectangle([10, 10, 60, 40], fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _episode(writer: RunWriter, episode_id: str, task_id: str, success: bool,
             screenshot_scale: int, outputs: list[PolicyOutput]) -> None:
    """One recorded episode; screenshots are `screenshot_scale` x the input space (HiDPI)."""
    shot_size = Size(width=SCREEN.width * screenshot_scale,
                     height=SCREEN.height * screenshot_scale)
    recorder = writer.start_episode(episode_id)
    task = Task(suite="web", task_id=task_id, seed=0, instruction="do it <b>now</b>")
    colors = ["white", "lightblue", "lightyellow", "pink"]
    first = recorder.observation(Observation(screenshot_png=_png(shot_size, colors[0]),
                                             screen_size=SCREEN, screenshot_size=shot_size))
    recorder.start(EpisodeRecord(episode_id=episode_id, key=f"web/{task_id}/0", task=task,
                                 instruction=task.instruction, policy="test", platform="web",
                                 started_at=time.time(), initial_observation=first))
    current = first
    for index, output in enumerate(outputs):
        after = recorder.observation(Observation(
            screenshot_png=_png(shot_size, colors[(index + 1) % len(colors)]),
            screen_size=SCREEN, screenshot_size=shot_size, execute_s=0.01, settle_s=0.02))
        recorder.step(StepRecord(
            episode_id=episode_id, index=index, started_at=time.time(), observation=current,
            output=output, policy_s=0.5, env_s=0.03,
            executions=[ActionExecution(index=i, action=a, observation=after)
                        for i, a in enumerate(output.actions)],
            feedback=None if output.actions else "no valid action <i>"))
        current = after
    recorder.finish(EpisodeResult(
        episode_id=episode_id, suite="web", task_id=task_id, seed=0, success=success,
        reward=1.0 if success else 0.0, steps=len(outputs), terminated_by="done",
        wall_time_s=1.5, started_at=time.time(), instruction=task.instruction))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    writer = RunWriter(run, {"suite": "web", "policy": "test"}, fsync=False)
    evil = "\n".join(INJECTIONS)
    _episode(writer, "evil_seed0", "click-evil", True, 2, [
        PolicyOutput(raw_text=f"I will click. {evil}", thought=f"thinking {INJECTIONS[0]}",
                     actions=[Click(x=100, y=50), Type(text=INJECTIONS[1])],
                     model="m"),
        PolicyOutput(raw_text="drag it", actions=[Drag(start_x=20, start_y=280, end_x=390,
                                                       end_y=10)]),
        PolicyOutput(raw_text=INJECTIONS[2], parse_errors=[f"bad call {INJECTIONS[3]}"]),
    ])
    _episode(writer, "plain_seed0", "click-plain", False, 1, [
        PolicyOutput(raw_text="click", actions=[Click(x=399, y=299)]),
    ])
    return build_report(run)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from environments.web import shared_playwright

    # Session fixtures elsewhere may hold this thread's Playwright driver: share it.
    with shared_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                              args=list(CHROMIUM_FLAGS))
        try:
            yield instance
        finally:
            instance.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, dialogs, errors


def test_index_renders_and_filters(browser, report: Path) -> None:
    with serve_report(report.parent) as base:
        page, _, errors = _open(browser, base + "index.html")
        rows = page.locator("#results tbody tr")
        assert rows.count() == 2
        page.wait_for_function("document.getElementById('filter-count').textContent !== ''")
        assert page.locator("#filter-count").text_content() == "2 of 2 episodes"
        page.fill("#filter-task", "evil")
        assert page.locator("#filter-count").text_content() == "1 of 2 episodes"
        assert page.locator("#results tbody tr:not([hidden])").text_content().count("evil") >= 1
        page.fill("#filter-task", "")
        page.select_option("#filter-outcome", "failure")
        visible = page.locator("#results tbody tr:not([hidden])")
        assert visible.count() == 1 and "plain_seed0" in visible.text_content()
        page.select_option("#filter-outcome", "all")
        page.click("text=evil_seed0")
        page.wait_for_url("**/episodes/evil_seed0.html")
        assert page.locator("section.step").count() == 3
        assert errors == []
        page.close()


@pytest.mark.parametrize("episode", ["evil_seed0", "plain_seed0"])
def test_overlay_markers_sit_on_the_action_coordinates(browser, report: Path,
                                                       episode: str) -> None:
    page, _, _ = _open(browser, (report.parent / "episodes" / f"{episode}.html").as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete && "
                           "i.naturalWidth > 0)")
    markers = 0
    for section in page.locator("section.step").all():
        image_box = section.locator("img").bounding_box()
        svg = section.locator("svg.overlay")
        width = float(svg.get_attribute("data-screen-width"))
        height = float(svg.get_attribute("data-screen-height"))
        for marker in section.locator("circle.marker").all():
            box = marker.bounding_box()
            x, y = float(marker.get_attribute("data-x")), float(marker.get_attribute("data-y"))
            expected_x = image_box["x"] + x / width * image_box["width"]
            expected_y = image_box["y"] + y / height * image_box["height"]
            assert abs(box["x"] + box["width"] / 2 - expected_x) < 1.5, (x, box, image_box)
            assert abs(box["y"] + box["height"] / 2 - expected_y) < 1.5, (y, box, image_box)
            markers += 1
    # evil: click + drag start/end; plain: one click at the bottom-right corner
    assert markers == (3 if episode == "evil_seed0" else 1)
    if episode == "evil_seed0":
        # the HiDPI screenshot (800x600 pixels of a 400x300 screen) is shown scaled to
        # 640 px wide, and the click at x=100 sits a quarter of the way across
        first = page.locator("section.step").first
        assert first.locator("img").bounding_box()["width"] == pytest.approx(640, abs=1)
        line = page.locator("line.path.drag")
        assert line.count() == 1 and line.get_attribute("data-x2") == "390"
    page.close()


def test_model_output_is_escaped_and_never_executes(browser, report: Path) -> None:
    for opener in ("file", "http"):
        if opener == "http":
            with serve_report(report.parent) as base:
                page, dialogs, errors = _open(browser, base + "episodes/evil_seed0.html")
                _check_inert(page, dialogs, errors)
        else:
            page, dialogs, errors = _open(
                browser, (report.parent / "episodes" / "evil_seed0.html").as_uri())
            _check_inert(page, dialogs, errors)


def _check_inert(page, dialogs: list[str], errors: list[str]) -> None:
    page.wait_for_function("document.readyState === 'complete'")
    page.hover("pre.raw")  # would fire an injected onmouseover
    assert page.evaluate("window.__pwned") is None
    assert dialogs == [] and errors == []
    raw = page.locator("pre.raw").first.text_content()
    for injection in INJECTIONS[:2]:
        assert injection in raw  # shown literally, as text
    assert page.locator("section.step img").count() == 3  # no injected <img>
    assert page.locator("script").count() == 1  # only the report's own viewer.js
    assert "<b>now</b>" in page.locator(".instruction").text_content()
    typed = page.locator(".typed").first.text_content()
    assert typed == INJECTIONS[1]
    # typed text is named in the caption under the screenshot, never drawn over it
    assert page.locator("figcaption.caption .typed").first.text_content() == INJECTIONS[1]
    assert page.locator("svg.overlay text:not(.label)").count() == 0
    parse_error = page.locator("section.step").nth(2).locator("li.error").first.text_content()
    assert INJECTIONS[3] in parse_error
    page.close()


def test_overlay_never_hides_the_point_it_marks(browser, report: Path) -> None:
    """Screenshot check: with and without the overlay, the pixels at the clicked point are
    the same (a hollow ring), while the ring itself is drawn around it."""
    page, _, _ = _open(browser, (report.parent / "episodes" / "evil_seed0.html").as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete && "
                           "i.naturalWidth > 0)")
    marker = page.locator("section.step").first.locator("circle.marker").first
    box = marker.bounding_box()
    centre = {"x": box["x"] + box["width"] / 2 - 2, "y": box["y"] + box["height"] / 2 - 2,
              "width": 4, "height": 4}
    ring = {"x": box["x"] - 2, "y": box["y"] + box["height"] / 2 - 2, "width": 6, "height": 4}
    with_overlay = (page.screenshot(clip=centre), page.screenshot(clip=ring))
    page.evaluate("document.querySelectorAll('svg.overlay').forEach(s => s.style.display = "
                  "'none')")
    without = (page.screenshot(clip=centre), page.screenshot(clip=ring))
    assert with_overlay[0] == without[0], "the overlay covers the point it marks"
    assert with_overlay[1] != without[1], "the ring around the point is not drawn"
    page.close()


def test_keys_move_between_steps(browser, report: Path) -> None:
    page, _, errors = _open(browser, (report.parent / "episodes" / "evil_seed0.html").as_uri())
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.evaluate("location.hash") == "#step-1"
    assert page.locator("section.step.current").get_attribute("id") == "step-1"
    page.keyboard.press("G")
    assert page.evaluate("location.hash") == "#step-2"
    page.keyboard.press("k")
    assert page.locator("section.step.current").get_attribute("id") == "step-1"
    page.keyboard.press("g")
    assert page.evaluate("location.hash") == "#step-0"
    assert errors == []
    page.close()


def test_plots_render(browser, report: Path) -> None:
    page, _, errors = _open(browser, (report.parent / "index.html").as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    plots = page.locator(".plots img")
    assert plots.count() == 3
    sizes = page.evaluate("Array.from(document.querySelectorAll('.plots img'))"
                          ".map(i => [i.naturalWidth, i.naturalHeight, i.alt])")
    for width, height, _alt in sizes:
        assert width >= 400 and height >= 150, sizes
    assert "click-evil: run0 100% of 1" in sizes[0][2]  # the alt text says it in words
    assert "median" in sizes[1][2] and "policy median 0.50 s" in sizes[2][2]
    assert errors == []
    page.close()


def test_two_runs_compare_task_by_task(browser, report: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    writer = RunWriter(second, {"suite": "web", "policy": "other"}, fsync=False)
    _episode(writer, "plain_seed0", "click-plain", True, 1,
             [PolicyOutput(raw_text="click", actions=[Click(x=10, y=10)])])
    _episode(writer, "evil_seed0", "click-evil", False, 1,
             [PolicyOutput(raw_text="x", actions=[Click(x=1, y=1)])] * 2)
    index = build_comparison(report.parent.parent, second, tmp_path / "compare")
    page, _, errors = _open(browser, index.as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete && "
                           "i.naturalWidth > 0)")
    rows = {r.get_attribute("data-task"): r for r in page.locator("#compare tbody tr").all()}
    assert set(rows) == {"click-evil", "click-plain"}
    assert rows["click-evil"].get_attribute("class") == "worse"
    assert rows["click-plain"].get_attribute("class") == "better"
    assert rows["click-plain"].locator("td.change").text_content() == "+100%"
    assert "3.0" in rows["click-evil"].text_content() and "2.0" in rows["click-evil"].text_content()
    assert page.locator(".plots img").count() == 3
    page.click("a[href='b/index.html']")
    page.wait_for_url("**/b/index.html")
    assert page.locator("#results tbody tr").count() == 2
    assert errors == []
    page.close()


def test_report_of_a_run_still_in_progress(tmp_path: Path) -> None:
    """`cua view` while `cua run` is still going: the started episode and its steps so far
    are shown, marked unfinished, and a torn last line (a step being written) is dropped."""
    from typer.testing import CliRunner

    from agent.cli.main import app

    writer = RunWriter(tmp_path / "live", {"suite": "web", "policy": "test"}, fsync=False)
    recorder = writer.start_episode("live_seed0")
    first = recorder.observation(Observation(screenshot_png=_png(SCREEN, "white"),
                                             screen_size=SCREEN, screenshot_size=SCREEN))
    task = Task(suite="web", task_id="live", seed=0, instruction="go")
    recorder.start(EpisodeRecord(episode_id="live_seed0", key="web/live/0", task=task,
                                 instruction="go", policy="test", platform="web",
                                 started_at=time.time(), initial_observation=first))
    recorder.step(StepRecord(episode_id="live_seed0", index=0, started_at=time.time(),
                             observation=first, policy_s=0.1,
                             output=PolicyOutput(raw_text="c", actions=[Click(x=5, y=5)])))
    with open(tmp_path / "live" / "episodes" / "live_seed0" / "steps.jsonl", "a") as f:
        f.write('{"episode_id": "live_seed0", "ind')  # the next step, half written
    result = CliRunner().invoke(app, ["view", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    report = tmp_path / "live" / "report"
    assert "Unfinished episodes" in (report / "index.html").read_text()
    page = (report / "episodes" / "live_seed0.html").read_text()
    assert "unfinished (no result recorded)" in page and page.count('class="step"') == 1
