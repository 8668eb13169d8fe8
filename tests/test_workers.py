"""Parallel rollouts in worker processes: same records as in-process, batching, memory."""

from __future__ import annotations

import io

import pytest
from conftest_loop import CLICK, SCREEN, ScriptedPolicy, out, png_for
from conftest_workers import WorkerSuite, signature
from rich.console import Console

from actions.observation import Observation
from agent.config import RunConfig
from agent.engine.workers import (
    EnvironmentFactory,
    PolicyCalls,
    WorkerCore,
)
from agent.runner import run_suite
from trajectories.record import screenshot_sha256
from trajectories.store import RunDir

TASKS = ["a", "b", "crash", "long-3"]


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=150)


def _check_records(run) -> None:
    reader = RunDir(run)
    results = reader.results()
    assert len({r.key for r in results}) == len(results)  # one line per episode
    assert reader.problems == []
    for result in results:
        steps = reader.steps(result.episode_id)
        assert len(steps) == result.steps
        assert reader.result(result.episode_id) == result
        for step in steps:
            assert reader.screenshot_path(step.observation.screenshot_sha256).exists()


def test_two_workers_record_what_one_process_records_and_resume(tmp_path):
    local = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=TASKS, episodes_per_task=2, seed=0,
        output={"out_dir": tmp_path / "local"},
    ), suite=WorkerSuite(), console=_quiet())
    first = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=TASKS[:2], episodes_per_task=2, seed=0,
        engine={"workers": 2}, output={"out_dir": tmp_path / "par"},
    ), suite=WorkerSuite(), console=_quiet())
    assert (first.ran, first.skipped) == (4, 0)
    console = _quiet()
    resumed = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=TASKS, episodes_per_task=2, seed=0,
        engine={"workers": 2}, output={"out_dir": tmp_path / "par"},
    ), suite=WorkerSuite(), console=console)
    assert (resumed.ran, resumed.skipped, resumed.planned) == (4, 4, 8)
    assert signature(resumed.results) == signature(local.results)
    crashed = [r for r in resumed.results if r.task_id == "crash"]
    assert all(r.error.startswith("EnvironmentCrashed: browser process exited")
               for r in crashed)
    _check_records(tmp_path / "par")
    table = console.file.getvalue()
    assert "Workers" in table and "RSS" in table


def test_worker_writes_screenshots_and_sends_only_their_hash(tmp_path):
    factory = EnvironmentFactory(WorkerSuite().make_environment, None, tmp_path)
    core = WorkerCore(factory)
    task = WorkerSuite().make_task("long-3", 0)
    status, wire = core.reply("reset", (task,))
    assert status == "ok" and wire.observation.screenshot_png == b""
    png = (tmp_path / f"{wire.sha256}.png").read_bytes()
    assert screenshot_sha256(png) == wire.sha256
    assert wire.load(tmp_path).screenshot_png == png
    status, error = core.reply("no-such-op", ())
    assert status == "err" and isinstance(error, ValueError)
    # Without a directory the PNG travels inline.
    inline = WorkerCore(EnvironmentFactory(WorkerSuite().make_environment))
    assert inline.reply("reset", (task,))[1].sha256 is None


@pytest.mark.parametrize("calls", [PolicyCalls.BATCHED, PolicyCalls.SERIAL])
def test_parent_policy_batches_the_workers_pending_steps(tmp_path, calls):
    policy = ScriptedPolicy([out(CLICK)], name="model")
    config = RunConfig(suite="unit", policy="model", tasks=["long-3"], episodes_per_task=4,
                       engine={"workers": 2, "options": {"policy_calls": calls.value,
                                                         "batch_wait_s": 30.0}},
                       output={"out_dir": tmp_path / "run"})
    summary = run_suite(config, suite=WorkerSuite(), policy=policy,
                        console=Console(file=io.StringIO()))
    report = summary.worker_report
    results = summary.results
    assert len(results) == 4 and all(r.success and r.steps == 3 for r in results)
    sizes = [len(batch) for batch in policy.batches]
    assert sum(sizes) == report.steps == 12
    if calls is PolicyCalls.BATCHED:
        # Both workers wait for the policy at every step: one act() call per round.
        assert sizes == [2] * 6 and report.batch_sizes == sizes
    else:
        assert set(sizes) == {1}
    # The policy saw real pixels, read back from the screenshots the workers wrote.
    first = policy.batches[0][0].observation
    assert isinstance(first, Observation) and first.screen_size == SCREEN
    assert first.screenshot_png[:8] == png_for(0)[:8]
    assert all(w.rss_bytes and w.rss_bytes > 10 * 2**20 for w in report.workers)
    _check_records(tmp_path / "run")


def _actions_by_episode(run) -> dict[str, list]:
    reader = RunDir(run)
    return {r.episode_id: [[a.model_dump() for a in s.output.actions]
                           for s in reader.steps(r.episode_id)] for r in reader.results()}


MINIWOB_TASKS = ["click-button", "click-test", "enter-text", "focus-text"]


@pytest.mark.slow
def test_miniwob_oracle_with_two_workers_equals_one_process(tmp_path):

    local = run_suite(RunConfig(
        suite="miniwob", policy="oracle", tasks=MINIWOB_TASKS, episodes_per_task=2, seed=7,
        output={"out_dir": tmp_path / "local"},
    ), console=_quiet())
    # Half the run, then a resume with two workers finishes the rest.
    run_suite(RunConfig(
        suite="miniwob", policy="oracle", tasks=MINIWOB_TASKS[:2], episodes_per_task=2, seed=7,
        engine={"workers": 2}, output={"out_dir": tmp_path / "par"},
    ), console=_quiet())
    par = run_suite(RunConfig(
        suite="miniwob", policy="oracle", tasks=MINIWOB_TASKS, episodes_per_task=2, seed=7,
        engine={"workers": 2}, output={"out_dir": tmp_path / "par"},
    ), console=_quiet())
    assert (par.ran, par.skipped) == (4, 4)
    assert all(r.success and r.reward > 0 for r in local.results)
    assert signature(par.results) == signature(local.results)
    assert _actions_by_episode(tmp_path / "par") == _actions_by_episode(tmp_path / "local")
    _check_records(tmp_path / "par")
