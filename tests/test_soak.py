"""The chaos soak (benchmarks/perf/soak.py): its ~2-minute version runs end to end, and its
audit finds lost, duplicated and corrupt episodes when there are some.

Plumbing, not parity: the runs are real (`cua eval` processes, Chromium, the adb server,
the chat server), the faults are real signals and a really full tmpfs; the model is the
tiny random one."""

from __future__ import annotations

import io
import sys

import pytest
from conftest_workers import WorkerSuite
from rich.console import Console

from agent.config import RunConfig
from agent.runner import run_suite
from benchmarks.perf import soak
from tests.conftest_loop import wait_for

pytest_plugins = ["conftest_policy"]  # tiny_model_dir


def _unit_run(tmp_path):
    run = tmp_path / "run"
    summary = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a", "b"], episodes_per_task=2, seed=0,
        output={"out_dir": run},
    ), suite=WorkerSuite(), console=Console(file=io.StringIO()))
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


class _ExitingStream(soak.Stream):
    """A run whose `cua eval` is replaced by a process that exits with `code` at once."""

    code: int = 0

    def command(self) -> list[str]:
        return [sys.executable, "-c", f"raise SystemExit({self.code})"]


def _drop_last_result(stream: soak.Stream) -> None:
    results = stream.out / "results.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-1]))


def test_a_run_that_exits_0_with_a_deleted_result_line_counts_one_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "RESTART_BACKOFF_S", (0.01, 0.01))
    unit = _unit_run(tmp_path)
    _drop_last_result(unit)
    stream = _ExitingStream("unit", "unit", ["a", "b"], 2, 0, unit.out)
    soak.supervise([stream], tmp_path)  # the retry loop does not hide it ...
    audit = soak.Audit()
    soak.audit_run(stream, audit)
    assert (stream.starts, stream.exit_codes, stream.gave_up) == (1, [0], False)
    assert len(audit.lost) == 1 and audit.episodes == 3  # ... the audit counts it


def test_a_run_that_keeps_failing_is_given_up_and_its_missing_episodes_are_lost(
        tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "RESTART_BACKOFF_S", (0.01, 0.01))
    unit = _unit_run(tmp_path)
    _drop_last_result(unit)
    stream = _ExitingStream("unit", "unit", ["a", "b"], 2, 0, unit.out)
    stream.code = 1
    soak.supervise([stream], tmp_path, max_starts=3)
    audit = soak.Audit()
    soak.audit_run(stream, audit)
    assert (stream.starts, stream.exit_codes, stream.gave_up) == (3, [1, 1, 1], True)
    assert len(audit.lost) == 1
    assert soak.failed(audit, soak.FaultInjector([], [stream], None, None, None, 0), [stream])


def test_every_scheduled_fault_that_did_not_fire_is_named(tmp_path):
    stream = _unit_run(tmp_path)  # finished: nothing is running
    faults = [soak.Fault(0.0, "kill_run"), soak.Fault(1.5, "kill_adb")]  # 1.5: never reached
    injector = soak.FaultInjector(faults, [stream], None, None, None, 0)
    injector.start()
    wait_for(lambda: injector.log, 30, "the first fault to be tried")
    injector.stop()
    unfired = injector.unfired()
    assert any(u.startswith("kill_run: skipped: no run is running") for u in unfired)
    assert "kill_adb: not reached before the runs ended" in unfired
    clean = soak.Audit()
    soak.audit_run(stream, clean)
    assert clean.lost == [] and soak.failed(clean, injector, [stream])


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
        console=console, dense_envs=8)
    soak.report(console, audit, injector, streams, seconds)
    table = console.file.getvalue()
    assert (audit.lost, audit.duplicated, audit.corrupt) == ([], [], []), table
    assert audit.episodes == sum(len(s.expected_keys) for s in streams) == 43
    assert injector.unfired() == [], table  # every scheduled fault fired
    assert not soak.failed(audit, injector, streams)
    assert "resumes" in table and "corrupt files" in table
