"""The scripted expert solves every local desktop task through the real runner
(its own DesktopEnv, so this module holds no other desktop), and the run's per-domain
table reads like OSWorld's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import RunConfig
from agent.runner import run_suite
from benchmarks.desktop import DesktopSuite
from benchmarks.osworld_report import domain_summary

SUITE = DesktopSuite()


@pytest.mark.slow
def test_expert_solves_every_local_task_through_the_runner(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_suite(RunConfig(
        suite="desktop", policy="oracle", tasks="all", episodes_per_task=1, seed=0,
        output={"out_dir": out, "fsync": False},
    ), show_progress=False)
    failed = {r.task_id: (r.reward, r.terminated_by, r.error) for r in summary.results
              if not r.success}
    assert not failed
    assert len(summary.results) == len(SUITE.list_tasks())
    rows = {row.domain: row for row in domain_summary(out)}
    assert rows["overall"].success_rate_pct == 100.0
    assert rows["os"].episodes + rows["text_editor"].episodes == len(SUITE.list_tasks())
    assert json.loads((out / "domains.json").read_text())[-1]["domain"] == "overall"
