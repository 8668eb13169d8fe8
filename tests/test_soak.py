"""The chaos soak (benchmarks/perf/soak.py): its ~2-minute version runs end to end, and its
audit finds lost, duplicated and corrupt episodes when there are some.

Plumbing, not parity: the runs are real (`cua eval` processes, Chromium, the adb server,
the chat server), the faults are real signals and a really full tmpfs; the model is the
tiny random one."""

from __future__ import annotations

import io

import pytest
from conftest_workers import WorkerSuite
from rich.console import Console

from agent.runner import run_suite
from benchmarks.perf import soak

pytest_plugins = ["conftest_policy"]  # tiny_model_dir


def _unit_run(tmp_path):
    run = tmp_path / "run"
    summary = run_suite(WorkerSuite(), "oracle", ["a", "b"], 2, 0, run,
                        console=Console(file=io.StringIO()))
    assert summary.complete
    return soak.Stream("unit", "unit", ["a", "b"], 2, 0, run)


def test_the_audit_finds_lost_duplicated_and_corrupt_episodes(tmp_path):
    stream = _unit_run(tmp_path)
    clean = soak.Audit()
    soak.audit_run(stream, clean)
    assert (clean.episodes, clean.lost, clean.duplicated, clean.corrupt) == (4, [], [], [])

    results = stream.out / "results.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join([lines[0], lines[0], *lines[2:]]))  # one twice, one gone
    screenshot = next((stream.out / "screenshots").glob("*.png"))
    screenshot.write_bytes(screenshot.read_bytes()[:-7])
    first_episode = sorted((stream.out / "episodes").iterdir())[0]
    (first_episode / "result.json").write_text("{not json")
    damaged = soak.Audit()
    soak.audit_run(stream, damaged)
    assert len(damaged.duplicated) == 1 and len(damaged.lost) == 1
    assert any("does not hash to its name" in c for c in damaged.corrupt)
    assert any("result.json" in c for c in damaged.corrupt)


def test_the_fault_schedule_is_seeded():
    first = soak.schedule(7, 2)
    assert first == soak.schedule(7, 2) and first != soak.schedule(8, 2)
    kinds = [fault.kind for fault in first]
    assert kinds.count("disk_full") == 1 and kinds.count("kill_adb") == 2
    assert all(0.05 <= fault.at_fraction <= 0.70 for fault in first)


@pytest.mark.slow
def test_short_soak_loses_duplicates_and_corrupts_nothing(tmp_path, tiny_model_dir):
    console = Console(file=io.StringIO(), width=110)
    audit, injector, streams, seconds = soak.soak(
        tmp_path, scale=0.12, seed=0, per_kind=1, disk_mb=64, model_dir=tiny_model_dir,
        console=console)
    soak.report(console, audit, injector, streams, seconds)
    table = console.file.getvalue()
    assert (audit.lost, audit.duplicated, audit.corrupt) == ([], [], []), table
    assert audit.episodes == sum(len(s.expected_keys) for s in streams) == 23
    assert sum(injector.injected.values()) >= 4, table  # most faults found their target
    assert "resumes" in table and "corrupt files" in table
