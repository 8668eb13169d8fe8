"""`cua export grounding RUN`: the clicks of a recorded MiniWoB run (real Chromium, the
scripted oracle) become grounding samples whose box holds the recorded click (plumbing
against our own environments), and the harness reads them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from benchmarks.grounding.data import load_screenspot_pro
from benchmarks.grounding.metric import point_in_box
from trajectories.store import RunDir

pytestmark = pytest.mark.slow


def test_recorded_clicks_become_grounding_samples(tmp_path: Path) -> None:
    run = tmp_path / "run"
    recorded = CliRunner().invoke(app, [
        "eval", "miniwob", "--tasks", "click-button,click-checkboxes", "--episodes", "2",
        "--policy", "oracle", "--record-click-targets", "--out", str(run)])
    assert recorded.exit_code == 0, recorded.output
    out = tmp_path / "grounding"
    exported = CliRunner().invoke(app, ["export", "grounding", str(run), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    samples, report = load_screenspot_pro(out)
    clicks = {}
    for episode, step in RunDir(run).iter_steps():
        for execution in step.executions:
            if execution.action.type == "click":
                clicks[f"{episode.episode_id}-{step.index}-{execution.index}"] = execution.action
    assert len(samples) == len(clicks) >= 4  # every oracle click hit a named element
    for sample in samples:
        click = clicks[sample.sample_id]
        scale = sample.image_size[0] / 160  # MiniWoB's 160x210 CSS px viewport
        assert point_in_box((click.x * scale, click.y * scale), sample.region.box)
        assert sample.instruction.startswith('the "') and sample.ui_type in ("text", "icon")
    record = json.loads(next((out / "annotations").glob("*.json")).read_text())[0]
    assert record["application"] == "miniwob" and record["platform"] == "web"


def test_run_without_click_targets_says_how(tmp_path: Path) -> None:
    run = tmp_path / "run"
    recorded = CliRunner().invoke(app, ["eval", "miniwob", "--tasks", "click-button",
                                        "--policy", "oracle", "--out", str(run)])
    assert recorded.exit_code == 0, recorded.output
    exported = CliRunner().invoke(app, ["export", "grounding", str(run), "--out",
                                        str(tmp_path / "g")])
    assert exported.exit_code == 1
    assert "--record-click-targets" in exported.output
