"""The learning loop (`benchmarks.perf.learning`, `cua evolve --config`): its scoring
helpers, the compact prompt, and the whole pipeline on a few steps (plumbing, not figures:
the figures come from `python -m benchmarks.perf.learning`, docs/training.md).

Real parts: MiniWoB pages in our Playwright Chromium, the scripted oracle, the tiny
Qwen3-VL (real classes) trained by TRL's SFTTrainer and GRPOTrainer (environment_factory
with `ComputerUseEnvironment`). The stand-in: TRL gets an image-only Qwen3VLProcessor (the
real one needs torchvision for its video processor; there is no build for this CPU torch).
"""

from __future__ import annotations

import json

import pytest

from actions.dialects import Dialect
from actions.models import Click
from actions.observation import Size
from actions.parsing import parse_tool_calls
from benchmarks.perf.learning import (
    CompactQwenPolicy,
    LearningConfig,
    RowResult,
    SFTStage,
    best_fixed_points,
    click_answer,
    compact_chat_template,
    compact_messages,
    conversation,
    keep_demos,
    paired_difference,
    pearson,
    results_table,
    sample_messages,
    stage_samples,
    wilson,
    within_task_correlation,
)
from tests.conftest_policy import (  # noqa: F401
    episode_state,
    observation,
    one_torch_thread,
    tiny_model_dir,
)


def test_wilson_interval_and_pearson():
    low, high = wilson(30, 100)
    assert 0.21 < low < 0.22 and 0.39 < high < 0.40  # the textbook 95% Wilson interval
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # a fixed point has no correlation
    # one fixed point per task: pooled it would correlate (the tasks' means differ),
    # within task it does not
    fixed = [("a", 10, 8), ("a", 10, 12), ("b", 90, 88), ("b", 90, 92)]
    assert pearson([p for _, p, _ in fixed], [t for _, _, t in fixed]) > 0.99
    assert within_task_correlation(fixed) is None
    following = [("a", 8, 8), ("a", 12, 12), ("b", 87, 88), ("b", 93, 92)]
    assert within_task_correlation(following) > 0.9


def test_paired_difference_counts_the_discordant_episodes():
    def row(name: str, solved: set[int]) -> RowResult:
        outcomes = {f"t/{seed}": seed in solved for seed in range(20)}
        outcomes["other/0"] = name == "after"
        return RowResult(row=name, successes=len(solved), episodes=20, per_task={},
                         corr_x=None, corr_y=None, clicks=0, wall_s=0.0, outcomes=outcomes)

    before, after = row("before", set(range(0, 5))), row("after", set(range(3, 16)))
    d = paired_difference(before, after, ("t",))  # "other" is not among the tasks
    assert (d.episodes, d.gained, d.lost) == (20, 11, 3)
    assert d.difference == pytest.approx(8 / 20)
    # the exact two-sided McNemar test: 2 * P(X <= 3), X ~ Binomial(14, 1/2)
    assert d.p_value == pytest.approx(2 * (1 + 14 + 91 + 364) / 2 ** 14)
    half = 1.96 * ((14 / 20 - 0.16) / 20) ** 0.5  # Wald on the paired differences
    assert (d.low, d.high) == (pytest.approx(0.4 - half), pytest.approx(0.4 + half))
    same = paired_difference(before, before, ("t", "other"))
    assert (same.difference, same.p_value, same.episodes) == (0.0, 1.0, 21)


def test_table_gives_success_over_the_click_tasks_beside_all_tasks():
    """The swapped row is compared with the fixed point over the tasks whose target moves:
    a multi-step task's success can come from the prompt alone (the word to type)."""
    import io

    from rich.console import Console

    row = RowResult(row="sft-swapped", successes=20, episodes=40,
                    per_task={"a": [1, 10], "b": [3, 10], "enter-text": [16, 20]},
                    corr_x=None, corr_y=None, clicks=20, wall_s=1.0)
    console = Console(file=io.StringIO(), width=200)
    console.print(results_table([row], ("a", "b", "enter-text"), "t", ("a", "b")))
    text = console.file.getvalue()
    assert "click tasks (95% CI)" in text and "50% [35%, 65%]" in text
    assert "20% [8%, 42%]" in text  # 4/20 over a and b alone (Wilson)
    console = Console(file=io.StringIO(), width=200)
    console.print(results_table([row], ("a", "b"), "t", ("a", "b")))
    assert "click tasks" not in console.file.getvalue()  # nothing to add


def test_click_answer_parses_back_to_the_click():
    screen = (160, 210)
    answer = click_answer(37, 151, screen)
    parsed = parse_tool_calls(answer, Dialect.QWEN3, Size(width=160, height=210))
    assert parsed.actions == [Click(x=37, y=151)] and not parsed.errors


def test_fixed_point_and_filter():
    screens = [{"task": "t", "x": 15, "y": 15, "box": [10, 10, 20, 20], "screen": [40, 40]},
               {"task": "t", "x": 12, "y": 12, "box": [0, 0, 14, 14], "screen": [40, 40]},
               {"task": "t", "x": 35, "y": 35, "box": None, "screen": [40, 40]},
               {"task": "t", "x": 39, "y": 39, "box": [0, 0, 4, 4], "screen": [40, 40]}]
    x, y = best_fixed_points(screens[:3])["t"]
    assert 10 <= x < 14 and 10 <= y < 14  # inside the two overlapping boxes
    assert keep_demos(screens) == screens[:2]  # no box / click outside its box: dropped


def test_stage_samples_follow_the_curriculum():
    demos = [{"task": "click-test", "seed": i} for i in range(5)]
    pages = [{"task": "simple-button", "seed": i, "difficulty": i / 10} for i in range(10)]
    stage = SFTStage(steps=50, max_difficulty=0.35, demo_fraction=0.25)
    drawn = stage_samples(stage, 2, demos, pages, batch_size=4, seed=0)
    assert len(drawn) == 200  # steps x batch
    assert sum(d["task"] == "click-test" for d in drawn) == 50
    assert max(d["difficulty"] for d in drawn if "difficulty" in d) <= 0.35
    assert drawn == stage_samples(stage, 2, demos, pages, batch_size=4, seed=0)  # seeded
    with pytest.raises(ValueError, match="no generated page"):
        stage_samples(SFTStage(steps=1, max_difficulty=0.0), 0, demos, pages[1:], 4, 0)


# an enter-text oracle episode as collect_episodes records it
EPISODE_ROW = {"instruction": 'Enter "Ann" into the text field and press Submit.',
               "screen": [160, 210], "steps": [
                   {"image": "e-0.png", "action": {"type": "click", "x": 80, "y": 105}},
                   {"image": "e-1.png", "action": {"type": "type", "text": "Ann"}},
                   {"image": "e-2.png", "action": {"type": "click", "x": 16, "y": 21}}]}


def test_an_episode_is_one_multi_turn_sample():
    """A multi-step oracle episode becomes the conversation a GRPO rollout is: the first
    screenshot in the user turn, each later one as the tool's result."""
    row = EPISODE_ROW
    messages = sample_messages(row)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool",
                                             "assistant"]
    assert messages[2]["content"] == [{"type": "image", "image": "images/e-1.png"}]
    assert '"action": "type", "text": "Ann"' in messages[3]["content"]
    assert '"coordinate": [100, 100]' in messages[5]["content"]  # 0-1000 grid


def test_evaluation_shows_an_episode_as_training_did(tiny_model_dir):  # noqa: F811
    """The held-out prompt of an episode's third step (`conversation` of the two earlier
    replies) is the SFT sample of that episode up to its last reply; CompactQwenPolicy
    shows every screen of the episode, each through screenshot_for with its step index."""
    from transformers import AutoTokenizer

    from actions.contracts import PolicyOutput, StepHistory

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = EPISODE_ROW
    sample = sample_messages(row)
    answers = [m["content"] for m in sample if m["role"] == "assistant"]
    trained = tokenizer.apply_chat_template(sample, tokenize=False)
    prompt = tokenizer.apply_chat_template(conversation(row["instruction"], answers[:2]),
                                           tokenize=False, add_generation_prompt=True)
    assert trained == prompt + answers[2] + "<|im_end|>\n"

    state = episode_state(instruction=row["instruction"])
    state.history = [StepHistory(index=i, observation=observation(10 + 30 * i),
                                 output=PolicyOutput(raw_text=answers[i]))
                     for i in range(2)]
    shown: list[tuple[str, int, int]] = []

    def screenshot_for(task_id: str, seed: int, step: int, png: bytes) -> bytes:
        shown.append((task_id, seed, step))
        return png

    policy = CompactQwenPolicy(str(tiny_model_dir), min_pixels=3136, max_pixels=12544,
                               screenshot_for=screenshot_for, max_new_tokens=4)
    try:
        [output] = policy.act([state])
    finally:
        policy.close()
    assert shown == [("click", 0, 0), ("click", 0, 1), ("click", 0, 2)]
    assert output.model and output.raw_text is not None


def test_compact_prompt_renders_no_tools(tiny_model_dir):  # noqa: F811
    from transformers import AutoTokenizer

    from agent.trainers.trl_env import ComputerUseEnvironment

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = compact_messages("Click the button.")
    plain = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    with_tools = tokenizer.apply_chat_template(
        messages, tools=[ComputerUseEnvironment.tool], chat_template=compact_chat_template(),
        tokenize=False, add_generation_prompt=True)
    assert plain == with_tools  # what GRPO shows is what SFT trained on
    assert plain.startswith("<|im_start|>user\nThe user query: Click the button.\n"
                            "<|vision_start|><|image_pad|><|vision_end|>")


def test_config_file_errors_are_clear(tmp_path):
    from typer.testing import CliRunner

    from agent.cli.main import app

    bad = tmp_path / "loop.json"
    bad.write_text(json.dumps({"train_seeds": 3, "not_a_field": 1}))
    result = CliRunner().invoke(app, ["evolve", "--config", str(bad), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "not_a_field" in result.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError):
        LearningConfig(train_seeds=0)
    with pytest.raises(ValueError, match="set by sft_stages"):
        LearningConfig(sft={"epochs": 2})
    with pytest.raises(ValueError, match=r"unknown settings \['learnin_rate'\]"):
        LearningConfig(grpo={"learnin_rate": 1e-4})  # refused at load, not after SFT
    with pytest.raises(ValueError, match="generated_episodes are 0"):
        LearningConfig(generated_pages=0, generated_episodes=0)  # the curriculum draws them
    LearningConfig(generated_pages=0, generated_episodes=3)  # episodes alone are enough
    LearningConfig(generated_pages=0, sft_stages=[{"steps": 5, "demo_fraction": 1.0}])


@pytest.mark.slow
def test_the_loop_end_to_end_on_a_few_steps(tmp_path, one_torch_thread):  # noqa: F811
    """collect -> filter -> SFT -> evaluate -> GRPO -> evaluate, from one config file
    through `cua evolve --config`; a second run resumes (nothing is redone)."""
    from typer.testing import CliRunner

    from agent.cli.main import app

    config = {"tasks": ["click-test"], "train_seeds": 3, "eval_seeds": 2, "threads": 1,
              "generated_pages": 4, "generated_episodes": 2, "multi_step_seeds": 1, "multi_step_max_steps": 2,
              "sft": {"learning_rate": 1e-3, "batch_size": 3, "logging_steps": 1},
              "sft_stages": [{"steps": 1, "max_difficulty": 1.0},
                             {"steps": 1, "max_difficulty": 1.0, "demo_fraction": 0.5}],
              "grpo_steps": 1, "grpo": {"tasks": ["click-test"], "group": 2, "prompts_per_step": 1,
                                        "max_completion_length": 48, "max_tool_calls": 2},
              "rows": ["fixed-point", "sft", "sft-swapped", "grpo"]}
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "work"
    result = CliRunner().invoke(app, ["evolve", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["row"] for r in summary["rows"]] == config["rows"]
    # held-out: 2 click-test seeds (one action each) and 2 enter-text seeds (up to 2)
    assert all(r["per_task"] == {"click-test": [r["per_task"]["click-test"][0], 2],
                                 "enter-text": [r["per_task"]["enter-text"][0], 2]}
               for r in summary["rows"])
    from trajectories.store import RunDir

    for folder, limit in (("run", 1), ("run-multi-step", 2)):
        results = RunDir(out / "eval-sft" / folder).results()
        assert len(results) == 2 and all(1 <= r.steps <= limit for r in results)
    assert [(d["after"], d["before"], d["tasks"], d["episodes"])
            for d in summary["paired_differences"]] == [
        ("grpo", "sft", ["click-test", "enter-text"], 4), ("grpo", "sft", ["click-test"], 2)]
    seeds = {json.loads(line)["seed"] for line in (out / "demos" / "screens.jsonl")
             .read_text().splitlines()}
    held = {json.loads(line)["seed"] for line in (out / "heldout" / "screens.jsonl")
            .read_text().splitlines()}
    assert seeds == {0, 1, 2} and held == {100_000, 100_001}  # click-test and enter-text
    fixed = summary["rows"][0]
    assert fixed["clicks"] == 2 and fixed["corr_x"] is None  # one point: no correlation
    assert summary["sft"]["steps"] == 2 and len(summary["sft_stages"]) == 2
    pages = (out / "generated" / "screens.jsonl").read_text().splitlines()
    assert len(pages) == 4  # the curriculum's generated pages
    entries = [json.loads(line) for line in
               (out / "generated-episodes" / "episodes.jsonl").read_text().splitlines()]
    assert [len(e["steps"]) for e in entries] == [3, 3]  # click, type, Submit
    assert all((out / "generated-episodes" / s["image"]).exists()
               for e in entries for s in e["steps"])
    # stage 2 drew half its 3 samples from the MiniWoB demos, stage 1 none
    stage1 = (out / "sft-stage-1" / "data.jsonl").read_text()
    stage2 = (out / "sft-stage-2" / "data.jsonl").read_text()
    assert "click-test-" not in stage1 and "click-test-" in stage2
    grpo = json.loads((out / "grpo-model" / "grpo.json").read_text())
    assert len(grpo["steps"]) == 1
    step = grpo["steps"][0]
    assert len(step["group_reward_means"]) == 1 and step["wall_s"] > 0
    assert step["kl"] is not None and step["tool_calls_per_rollout"] >= 0
    assert set(step["reward_by_task"]) == set(step["tool_calls_by_task"]) == {"click-test"}
    # resuming: every stage is found done, the table is printed again
    again = CliRunner().invoke(app, ["evolve", "--config", str(path), "--out", str(out)])
    assert again.exit_code == 0 and "fixed-point" in again.output
