"""Crash-safe trajectory storage: atomic files, JSONL appends, torn tails, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest_engine import run_episode
from conftest_loop import (
    CLICK,
    ScriptedEnv,
    ScriptedPolicy,
    count_lines,
    out,
    png_for,
    task,
    wait_for,
)

from trajectories.record import EpisodeResult, StepRecord, screenshot_sha256
from trajectories.store import (
    CorruptRecordError,
    NotARunDirectory,
    RunConfigMismatch,
    RunDir,
    RunWriter,
    read_jsonl,
    repair_torn_tail,
)

TESTS_DIR = Path(__file__).parent
REPO = TESTS_DIR.parent


def _result(i: int) -> EpisodeResult:
    return EpisodeResult(episode_id=f"e{i}", suite="unit", task_id="t", seed=i, success=True,
                         reward=1.0, steps=1, terminated_by="terminate", wall_time_s=0.1,
                         started_at=0.0)


def test_manifest_records_config_and_versions(tmp_path):
    writer = RunWriter(tmp_path / "run", {"suite": "unit", "max_steps": 5},
                       invocation={"argv": ["cua", "eval"]})
    manifest = RunDir(tmp_path / "run").manifest()
    assert manifest.config == {"suite": "unit", "max_steps": 5}
    assert manifest.versions["python"] and manifest.versions["pydantic"]
    assert "qwen-cua" in manifest.versions and "torch" in manifest.versions
    assert manifest.invocations[0]["argv"] == ["cua", "eval"]
    assert writer.finished_keys() == set()


def test_reopening_with_same_config_appends_invocation(tmp_path):
    RunWriter(tmp_path, {"a": 1}, invocation={"n": 1})
    RunWriter(tmp_path, {"a": 1}, invocation={"n": 2})
    assert [i["n"] for i in RunDir(tmp_path).manifest().invocations] == [1, 2]


def test_reopening_with_other_config_is_refused_with_the_difference(tmp_path):
    RunWriter(tmp_path, {"policy": "oracle", "max_steps": 5})
    with pytest.raises(RunConfigMismatch, match=r"max_steps: existing=5 requested=9"):
        RunWriter(tmp_path, {"policy": "oracle", "max_steps": 9})


def test_non_empty_directory_without_manifest_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NotARunDirectory, match="refusing"):
        RunWriter(tmp_path, {})
    with pytest.raises(NotARunDirectory):
        RunDir(tmp_path)


def test_screenshots_are_stored_once_and_losslessly(tmp_path):
    writer = RunWriter(tmp_path, {})
    png = png_for(7)
    sha = writer.save_screenshot(png)
    assert sha == screenshot_sha256(png)
    assert RunWriter(tmp_path, {}).save_screenshot(png) == sha  # a second writer skips it
    files = list((tmp_path / "screenshots").iterdir())
    assert [f.name for f in files] == [f"{sha}.png"]
    assert RunDir(tmp_path).screenshot(sha) == png
    with pytest.raises(ValueError):
        RunDir(tmp_path).screenshot("../manifest")


def test_torn_last_line_is_dropped_and_reported_then_cut_before_appending(tmp_path):
    writer = RunWriter(tmp_path, {})
    writer.append_result(_result(0))
    writer.append_result(_result(1))
    with open(tmp_path / "results.jsonl", "ab") as f:
        f.write(_result(2).model_dump_json().encode()[:40])  # a killed writer's half line
    reader = RunDir(tmp_path)
    assert [r.seed for r in reader.results()] == [0, 1]
    assert len(reader.problems) == 1 and "torn" in reader.problems[0]
    # Reopening repairs the tail, so the next append starts on a fresh line.
    writer = RunWriter(tmp_path, {})
    writer.append_result(_result(3))
    assert [r.seed for r in RunDir(tmp_path).results()] == [0, 1, 3]
    assert (tmp_path / "results.jsonl").read_bytes().endswith(b"\n")


def test_corruption_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(_result(0).model_dump_json() + "\n{not json}\n"
                    + _result(1).model_dump_json() + "\n")
    with pytest.raises(CorruptRecordError, match=r"results.jsonl:2"):
        read_jsonl(path, EpisodeResult)


def test_repair_torn_tail_is_a_no_op_on_clean_or_missing_files(tmp_path):
    assert not repair_torn_tail(tmp_path / "absent.jsonl")
    clean = tmp_path / "clean.jsonl"
    clean.write_text('{"a": 1}\n')
    assert not repair_torn_tail(clean)
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"a": 1}\n{"a": ' + "9" * 100_000)
    assert repair_torn_tail(torn) and torn.read_text() == '{"a": 1}\n'


def test_discard_episode_removes_a_partial_directory(tmp_path):
    writer = RunWriter(tmp_path, {})
    run_episode(ScriptedEnv(), ScriptedPolicy([out(CLICK)]), task(), max_steps=2,
                episode_id="partial", recorder=writer.start_episode("partial"))
    assert writer.discard_episode("partial")
    assert not (tmp_path / "episodes" / "partial").exists()
    assert not writer.discard_episode("partial")


_WRITER_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest_loop import CLICK, ScriptedEnv, ScriptedPolicy, out, task
    from agent.engine.episode import EpisodeSpec
    from conftest_engine import run_episodes_batched
    from trajectories.store import RunWriter

    writer = RunWriter({run!r}, {{"suite": "unit"}})
    # Big raw texts make each steps.jsonl line ~1 MB, so a kill can land inside a write.
    policy = ScriptedPolicy([out(CLICK, raw="x" * 1_000_000)])
    specs = [EpisodeSpec(task=task("t", seed=i, max_steps=4), episode_id=f"ep{{i}}",
                         recorder=writer.start_episode(f"ep{{i}}")) for i in range(10_000)]
    run_episodes_batched([ScriptedEnv(), ScriptedEnv()], policy, specs)
""")


@pytest.mark.parametrize("finished_before_kill", [1, 3, 6])
def test_kill_9_mid_run_leaves_readable_records(tmp_path, finished_before_kill):
    run = tmp_path / "run"
    script = _WRITER_SCRIPT.format(tests=str(TESTS_DIR), run=str(run))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: count_lines(run / "results.jsonl") >= finished_before_kill
                  or proc.poll() is not None, 60, "episodes to finish")
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    reader = RunDir(run)
    results = reader.results()  # raises on anything but a torn last line
    assert len(results) >= finished_before_kill
    assert len({r.key for r in results}) == len(results)
    finished = {r.episode_id: r for r in results}
    for episode_id in reader.episode_ids():
        steps = reader.steps(episode_id)  # raises on anything but a torn last line
        assert [s.index for s in steps] == list(range(len(steps)))
        if episode_id in finished:
            assert len(steps) == finished[episode_id].steps == 4
            assert reader.result(episode_id) == finished[episode_id]
        for step in steps:
            assert reader.screenshot_path(step.observation.screenshot_sha256).exists()
    # Only the steps in flight can be lost: at most one unfinished episode per env.
    unfinished = set(reader.episode_ids()) - set(finished)
    assert len(unfinished) <= 2
    # A kill can leave a hidden temporary file behind, never a record that is not whole:
    # every screenshot under its own name is the complete PNG of that hash.
    for png in (run / "screenshots").glob("[!.]*"):
        assert png.suffix == ".png" and screenshot_sha256(png.read_bytes()) == png.stem
    # Every line that is there is a whole JSON document.
    for line in (run / "results.jsonl").read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            json.loads(line)
    for steps_file in run.glob("episodes/*/steps.jsonl"):
        for line in steps_file.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                StepRecord.model_validate_json(line)


_STRESS_SCRIPT = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {tests!r})
    from conftest_loop import CLICK, ScriptedEnv, ScriptedPolicy, out, task
    from conftest_engine import run_episode
    from trajectories.store import RunWriter

    # fsync on screenshots widens the window in which two writers of one file overlap.
    writer = RunWriter({run!r}, {{"suite": "unit"}}, fsync_screenshots=True)
    barrier = threading.Barrier({threads})
    errors = []

    def work(t):
        barrier.wait()  # all threads of this process start writing at once
        env = ScriptedEnv(done_after=3)
        try:
            for k in range({episodes}):
                eid = f"p{proc}-t{{t}}-e{{k}}"
                # Episode k shows the same four screens in every thread and process (they
                # depend on the env's reset count): all writers store the same
                # content-addressed screenshots at about the same time.
                run_episode(env, ScriptedPolicy([out(CLICK)]),
                            task("t", seed=k), recorder=writer.start_episode(eid),
                            episode_id=eid, max_steps=5)
        except BaseException as exc:  # reported to the parent through the exit code
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range({threads})]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        sys.exit("\\n".join(errors))
""")


def test_concurrent_writers_in_threads_and_processes_leave_whole_files(tmp_path):
    """Several processes, several threads each, one run directory, overlapping screenshots:
    every file whole, every line parses, no episode missing or duplicated (issue 15: two
    writers of one screenshot shared a temporary name and one rename failed)."""
    run = tmp_path / "run"
    RunWriter(run, {"suite": "unit"})
    processes, threads, episodes = 4, 6, 5
    procs = [subprocess.Popen(
        [sys.executable, "-c", _STRESS_SCRIPT.format(tests=str(TESTS_DIR), run=str(run),
                                                      threads=threads, episodes=episodes,
                                                      proc=p)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p in range(processes)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr.decode()[-3000:]

    expected = {f"p{p}-t{t}-e{k}" for p in range(processes) for t in range(threads)
                for k in range(episodes)}
    reader = RunDir(run)
    results = reader.results()
    assert sorted(r.episode_id for r in results) == sorted(expected)  # none lost, none twice
    assert all(r.success and r.steps == 3 for r in results)
    assert set(reader.episode_ids()) == expected
    shas: set[str] = set()
    for episode_id in sorted(expected):
        steps = reader.steps(episode_id)
        assert [s.index for s in steps] == [0, 1, 2]
        assert reader.result(episode_id) is not None
        shas.update(s.observation.screenshot_sha256 for s in steps)
    assert len(shas) == 3 * episodes  # the same screens in every thread and process
    stored = sorted(p.name for p in (run / "screenshots").iterdir())
    # Three step screens and the final one per episode, each stored once; no temporary file.
    assert len(stored) == 4 * episodes and {f"{sha}.png" for sha in shas} <= set(stored)
    for name in stored:
        sha = name.removesuffix(".png")
        assert screenshot_sha256(reader.screenshot(sha)) == sha  # whole PNGs
    for line in (run / "results.jsonl").read_bytes().splitlines():
        json.loads(line)
