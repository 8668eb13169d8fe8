"""Fault injection: for each fault the run completes or stops with a clear error,
results.jsonl has exactly one line per finished episode, no trajectory file is torn or
corrupt, and a resume finishes the rest.

Faults: a worker process killed mid-episode, a worker that hangs, the browser killed
mid-episode, a policy server answering 500s / timing out / sending garbage, adversarial
model outputs through the real client, parser and loop, and a full output disk.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest_faults import ADVERSARIAL_OUTPUTS, FakeChatServer
from conftest_loop import ScriptedPolicy, out
from conftest_workers import WorkerSuite, wait_for
from rich.console import Console

from actions.models import Click
from agent.config import RunConfig
from agent.runner import RunAborted, run_suite
from trajectories.record import EpisodeRecord, EpisodeResult, StepRecord
from trajectories.store import RunDir

REPO = Path(__file__).resolve().parent.parent


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=150)


def check_run_files(run: Path, *, allow_unfinished: bool = True) -> list[EpisodeResult]:
    """Every record file parses completely (no torn or corrupt line anywhere), results
    have one line per episode, and each finished episode's files agree with its line."""
    results = [EpisodeResult.model_validate_json(line)
               for line in (run / "results.jsonl").read_bytes().split(b"\n") if line]
    assert (run / "results.jsonl").read_bytes().endswith(b"\n")
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys)), f"duplicate result lines: {sorted(keys)}"
    for episode_dir in (run / "episodes").iterdir():
        if (episode_dir / "episode.json").exists():  # atomic: whole or absent
            EpisodeRecord.model_validate_json((episode_dir / "episode.json").read_bytes())
        steps_file = episode_dir / "steps.jsonl"
        data = steps_file.read_bytes() if steps_file.exists() else b""
        assert data == b"" or data.endswith(b"\n"), f"torn {steps_file}"
        steps = [StepRecord.model_validate_json(line) for line in data.split(b"\n") if line]
        finished = [r for r in results if r.episode_id == episode_dir.name]
        if finished:
            assert len(steps) == finished[0].steps
            assert EpisodeResult.model_validate_json(
                (episode_dir / "result.json").read_bytes()) == finished[0]
        else:
            assert allow_unfinished, f"{episode_dir.name} has no result line"
    for png in (run / "screenshots").iterdir():
        assert png.name.endswith(".png") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return results


# --------------------------------------------------------------------------- workers


def test_worker_killed_mid_episode_is_restarted_and_resume_reruns_the_episode(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    run = tmp_path / "run"
    tasks = ["a", "gate", "b", "long-3"]
    config = RunConfig(suite="unit", tasks=tasks, episodes_per_task=2,
                       env_options={"gate_dir": str(gate)}, engine={"workers": 2},
                       output={"out_dir": run})
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        summary=run_suite(config, suite=WorkerSuite(), console=_quiet())))
    thread.start()
    wait_for(lambda: (gate / "pid-0").exists(), 60, "the gate episode to start its step")
    os.kill(int((gate / "pid-0").read_text()), signal.SIGKILL)
    # The other gate episode (seed 1) blocks too: kill that worker as well.
    wait_for(lambda: (gate / "pid-1").exists(), 60, "the second gate episode")
    os.kill(int((gate / "pid-1").read_text()), signal.SIGKILL)
    thread.join(timeout=120)
    summary = outcome["summary"]
    assert summary.complete and summary.ran == 8
    results = check_run_files(run)
    errors = sorted(r.key for r in results if r.error)
    assert errors == ["unit/gate/0", "unit/gate/1"]
    assert all("WorkerDied" in r.error and "signal 9" in r.error
               for r in results if r.error)
    assert sum(r.success for r in results) == 6
    # Resume: the errored episodes run again (the gate now open) and succeed.
    (gate / "release").touch()
    again = run_suite(config.updated(**{"engine.retry_errors": True}), suite=WorkerSuite(),
                      console=_quiet())
    assert (again.ran, again.skipped) == (2, 6)
    results = check_run_files(run, allow_unfinished=False)
    assert len(results) == 8 and all(r.success for r in results)


def test_hung_worker_is_killed_after_its_call_timeout(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    run = tmp_path / "run"
    config = RunConfig(suite="unit", tasks=["a", "gate"], env_options={"gate_dir": str(gate)},
                       engine={"workers": 2, "options": {"call_timeout_s": 2.0}},
                       output={"out_dir": run})
    summary = run_suite(config, suite=WorkerSuite(), console=_quiet())
    results = check_run_files(run)
    by_task = {r.task_id: r for r in results}
    assert summary.complete and by_task["a"].success
    assert by_task["gate"].error.startswith("WorkerHung: worker")
    (gate / "release").touch()
    run_suite(config.updated(**{"engine.retry_errors": True}), suite=WorkerSuite(),
              console=_quiet())
    assert all(r.success for r in check_run_files(run, allow_unfinished=False))


# --------------------------------------------------------------------------- browser


def _our_browsers() -> list:
    """The main Chromium processes (not their renderers) our environments started."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            args = child.cmdline()
        except psutil.Error:
            continue
        if any(a.startswith("--qwen-cua-instance") for a in args) and not any(
                a.startswith("--type=") for a in args):
            found.append(child)
    return found


class _KillsBrowsers(ScriptedPolicy):
    """Clicks; on its 2nd call SIGKILLs every Chromium the run's workers started (a
    browser some other test of this process left open is not the run's)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.before = {p.pid for p in _our_browsers()}

    def act(self, states):
        outputs = super().act(states)
        if len(self.batches) == 2:
            killed = 0
            for child in _our_browsers():
                if child.pid not in self.before:
                    child.kill()
                    killed += 1
            assert killed == 2, f"expected the 2 workers' browsers, killed {killed}"
        return outputs


@pytest.mark.slow
def test_browser_killed_mid_episode_in_workers(tmp_path):
    run = tmp_path / "run"
    policy = _KillsBrowsers([out(Click(x=80, y=105))], name="clicker")
    summary = run_suite(RunConfig(
        suite="miniwob", policy="scripted", tasks=["click-test"], episodes_per_task=4, seed=0,
        limits={"max_steps": 3}, engine={"workers": 2}, output={"out_dir": run},
    ), policy=policy, console=_quiet())
    results = check_run_files(run)
    assert summary.complete
    crashed = [r for r in results if r.error]
    assert len(crashed) == 2, [r.error for r in results]
    assert all(r.error.startswith("EnvironmentCrashed: browser crashed") for r in crashed)
    assert all(r.error is None for r in results if r not in crashed)  # browsers restarted
    again = run_suite(RunConfig(
        suite="miniwob", policy="scripted", tasks=["click-test"], episodes_per_task=4, seed=0,
        limits={"max_steps": 3}, engine={"workers": 2, "retry_errors": True},
        output={"out_dir": run},
    ), policy=ScriptedPolicy([out(Click(x=80, y=105))], name="clicker"), console=_quiet())
    assert again.ran == 2
    assert all(r.error is None for r in check_run_files(run, allow_unfinished=False))


# --------------------------------------------------------------------------- policy server


@pytest.fixture
def fake_chat_server():
    server = FakeChatServer()
    yield server
    server.close()


def _openai(server, **extra) -> dict:
    return {"base_url": server.base_url, "model": "fake", "timeout_s": 1.0, "max_retries": 1,
            **extra}


def test_policy_server_500s_then_timeouts_then_recovery(tmp_path, fake_chat_server):
    server = fake_chat_server
    run = tmp_path / "run"
    tasks = ["a", "b", "long-3"]
    config = RunConfig(suite="unit", policy="openai", tasks=tasks, episodes_per_task=2,
                       policy_options=_openai(server), engine={"workers": 2},
                       output={"out_dir": run})

    def run_it(**changes):
        return run_suite(config.updated(**changes), suite=WorkerSuite(), console=_quiet())

    server.set_mode("500")
    with pytest.raises(RunAborted, match="in a row ended with an error"):
        run_it(**{"engine.max_consecutive_errors": 2})
    results = check_run_files(run)
    assert 2 <= len(results) <= 3
    assert all("PolicyBackendError" in r.error and "HTTP 500" in r.error for r in results)

    server.set_mode("hang")
    summary = run_it(**{"engine.retry_errors": True, "engine.max_consecutive_errors": 0})
    server.release()
    assert summary.complete
    results = check_run_files(run)
    assert all("timed out" in r.error for r in results)

    server.set_mode("garbage")
    summary = run_it(tasks=tasks[:1], episodes_per_task=1,
                     **{"output.out_dir": tmp_path / "garbage", "engine.max_consecutive_errors": 0})
    assert "not JSON" in summary.results[0].error

    server.set_mode("ok")
    summary = run_it(**{"engine.retry_errors": True})
    results = check_run_files(run, allow_unfinished=False)
    assert summary.complete and len(results) == 6 and all(r.success for r in results)


def test_adversarial_model_outputs_through_client_parser_and_loop(tmp_path, fake_chat_server):
    fake_chat_server.set_mode("adversarial")
    run = tmp_path / "run"
    summary = run_suite(RunConfig(
        suite="unit", policy="openai", tasks=["long-3"], episodes_per_task=3, seed=0,
        policy_options=_openai(fake_chat_server, timeout_s=30.0),
        limits={"max_steps": len(ADVERSARIAL_OUTPUTS), "max_parse_failures": 100},
        engine={"workers": 2, "max_consecutive_errors": 0}, output={"out_dir": run},
    ), suite=WorkerSuite(), console=_quiet())
    assert summary.complete
    results = check_run_files(run, allow_unfinished=False)
    assert len(results) == 3
    reader = RunDir(run)
    raw_texts = [step.output.raw_text for r in results for step in reader.steps(r.episode_id)]
    assert fake_chat_server.requests == len(raw_texts) >= len(ADVERSARIAL_OUTPUTS)
    assert any(len(t) >= 2_000_000 for t in raw_texts)  # the huge string is kept whole
    for result in results:
        assert result.error is None, result.error
        for step in reader.steps(result.episode_id):
            for action in step.output.actions:  # whatever parsed is a valid, in-range action
                for name in ("x", "y"):
                    value = getattr(action, name, None)
                    assert value is None or 0 <= value < 10_000


# --------------------------------------------------------------------------- full disk


def _small_filesystem(path: Path, size_kb: int) -> bool:
    """Mount a tmpfs of `size_kb` at `path` (True), or False if this machine cannot."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                           str(path)], capture_output=True)
    return done.returncode == 0


def _cua_eval(run: Path, *args: str, fsize_limit: int | None = None) -> subprocess.CompletedProcess:
    """`cua eval unit-workers ...` in a subprocess (the test suite registered first)."""
    code = ("import sys; from benchmarks.base import register_suite; "
            "register_suite('unit-workers', 'conftest_workers:WorkerSuite'); "
            "from agent.cli.main import app; sys.argv[0] = 'cua'; app()")

    def limit() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-c", code, "eval", "unit-workers", "--tasks", "long-3",
         "--episodes", "30", "--out", str(run), "--workers", "2", *args],
        capture_output=True, text=True, env=env, timeout=240,
        preexec_fn=limit if fsize_limit else None)


def test_full_disk_stops_the_run_cleanly_and_resume_finishes(tmp_path):
    mount = tmp_path / "quota"
    mounted = _small_filesystem(mount, 160)
    try:
        run = mount / "run"
        # Without mount rights (not root), a per-file size limit plays the full disk.
        done = _cua_eval(run, fsize_limit=None if mounted else 6000)
        output = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
        assert done.returncode == 1, output
        assert "cannot write the run directory" in output
        assert ("No space left on device" if mounted else "File too large") in output
        results = check_run_files(run)
        assert 0 < len(results) < 30
        assert all(r.success for r in results)
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)
        done = _cua_eval(run)
        assert done.returncode == 0, done.stdout + done.stderr
        results = check_run_files(run, allow_unfinished=False)
        assert len(results) == 30 and all(r.success for r in results)
        assert len(json.loads((run / "manifest.json").read_text())["invocations"]) == 2
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


# --------------------------------------------------------------------------- local model

CONTROL_TOKENS = "<|image_pad|><|vision_start|><|image_pad|><|vision_end|><|im_end|><|im_start|>"


class _FirstOutputHasControlTokens:
    """A real tiny Qwen3-VL whose first output (per episode) is replaced by a click whose
    text holds Qwen control tokens, as a random or attacked model may write them."""

    name = "tiny"

    def __init__(self, inner) -> None:
        self.inner = inner

    def act(self, states):
        from actions.contracts import PolicyOutput

        outputs = self.inner.act(states)
        return [PolicyOutput(raw_text=f"{CONTROL_TOKENS} click", actions=[Click(x=5, y=5)])
                if state.step_index == 0 else output
                for state, output in zip(states, outputs, strict=True)]

    def close(self) -> None:
        self.inner.close()


@pytest.mark.slow
def test_control_tokens_in_model_output_do_not_break_the_local_model(tmp_path):
    from policies.qwen3vl import Qwen3VLPolicy
    from policies.tiny import build_tiny_qwen3vl

    model = build_tiny_qwen3vl(tmp_path / "tiny")
    policy = _FirstOutputHasControlTokens(Qwen3VLPolicy.from_options(
        model=str(model), device="cpu", max_new_tokens=8))
    run = tmp_path / "run"
    summary = run_suite(RunConfig(
        suite="unit", policy="scripted", tasks=["long-3"], episodes_per_task=2, seed=0,
        limits={"max_steps": 3, "max_parse_failures": 3}, engine={"workers": 2},
        output={"out_dir": run},
    ), suite=WorkerSuite(), policy=policy, console=_quiet())
    results = check_run_files(run, allow_unfinished=False)
    assert summary.complete and all(r.error is None for r in results), results
    step = RunDir(run).steps(results[0].episode_id)[1]
    prompt = json.dumps(step.output.messages)
    assert "<image_pad><vision_start>" in prompt and "<|image_pad|><|vision" not in prompt
