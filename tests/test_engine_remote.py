"""The engine on remote environments: `--backend remote` leases environments of a real
environment service (FastAPI + uvicorn on loopback, agent.service.server) through
agent.service.remote_host.RemoteHost. Plumbing: the service hosts our scripted environment."""

from __future__ import annotations

import io

import pytest
from conftest_loop import CLICK, TERMINATE, ScriptedEnv, ScriptedPolicy, out
from rich.console import Console

from agent.config import RunConfig
from agent.runner import run_suite
from benchmarks.miniwob import MiniWoBSuite
from tests.conftest_env_service import TOKEN, running_service
from trajectories.store import RunDir


class _ScriptedMiniWoB(MiniWoBSuite):
    """MiniWoB's task list on scripted environments (no browser)."""

    def make_environment(self, **options):
        return ScriptedEnv()


def test_a_suite_runs_on_leased_remote_environments_and_resumes(tmp_path):
    suite = _ScriptedMiniWoB()
    with running_service(suite=suite, max_envs=2) as (url, app):
        options = {"url": url, "token": TOKEN}
        policy = ScriptedPolicy([out(CLICK), out(TERMINATE)])
        first = run_suite(RunConfig(
            suite=suite.name, policy="scripted", tasks=["click-test"], episodes_per_task=2, seed=0,
            engine={"workers": 2, "backend": "remote", "options": options},
            output={"out_dir": tmp_path / "run"},
        ), suite=suite, policy=policy, console=Console(file=io.StringIO()))
        again = run_suite(RunConfig(
            suite=suite.name, policy="scripted", tasks=["click-test", "click-button"],
            episodes_per_task=2, seed=0,
            engine={"workers": 2, "backend": "remote", "options": options},
            output={"out_dir": tmp_path / "run"},
        ), suite=suite, policy=policy, console=Console(file=io.StringIO()))
        assert len(app.state.pool.slots) == 2  # two environments served, reused
    assert (first.ran, again.ran, again.skipped) == (2, 2, 2)
    results = RunDir(tmp_path / "run").results()
    assert len(results) == 4 and all(r.success and r.steps == 2 for r in results)
    assert all(r.terminated_by == "terminate" for r in results)


def test_remote_backend_needs_a_url_and_a_token_and_a_model_policy(tmp_path, monkeypatch):
    monkeypatch.delenv("CUA_ENV_TOKEN", raising=False)
    suite = _ScriptedMiniWoB()
    policy = ScriptedPolicy([out(TERMINATE)])
    quiet = Console(file=io.StringIO())
    with pytest.raises(ValueError, match="url="):
        run_suite(RunConfig(
            suite=suite.name, policy="scripted", tasks=["click-test"], episodes_per_task=1, seed=0,
            engine={"workers": 1, "backend": "remote"}, output={"out_dir": tmp_path / "a"},
        ), suite=suite, policy=policy, console=quiet)
    with pytest.raises(ValueError, match="CUA_ENV_TOKEN"):
        run_suite(RunConfig(
            suite=suite.name, policy="scripted", tasks=["click-test"], episodes_per_task=1, seed=0,
            engine={"workers": 1, "backend": "remote", "options": {"url": "http://127.0.0.1:9"}},
            output={"out_dir": tmp_path / "b"},
        ), suite=suite, policy=policy, console=quiet)
    with pytest.raises(ValueError, match="model policy"):
        run_suite(RunConfig(
            suite=suite.name, policy="oracle", tasks=["click-test"], episodes_per_task=1, seed=0,
            engine={"workers": 1, "backend": "remote", "options": {"url": "http://127.0.0.1:9"}},
            output={"out_dir": tmp_path / "c"},
        ), suite=suite, console=quiet)
