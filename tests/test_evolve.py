"""`cua evolve`: judging (environment reward, step critic), and a real two-round run
(oracle seed round, tiny Qwen3-VL trained and evaluated on MiniWoB in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.evolve import (
    CriticItem,
    EvolveOptions,
    QwenVLCritic,
    Verdict,
    critic_messages,
    judge_run,
    parse_verdict,
)
from trajectories.store import RunDir

pytest_plugins = ["conftest_policy", "conftest_export"]


def test_parse_verdict() -> None:
    assert parse_verdict("HARMFUL") == "HARMFUL"
    assert parse_verdict("The step was good.") == "GOOD"
    assert parse_verdict("neutral, then GOOD") == "NEUTRAL"  # the first verdict word
    assert parse_verdict("goodness knows") == "NEUTRAL"  # whole words only
    assert parse_verdict("") == "NEUTRAL"


class ClickTestIsHarmful:
    """A rule-based judge: every step on a click-test page is HARMFUL, others GOOD."""

    def __init__(self) -> None:
        self.seen: list[CriticItem] = []

    def judge(self, items: list[CriticItem]) -> list[tuple[Verdict, str]]:
        self.seen += items
        return [("HARMFUL" if "Click the button" in i.instruction else "GOOD", "rule")
                for i in items]

    def close(self) -> None:
        pass


def test_judging_drops_failures_and_harmful_episodes(oracle_run: Path) -> None:
    run = RunDir(oracle_run)
    results = run.results()
    options = EvolveOptions(tasks=("click-test", "click-button"), model="unused",
                            out=oracle_run.parent / "unused")
    critic = ClickTestIsHarmful()
    verdicts = judge_run(run, results, options, critic)
    assert len(verdicts) == len(results) == 8
    assert len(critic.seen) == 8  # one item per step of every successful episode
    assert all(item.after_png and item.before_png != item.after_png for item in critic.seen)
    for verdict in verdicts:
        harmful = verdict.task_id == "click-test"
        assert verdict.kept is not harmful
        assert [j.verdict for j in verdict.steps] == (["HARMFUL"] if harmful else ["GOOD"])
    lenient = options.model_copy(update={"max_harmful_steps": 1})
    assert all(v.kept for v in judge_run(run, results, lenient, critic))
    strict = options.model_copy(update={"min_reward": 2.0})
    assert not any(v.kept for v in judge_run(run, results, strict, None))


@pytest.mark.slow
def test_qwen_vl_critic_answers_one_verdict_per_step(oracle_run: Path,
                                                     tiny_model_dir: Path) -> None:
    run = RunDir(oracle_run)
    step = run.steps(run.episode_ids()[0])[0]
    png = run.screenshot(step.observation.screenshot_sha256)
    items = [CriticItem(instruction="Click the button.", action_text="click", before_png=png,
                        after_png=png),
             CriticItem(instruction="Click the button.", action_text="click", before_png=png,
                        after_png=None)]
    assert sum(i["type"] == "image" for i in critic_messages(items[0])[1]["content"]) == 2
    critic = QwenVLCritic(str(tiny_model_dir), device="cpu", max_new_tokens=3)
    try:
        answers = critic.judge(items)
    finally:
        critic.close()
    assert len(answers) == 2
    for verdict, raw in answers:
        assert verdict in ("GOOD", "NEUTRAL", "HARMFUL") and verdict == parse_verdict(raw)


@pytest.mark.slow
def test_evolve_two_rounds_from_oracle_seed(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "evolve"
    args = ["evolve", "--suite", "miniwob", "--tasks", "click-test", "--model",
            str(tiny_model_dir), "--out", str(out), "--rounds", "2", "--group", "2",
            "--seed-policy", "oracle", "--eval-episodes", "1", "--max-steps", "1",
            "--no-thought", "--policy-option", "greedy=true",
            "--policy-option", "max_new_tokens=4", "--policy-option", "device=cpu",
            "--train-option", "epochs=1", "--train-option", "learning_rate=0.002",
            "--train-option", "device=cpu"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "success rate per task per round" in result.output
    summary = json.loads((out / "evolve.json").read_text())
    first, second = summary["rounds"]
    assert first["rollout_policy"] == "oracle" and first["rollout_success"] == {"click-test": 1.0}
    assert first["kept_episodes"] == 2 and first["samples"] == 2
    assert first["checkpoint_out"] == str(out / "round-0" / "checkpoint")
    assert set(first["eval_success"]) == {"click-test"}
    # round 1 rolls out the round-0 checkpoint on fresh seeds (2, 3)
    assert second["rollout_policy"] == "qwen3vl"
    assert second["checkpoint_in"] == first["checkpoint_out"]
    manifest = RunDir(out / "round-1" / "rollouts").manifest()
    assert manifest.config["policy_options"]["model"] == first["checkpoint_out"]
    seeds = sorted(r.seed for r in RunDir(out / "round-1" / "rollouts").results())
    assert seeds == [2, 3]
    verdicts = [json.loads(line) for line in
                (out / "round-0" / "verdicts.jsonl").read_text().splitlines()]
    assert [v["kept"] for v in verdicts] == [True, True]
    # 4 new tokens cannot hold a tool call: round 1 keeps nothing and trains nothing
    assert second["kept_episodes"] == 0 and second["checkpoint_out"] is None
    # the same command resumes: nothing is rolled out or trained again
    mtime = (out / "round-0" / "checkpoint" / "model.safetensors").stat().st_mtime
    again = CliRunner().invoke(app, args, terminal_width=200)
    assert again.exit_code == 0, again.output
    assert (out / "round-0" / "checkpoint" / "model.safetensors").stat().st_mtime == mtime
    assert "already finished" in again.output
