"""`cua eval` / `cua run` / `cua demo` argument handling, in process, on the unit suite."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.cli.eval import parse_key_values, policy_options_from
from agent.cli.main import app
from benchmarks import base as suite_registry
from trajectories.store import RunDir

runner = CliRunner()


@pytest.fixture(autouse=True)
def _unit_suite(monkeypatch):
    monkeypatch.setitem(suite_registry._SUITES, "unit", "conftest_loop:ScriptedSuite")


def _eval(*args: str):
    return runner.invoke(app, ["eval", "unit", *args], catch_exceptions=False)


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_eval_runs_records_and_prints_the_table(tmp_path):
    result = _eval("--policy", "oracle", "--tasks", "a,long-3", "--episodes", "2",
                   "--seed", "7", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for needle in ("long-3", "total", "100%", "4 episodes run"):
        assert needle in _text(result)
    assert sorted(r.key for r in RunDir(tmp_path).results()) == [
        "unit/a/7", "unit/a/8", "unit/long-3/7", "unit/long-3/8"]
    manifest = RunDir(tmp_path).manifest()
    assert manifest.config["seed"] == 7 and "argv" in manifest.invocations[0]


def test_eval_resume_message_and_no_duplicates(tmp_path):
    assert _eval("--tasks", "a", "--episodes", "2", "--out", str(tmp_path)).exit_code == 0
    result = _eval("--tasks", "a", "--episodes", "3", "--out", str(tmp_path))
    assert result.exit_code == 0
    assert "2 of 3 episodes already finished" in _text(result)
    assert len(RunDir(tmp_path).results()) == 3


def test_eval_refuses_to_mix_configs(tmp_path):
    assert _eval("--tasks", "a", "--out", str(tmp_path)).exit_code == 0
    result = _eval("--tasks", "a", "--out", str(tmp_path), "--max-steps", "2")
    assert result.exit_code == 2
    assert "different config" in _text(result) and "max_steps" in _text(result)


def test_eval_all_tasks_and_list(tmp_path):
    listed = _eval("--list")
    assert listed.exit_code == 0 and listed.output.split() == ["a", "b", "crash", "long-3"]
    result = _eval("--tasks", "all", "--out", str(tmp_path))
    assert result.exit_code == 0
    assert {r.task_id for r in RunDir(tmp_path).results()} == {"a", "b", "crash", "long-3"}
    assert "EnvironmentCrashed" in _text(result)  # the crash episode is reported


def test_eval_unknown_suite_task_and_policy_are_clear_errors(tmp_path):
    result = runner.invoke(app, ["eval", "nosuch", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown suite 'nosuch'" in _text(result)
    result = _eval("--tasks", "a,zzz", "--out", str(tmp_path / "y"))
    assert result.exit_code == 2 and "zzz" in _text(result)
    result = _eval("--policy", "nope", "--tasks", "a", "--out", str(tmp_path / "z"))
    assert result.exit_code == 2 and "unknown policy 'nope'" in _text(result)


def test_key_value_options_parse_json_values():
    assert parse_key_values(["a=1", "b=true", "c=hello", "d-e=[1,2]"], "x") == {
        "a": 1, "b": True, "c": "hello", "d_e": [1, 2]}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_key_values(["novalue"], "--policy-option")
    assert policy_options_from("m", None, "qwen3", ["temperature=0.5"]) == {
        "model": "m", "dialect": "qwen3", "temperature": 0.5}


def test_run_refuses_the_oracle_and_unknown_envs(tmp_path):
    result = runner.invoke(app, ["run", "--url", "http://127.0.0.1:9/", "--task", "x",
                                 "--policy", "openai", "--env", "phone"])
    assert result.exit_code == 2 and "web, android, desktop" in _text(result)
    result = runner.invoke(app, ["run", "--url", "http://127.0.0.1:9/", "--task", "x",
                                 "--policy", "oracle", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "scripted expert" in _text(result)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_demo_refuses_to_delete_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and (tmp_path / "precious.txt").exists()


def test_demo_refuses_to_replace_a_run_it_did_not_make(tmp_path):
    assert _eval("--tasks", "a", "--out", str(tmp_path)).exit_code == 0
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not a demo run" in _text(result)
    assert len(RunDir(tmp_path).results()) == 1


def test_eval_unknown_prompt_profile_is_a_clear_error(tmp_path):
    result = _eval("--policy", "qwen3vl", "--model", "x", "--prompt-profile", "nope",
                   "--tasks", "a", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "unknown prompt profile 'nope'" in result.output and "osworld-qwen3vl" in result.output
    assert not (tmp_path / "manifest.json").exists()


def test_policy_options_take_the_suite_profile_unless_one_is_named():
    assert policy_options_from(None, None, None, None, None, "qwen3-mobile") == {
        "prompt_profile": "qwen3-mobile"}
    assert policy_options_from(None, None, None, ["prompt_profile=gui-owl"], None,
                               "qwen3-mobile")["prompt_profile"] == "gui-owl"
    assert policy_options_from(None, None, None, None, "OSWorld-Qwen3VL", None) == {
        "prompt_profile": "osworld-qwen3vl"}
