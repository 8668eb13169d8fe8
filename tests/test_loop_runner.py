"""The rollout runner: planning, resume, config checks, errors, batching, the table."""

from __future__ import annotations

import io

import pytest
from conftest_loop import CLICK, TERMINATE, ScriptedPolicy, ScriptedSuite, out
from rich.console import Console

from agent.config import RunConfig
from agent.runner import (
    RunAborted,
    episode_id_for,
    plan_episodes,
    print_summary,
    redact_options,
    run_suite,
)
from trajectories.store import RunConfigMismatch, RunDir, RunWriter


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def _keys(path) -> list[str]:
    return sorted(r.key for r in RunDir(path).results())


def test_plan_covers_tasks_seeds_and_samples_with_stable_ids():
    planned = plan_episodes(ScriptedSuite(), ["a", "b"], 2, 5, samples_per_seed=2)
    assert [p.key for p in planned] == [
        "unit/a/5", "unit/a/5/1", "unit/a/6", "unit/a/6/1",
        "unit/b/5", "unit/b/5/1", "unit/b/6", "unit/b/6/1"]
    assert planned[1].episode_id == "a_seed5_sample1"
    assert len({p.episode_id for p in planned}) == len(planned)
    with pytest.raises(KeyError, match="nope"):
        plan_episodes(ScriptedSuite(), ["a", "nope"], 1, 0)


def test_episode_ids_are_directory_safe_and_unique():
    assert episode_id_for("click-test", 3) == "click-test_seed3"
    weird = [episode_id_for(t, 0) for t in ("a/b", "a_b", "a b")]
    assert len(set(weird)) == 3 and all("/" not in w and " " not in w for w in weird)


def test_run_suite_records_every_episode_and_resume_skips_them(tmp_path):
    suite = ScriptedSuite()
    summary = run_suite(RunConfig(
        suite=suite.name, policy="oracle", tasks=["a", "long-3"], episodes_per_task=2, seed=0,
        output={"out_dir": tmp_path / "run"},
    ), suite=suite, console=_quiet())
    assert (summary.planned, summary.ran, summary.skipped) == (4, 4, 0)
    assert summary.complete and all(r.success for r in summary.results)
    assert [(s.task_id, s.episodes, s.mean_steps) for s in summary.per_task()] == [
        ("a", 2, 1.0), ("long-3", 2, 3.0)]
    again = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a", "long-3"], episodes_per_task=2, seed=0,
        output={"out_dir": tmp_path / "run"},
    ), suite=ScriptedSuite(), console=_quiet())
    assert (again.ran, again.skipped, len(again.results)) == (0, 4, 4)
    # More episodes into the same run: only the new seeds run.
    more = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a", "long-3"], episodes_per_task=3, seed=0,
        output={"out_dir": tmp_path / "run"},
    ), suite=ScriptedSuite(), console=_quiet())
    assert (more.ran, more.skipped) == (2, 4)
    assert _keys(tmp_path / "run") == sorted(
        f"unit/{t}/{s}" for t in ("a", "long-3") for s in range(3))
    manifest = RunDir(tmp_path / "run").manifest()
    assert manifest.config["policy"] == "oracle" and len(manifest.invocations) == 3


def test_resume_replaces_partial_episode_directories(tmp_path):
    run = tmp_path / "run"
    first = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["long-3"], episodes_per_task=1, seed=0,
        output={"out_dir": run},
    ), suite=ScriptedSuite(), console=_quiet())
    # Fake a killed run: a second episode directory with steps but no result line.
    config = RunDir(run).manifest().config
    writer = RunWriter(run, config)
    partial = run / "episodes" / "long-3_seed1"
    partial.mkdir()
    (partial / "steps.jsonl").write_text("garbage from a killed run\n")
    run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["long-3"], episodes_per_task=2, seed=0,
        output={"out_dir": run},
    ), suite=ScriptedSuite(), console=_quiet())
    reader = RunDir(run)
    assert _keys(run) == ["unit/long-3/0", "unit/long-3/1"]
    assert len(reader.steps("long-3_seed1")) == 3  # rewritten from scratch
    assert reader.results()[0] == first.results[0]
    assert writer.finished_keys() == set(_keys(run))


def test_resume_with_other_settings_is_refused(tmp_path):
    run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a"], episodes_per_task=1, seed=0,
        output={"out_dir": tmp_path},
    ), suite=ScriptedSuite(), console=_quiet())
    with pytest.raises(RunConfigMismatch, match="max_steps"):
        run_suite(RunConfig(
            suite="unit", policy="oracle", tasks=["a"], episodes_per_task=1, seed=0,
            limits={"max_steps": 3}, output={"out_dir": tmp_path},
        ), suite=ScriptedSuite(), console=_quiet())


def test_environment_crash_is_recorded_and_the_run_goes_on(tmp_path):
    suite = ScriptedSuite()
    summary = run_suite(RunConfig(
        suite=suite.name, policy="oracle", tasks=["a", "crash", "b"], episodes_per_task=1, seed=0,
        output={"out_dir": tmp_path},
    ), suite=suite, console=_quiet())
    by_task = {r.task_id: r for r in summary.results}
    assert by_task["crash"].terminated_by == "error"
    assert by_task["crash"].error.startswith("EnvironmentCrashed")
    assert by_task["a"].success and by_task["b"].success
    assert [s.errors for s in summary.per_task()] == [0, 0, 1]
    assert all(env.closed for env in suite.environments)


def test_retry_errors_reruns_only_errored_episodes(tmp_path):
    run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a", "crash"], episodes_per_task=2, seed=0,
        output={"out_dir": tmp_path},
    ), suite=ScriptedSuite(), console=_quiet())
    summary = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a", "crash"], episodes_per_task=2, seed=0,
        engine={"retry_errors": True}, output={"out_dir": tmp_path},
    ), suite=ScriptedSuite(), console=_quiet())
    assert (summary.ran, summary.skipped) == (2, 2)  # the two 'crash' episodes, again
    keys = [r.key for r in RunDir(tmp_path).results()]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 4


def test_consecutive_errors_abort_the_run(tmp_path):
    with pytest.raises(RunAborted, match="3 episodes in a row"):
        run_suite(RunConfig(
            suite="unit", policy="oracle", tasks=["crash"], episodes_per_task=5, seed=0,
            engine={"max_consecutive_errors": 3}, output={"out_dir": tmp_path},
        ), suite=ScriptedSuite(), console=_quiet())
    assert len(RunDir(tmp_path).results()) == 3  # what finished is kept for the resume


def test_several_environments_batch_one_policy(tmp_path):
    policy = ScriptedPolicy([out(CLICK), out(TERMINATE)], name="model")
    suite = ScriptedSuite(tasks=["long-9"])
    summary = run_suite(RunConfig(
        suite=suite.name, policy="scripted", tasks=["long-9"], episodes_per_task=5, seed=0,
        engine={"num_envs": 3}, output={"out_dir": tmp_path},
    ), suite=suite, policy=policy, console=_quiet())
    assert summary.complete and all(r.terminated_by == "terminate" for r in summary.results)
    assert len(suite.environments) == 3
    assert max(len(b) for b in policy.batches) == 3
    assert not policy.closed  # the caller's policy object stays the caller's


def test_experts_on_several_environments_act_on_their_own_environment(tmp_path):
    suite = ScriptedSuite(tasks=["long-2", "long-4"])
    summary = run_suite(RunConfig(
        suite=suite.name, policy="oracle", tasks="all", episodes_per_task=3, seed=0,
        engine={"num_envs": 2}, output={"out_dir": tmp_path},
    ), suite=suite, console=_quiet())
    assert summary.complete and all(r.success for r in summary.results)
    assert {r.steps for r in summary.results if r.task_id == "long-4"} == {4}
    assert all(env.resets for env in suite.environments)


def test_unknown_model_policy_name_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="unknown policy 'nope'"):
        run_suite(RunConfig(
            suite="unit", policy="nope", tasks=["a"], episodes_per_task=1, seed=0,
            output={"out_dir": tmp_path},
        ), suite=ScriptedSuite(), console=_quiet())


def test_secret_policy_options_are_not_written_to_the_manifest(tmp_path):
    assert redact_options({"api_key": "sk-1", "model": "m"}) == {
        "api_key": "<redacted>", "model": "m"}
    policy = ScriptedPolicy([out(TERMINATE)], name="model")
    run_suite(RunConfig(
        suite="unit", policy="scripted", tasks=["a"], episodes_per_task=1, seed=0,
        policy_options={"api_key": "sk-123", "model": "m"}, output={"out_dir": tmp_path},
    ), suite=ScriptedSuite(), policy=policy, console=_quiet())
    text = (tmp_path / "manifest.json").read_text()
    assert "sk-123" not in text and '"model": "m"' in text


def test_results_table_lists_tasks_and_totals(tmp_path):
    summary = run_suite(RunConfig(
        suite="unit", policy="oracle", tasks=["a", "crash"], episodes_per_task=2, seed=0,
        output={"out_dir": tmp_path},
    ), suite=ScriptedSuite(), console=_quiet())
    console = Console(file=io.StringIO(), width=120)
    print_summary(summary, console)
    text = console.file.getvalue()
    for needle in ("task", "success rate", "mean reward", "mean steps", "errors", "crash",
                   "total", "50%", "4 episodes run"):
        assert needle in text
