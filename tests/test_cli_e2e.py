"""End to end on real Chromium: `cua eval miniwob` killed and resumed, a browser killed
mid-episode, `cua demo`, and `cua run` on a local page."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest_loop import count_lines, wait_for
from typer.testing import CliRunner

from actions.contracts import EpisodeState, PolicyOutput
from actions.models import Answer, Click
from agent.cli.main import app
from agent.config import RunConfig
from agent.runner import run_suite
from benchmarks.miniwob import MiniWoBSuite
from policies import registry as policy_registry
from policies.profiles import PROFILES
from trajectories.store import RunDir

pytestmark = pytest.mark.slow
pytest_plugins = ["conftest_policy"]  # tiny_model_dir

REPO = Path(__file__).parent.parent
CUA = [str(Path(sys.executable).parent / "cua")]
TASKS = ["click-test", "click-button", "focus-text"]


def _check_complete_run(run: Path, expected_keys: set[str]) -> None:
    reader = RunDir(run)
    results = reader.results()
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys)), f"duplicated episodes: {sorted(keys)}"
    assert set(keys) == expected_keys
    assert reader.problems == []  # the resume cut any torn line before appending
    assert set(reader.episode_ids()) == {r.episode_id for r in results}
    for result in results:
        assert result.success, result
        assert reader.result(result.episode_id) == result
        steps = reader.steps(result.episode_id)
        assert len(steps) == result.steps
        for step in steps:
            assert reader.screenshot_path(step.observation.screenshot_sha256).exists()


def test_killed_and_resumed_eval_has_no_duplicated_and_no_missing_episodes(tmp_path):
    run = tmp_path / "run"
    command = [*CUA, "eval", "miniwob", "--policy", "oracle", "--tasks", ",".join(TASKS),
               "--episodes", "3", "--seed", "10", "--out", str(run)]
    # Own session: killing the group takes Chromium down with the runner, as a lost
    # machine or an OOM kill of the job would.
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: count_lines(run / "results.jsonl") >= 3 or proc.poll() is not None,
                  240, "3 finished episodes")
        assert proc.poll() is None, proc.stdout.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    finished_before = count_lines(run / "results.jsonl")
    assert 3 <= finished_before < 9

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                             timeout=400)
    output = " ".join(resumed.stdout.split())
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{finished_before} of 9 episodes already finished" in output
    assert f"{9 - finished_before} episodes run, {finished_before} already done" in output
    _check_complete_run(run, {f"miniwob/{t}/{s}" for t in TASKS for s in (10, 11, 12)})
    assert len(RunDir(run).manifest().invocations) == 2


def test_interrupted_eval_closes_cleanly_and_resumes(tmp_path):
    run = tmp_path / "run"
    episodes = 16  # interrupted after 2
    command = [*CUA, "eval", "miniwob", "--policy", "oracle", "--tasks", "click-test",
               "--episodes", str(episodes), "--out", str(run)]
    # Ctrl-C reaches a foreground command at a terminal; a suite started as a background
    # job (`cmd &` in a script, as CI harnesses do) inherits SIGINT ignored, and so would
    # `cua`. Give it the terminal's default disposition.
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: count_lines(run / "results.jsonl") >= 2 or proc.poll() is not None,
                  240, "2 finished episodes")
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:  # it finished every episode before the signal landed
        pytest.fail("the run ended before it could be interrupted; use more episodes")
    assert proc.returncode == 130, output
    assert "run the same command again to resume" in " ".join(output.split())
    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_complete_run(run, {f"miniwob/click-test/{s}" for s in range(episodes)})


class _BrowserKillingOracle:
    """The real MiniWoB oracle, except that in one chosen episode it kills Chromium
    (SIGKILL to the browser process) right after deciding its 2nd action."""

    def __init__(self, oracle, env, victim: str) -> None:
        self.oracle, self.env, self.victim = oracle, env, victim
        self.name = oracle.name
        self.killed_pid: int | None = None

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        outputs = self.oracle.act(states)
        for state in states:
            if state.episode_id == self.victim and state.step_index == 1:
                self.killed_pid = self.env.browser_pid
                os.kill(self.killed_pid, signal.SIGKILL)
        return outputs

    def close(self) -> None:
        self.oracle.close()


class _SuiteWithBrowserKill(MiniWoBSuite):
    def __init__(self, victim: str) -> None:
        super().__init__()
        self.victim = victim
        self.experts: list[_BrowserKillingOracle] = []

    def make_expert(self, env):
        expert = _BrowserKillingOracle(super().make_expert(env), env, self.victim)
        self.experts.append(expert)
        return expert


def test_browser_killed_mid_episode_is_an_error_and_the_run_goes_on(tmp_path):
    suite = _SuiteWithBrowserKill(victim="enter-text_seed1")
    summary = run_suite(RunConfig(
        suite=suite.name, policy="oracle", tasks=["enter-text"], episodes_per_task=3, seed=0,
        output={"out_dir": tmp_path},
    ), suite=suite, show_progress=False)
    assert suite.experts[0].killed_pid is not None
    by_seed = {r.seed: r for r in summary.results}
    assert sorted(by_seed) == [0, 1, 2]
    crashed = by_seed[1]
    assert crashed.terminated_by == "error" and not crashed.success
    assert crashed.error.startswith("EnvironmentCrashed"), crashed.error
    assert crashed.steps == 2
    # The next episode ran on a restarted browser and succeeded.
    assert by_seed[0].success and by_seed[2].success
    steps = RunDir(tmp_path).steps("enter-text_seed1")
    assert len(steps) == 2 and steps[-1].error.startswith("EnvironmentCrashed")
    assert [r.key for r in RunDir(tmp_path).results()].count("miniwob/enter-text/1") == 1


def test_demo_runs_the_oracle_and_prints_the_table(tmp_path):
    out = tmp_path / "demo"
    command = [*CUA, "demo", "--out", str(out), "--episodes", "1"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    text = " ".join(first.stdout.split())
    for task in ("click-test", "click-button", "enter-text", "click-checkboxes", "login-user"):
        assert task in text
    assert "total" in text and "100%" in text
    # Again: a fresh run replaces the old one (same episodes, new records).
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "already finished" not in second.stdout
    _check_complete_run(out, {f"miniwob/{t}/0" for t in (
        "click-test", "click-button", "enter-text", "click-checkboxes", "login-user")})


_PAGE = """<!doctype html><html><body style="margin:0">
<button id="go" style="position:absolute;left:40px;top:30px;width:100px;height:40px"
 onclick="window.clicked = true; document.title = 'clicked'">Go</button></body></html>"""


class ClickThenAnswer:
    """A model-free policy for `cua run`: clicks the button at (90, 50), then answers."""

    name = "click-then-answer"

    def __init__(self, **options) -> None:
        self.options = options

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        return [PolicyOutput(raw_text="click", actions=[Click(x=90, y=50)])
                if s.step_index == 0 else
                PolicyOutput(raw_text="answer", actions=[Answer(text=s.observation.url or "")])
                for s in states]

    def close(self) -> None:
        pass


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep the test output clean
        pass


@pytest.fixture
def local_site(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text(_PAGE)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def test_run_one_web_task_with_a_registered_policy(tmp_path, local_site, monkeypatch):
    monkeypatch.setitem(policy_registry._POLICIES, "click-then-answer",
                        "test_cli_e2e:ClickThenAnswer")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--env", "web", "--url", local_site, "--task", "Press Go", "--policy",
        "click-then-answer", "--model", "none", "--viewport", "320x200", "--out", str(out),
        "--success-js", "() => window.clicked === true", "--allow-domain", "127.0.0.1"])
    assert result.exit_code == 0, result.output
    assert re.search(r"success\W+True", result.output)
    assert re.search(r"terminated_by\W+answer", result.output)
    (record,) = RunDir(out).results()
    assert record.success and record.reward == 1.0 and record.steps == 2
    assert record.answer == local_site
    steps = RunDir(out).steps(record.episode_id)
    assert steps[0].observation.screen_size.width == 320
    assert steps[0].executions[0].observation.settle_s is not None
    manifest = RunDir(out).manifest()
    # cua run names the web suite's default prompt profile in the manifest.
    assert manifest.config["policy_options"] == {"model": "none",
                                                 "prompt_profile": "qwen3-computer-use"}
    assert manifest.config["env_options"]["allowed_domains"] == ["127.0.0.1"]


def test_eval_with_the_tiny_qwen3vl_batches_and_records_tokens(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "eval", "miniwob", "--policy", "qwen3vl", "--model", str(tiny_model_dir),
        "--policy-option", "max_new_tokens=16", "--tasks", "click-test", "--episodes", "2",
        "--num-envs", "2", "--max-steps", "1", "--out", str(out),
        # a batch waits (up to 30 s) until both episodes ask: one act() call, however
        # slowly the second browser starts on a loaded machine
        "--backend-option", "batch_wait_s=30"])
    assert result.exit_code == 0, result.output
    reader = RunDir(out)
    results = reader.results()
    assert len(results) == 2 and all(r.error is None for r in results)
    assert all(r.terminated_by in {"max_steps", "parse_errors", "done"} for r in results)
    first_steps = [reader.steps(r.episode_id)[0] for r in results]
    # Both episodes' first step came from one batched act() call: the model's wall time
    # of that call is on both outputs.
    assert first_steps[0].output.latency_s == first_steps[1].output.latency_s
    for step in first_steps:
        output = step.output
        assert output.prompt_token_ids and output.response_token_ids
        assert len(output.response_logprobs or []) == len(output.response_token_ids)
        assert output.images and output.images[-1].sha256 == step.observation.screenshot_sha256
        refs = [item["sha256"] for message in output.messages
                for item in (message["content"] if isinstance(message["content"], list)
                             else []) if item.get("type") == "image"]
        assert refs and all(reader.screenshot_path(sha).exists() for sha in refs)
        # Every step names its prompt profile (miniwob's default) and the finish reason.
        assert output.prompt_profile == "qwen3-computer-use"
        assert output.prompt_profile_hash == PROFILES["qwen3-computer-use"].template_hash()
        assert output.finish_reason in {"stop", "length"}
    manifest = reader.manifest()
    assert manifest.config["policy_options"]["model"] == str(tiny_model_dir)
    assert manifest.config["policy_options"]["prompt_profile"] == "qwen3-computer-use"
