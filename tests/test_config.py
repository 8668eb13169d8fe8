"""RunConfig: one description of a run — built by the CLI, stored in the manifest, compared
on resume, run again from a file (`cua eval --config FILE`)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import ConfigFileError, PolicyOptions, RunConfig, load_run_config
from agent.safety import SafetyRules
from benchmarks import base as suite_registry
from trajectories.store import RunDir

runner = CliRunner()


@pytest.fixture(autouse=True)
def _unit_suite(monkeypatch):
    monkeypatch.setitem(suite_registry._SUITES, "unit", "conftest_loop:ScriptedSuite")


def _text(result) -> str:
    return " ".join(result.output.split())


def test_policy_options_gather_sampling_and_keep_the_rest():
    options = PolicyOptions(model="m", temperature=0.0, greedy=True, max_new_tokens=64)
    assert options.sampling == {"temperature": 0.0, "greedy": True}
    assert options.factory_options() == {"model": "m", "temperature": 0.0, "greedy": True,
                                         "max_new_tokens": 64}
    assert PolicyOptions(api_key="sk-1").stored() == {"api_key": "<redacted>"}
    with pytest.raises(ValidationError, match="unknown sampling setting"):
        PolicyOptions(sampling={"temprature": 1})


def test_secret_looking_environment_and_suite_options_are_redacted_in_the_manifest(tmp_path):
    config = RunConfig(suite="osworld", tasks="all",
                       env_options={"client_password": "hunter2", "screen": "1920x1080"},
                       suite_options={"api_token": "t0k"})
    stored = config.stored()
    assert stored["env_options"] == {"client_password": "<redacted>", "screen": "1920x1080"}
    assert stored["suite_options"] == {"api_token": "<redacted>"}
    assert "hunter2" not in json.dumps(stored) and "t0k" not in json.dumps(stored)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(stored))
    with pytest.raises(ConfigFileError, match=r"env_options\.client_password"):
        load_run_config(path)


def test_config_round_trips_through_json_and_splits_task_lists():
    config = RunConfig(suite="unit", tasks="a, long-3", episodes_per_task=2, policy="openai",
                       policy_options={"model": "m", "top_p": 0.5},
                       limits={"max_steps": 4}, engine={"workers": 2, "backend": "ray"},
                       safety=SafetyRules(refused_actions=["click"]),
                       output={"out_dir": "runs/x"})
    assert config.tasks == ["a", "long-3"]
    again = RunConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert config.updated(seed=3, **{"engine.workers": 1}).engine.workers == 1
    with pytest.raises(ValidationError, match="not both"):
        RunConfig(suite="unit", engine={"workers": 2, "num_envs": 2})
    with pytest.raises(ValidationError, match="extra"):
        RunConfig(suite="unit", max_step=3)  # a typo is an error, not a silent default


def test_identity_leaves_out_what_may_change_on_resume():
    base = RunConfig(suite="unit", tasks=["a"])
    grown = base.updated(tasks=["a", "b"], episodes_per_task=3,
                         **{"engine.num_envs": 2, "output.fsync": False})
    assert grown.identity() == base.identity()
    assert base.updated(**{"limits.max_steps": 2}).identity() != base.identity()


def test_eval_config_file_runs_and_the_manifest_reruns(tmp_path):
    config = RunConfig(suite="unit", tasks=["a", "long-3"], episodes_per_task=2,
                       limits={"max_steps": 5}, safety=SafetyRules(refused_actions=["key"]),
                       output={"out_dir": str(tmp_path / "run")})
    path = tmp_path / "run.json"
    path.write_text(config.model_dump_json(indent=2))
    result = runner.invoke(app, ["eval", "--config", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 episodes run" in _text(result)
    manifest = RunDir(tmp_path / "run").manifest()
    assert manifest.config == config.stored()
    # The manifest is a config: running it into a new directory runs the same episodes.
    result = runner.invoke(app, ["eval", "--config", str(tmp_path / "run" / "manifest.json"),
                                 "--out", str(tmp_path / "again")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (sorted(r.key for r in RunDir(tmp_path / "again").results())
            == sorted(r.key for r in RunDir(tmp_path / "run").results()))
    again = RunDir(tmp_path / "again").manifest().config
    assert again["safety"] == manifest.config["safety"] and again["limits"]["max_steps"] == 5


def test_the_config_file_shown_in_running_md_is_a_valid_run_config():
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "running.md").read_text()
    block = page.split("```json\n", 1)[1].split("```", 1)[0]
    config = RunConfig.model_validate_json(block)
    assert config.policy_options.sampling == {"temperature": 0.0}
    assert config.engine.workers == 4


def test_eval_config_refuses_flags_beside_it_and_bad_files(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(RunConfig(suite="unit", tasks=["a"]).model_dump_json())
    beside = runner.invoke(app, ["eval", "--config", str(path), "--max-steps", "3",
                                 "--policy", "qwen3vl"])
    assert beside.exit_code == 2
    assert "--max-steps, --policy given beside --config" in _text(beside)
    other = runner.invoke(app, ["eval", "desktop", "--config", str(path)])
    assert other.exit_code == 2 and "differs from the config's suite 'unit'" in _text(other)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "suite": "unit", "limits": {"max_steps": 0}}))
    result = runner.invoke(app, ["eval", "--config", str(bad)])
    assert result.exit_code == 2 and "limits.max_steps" in _text(result)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"suite": "unit"}))
    with pytest.raises(ConfigFileError, match="config version None"):
        load_run_config(old)
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_run_config(tmp_path / "missing.json")
