"""SFT and RL exports from real recorded runs (oracle and tiny Qwen3-VL on MiniWoB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from actions.contracts import ImageRef, PolicyOutput
from actions.observation import Size
from actions.parsing import parse_tool_calls
from agent.cli.main import app
from policies.qwen3vl import prompt_config_from
from trajectories.export_rl import (
    NotAppendOnly,
    RLExportOptions,
    episode_row,
    export_rl,
    read_rollouts,
)
from trajectories.export_sft import (
    ExportError,
    SFTExportOptions,
    export_sft,
    rebuild_prompt_messages,
)
from trajectories.record import EpisodeResult, ObservationMeta, StepRecord
from trajectories.store import RunDir

pytest_plugins = ["conftest_policy", "conftest_export"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _encoder(model_dir: Path):
    from policies.qwen3vl import QwenVLPromptEncoder

    return QwenVLPromptEncoder.from_pretrained(str(model_dir))


def _qwen_sample_inputs(sample: dict, data_dir: Path) -> tuple[list[dict], list]:
    """A `qwen`-format sample's prompt (all but the answer) and its PIL images."""
    images = []
    messages = []
    for message in sample["messages"][:-1]:
        content = message["content"]
        if isinstance(content, list):
            items = []
            for item in content:
                if item["type"] == "image":
                    images.append(Image.open(data_dir / item["image"]).convert("RGB"))
                    items.append({"type": "image"})
                else:
                    items.append(item)
            content = items
        messages.append({"role": message["role"], "content": content})
    return messages, images


@pytest.mark.slow
def test_sft_sample_reproduces_the_recorded_prompt_token_ids(tiny_run: Path, tiny_model_dir: Path,
                                                             tmp_path: Path) -> None:
    """Round trip: a sample exported from a model run, rendered with the tiny model's chat
    template (apply_chat_template) and image processor, gives exactly the prompt token
    ids the policy recorded at rollout time."""
    out = tmp_path / "sft"
    report = export_sft(tiny_run, out, SFTExportOptions(include_invalid_steps=True,
                                                        dedupe=False))
    run = RunDir(tiny_run)
    recorded = {f"{e}/{s.index}": s for e in run.episode_ids() for s in run.steps(e)}
    assert report.samples == len(recorded) == 4
    encoder = _encoder(tiny_model_dir)
    samples = _jsonl(out / "data.jsonl")
    for sample in samples:
        step = recorded[sample["id"]]
        assert sample["meta"]["source"] == "recorded"
        assert sample["messages"][-1] == {"role": "assistant", "content": step.output.raw_text}
        messages, images = _qwen_sample_inputs(sample, out)
        encoded = encoder.encode(messages, images)
        assert encoded["input_ids"] == step.output.prompt_token_ids
    # the second step replays the first: two screenshots, one earlier assistant turn
    second = next(s for s in samples if s["id"].endswith("/1"))
    assert [m["role"] for m in second["messages"]] == [
        "system", "user", "assistant", "user", "assistant"]


@pytest.mark.slow
def test_expert_prompts_are_built_exactly_as_the_policy_builds_them(
        tiny_run: Path, tiny_model_dir: Path) -> None:
    """Strip the model prompt from recorded steps (as an expert's steps look): the prompt
    the exporter builds equals the one the policy sent, token for token."""
    run = RunDir(tiny_run)
    config = prompt_config_from("qwen3", 2, str(tiny_model_dir), None, None)
    encoder = _encoder(tiny_model_dir)
    for episode_id in run.episode_ids():
        episode = run.episode(episode_id)
        steps = run.steps(episode_id)
        as_expert = [s.model_copy(update={"output": s.output.model_copy(update={
            "messages": [], "prompt_token_ids": None})}) for s in steps]
        for index, step in enumerate(steps):
            rebuilt = rebuild_prompt_messages(run, episode, as_expert, index, config)
            assert rebuilt == step.output.messages
            images = [Image.open(run.screenshot_path(ref.sha256)).convert("RGB")
                      for ref in step.output.images]
            plain = [{"role": m["role"], "content": [
                {"type": "image"} if i.get("type") == "image" else i for i in m["content"]]
                if isinstance(m["content"], list) else m["content"]} for m in rebuilt]
            assert encoder.encode(plain, images)["input_ids"] == step.output.prompt_token_ids


def test_oracle_export_formats(oracle_run: Path, tmp_path: Path) -> None:
    run = RunDir(oracle_run)
    steps = {f"{e}/{s.index}": s for e in run.episode_ids() for s in run.steps(e)}
    for fmt in ("qwen", "llamafactory", "trl"):
        out = tmp_path / fmt
        report = export_sft(oracle_run, out, SFTExportOptions(format=fmt))
        # 8 episodes, every (task, seed) twice: dedupe keeps 4 samples
        assert (report.samples, report.skipped) == (4, {"duplicate (screenshot, action)": 4})
        assert report.images == 4 and len(list((out / "images").iterdir())) == 4
        rows = (json.loads((out / "data.json").read_text()) if fmt == "llamafactory"
                else _jsonl(out / "data.jsonl"))
        assert len(rows) == 4
        for row in rows:
            roles = [m["role"] for m in row["messages"]]
            assert roles == ["system", "user", "assistant"]
            if fmt == "qwen":
                images = [i["image"] for i in row["messages"][1]["content"]
                          if i["type"] == "image"]
                answer = row["messages"][-1]["content"]
                step = steps[row["id"]]
                assert row["meta"]["source"] == "rebuilt"
            else:
                images = row["images"]
                answer = row["messages"][-1]["content"]
            if fmt == "llamafactory":
                placeholders = sum(m["content"].count("<image>") for m in row["messages"])
                assert placeholders == len(images) == 1
                assert row["messages"][1]["content"].startswith("The user query: ")
            if fmt == "trl":
                assert all(isinstance(m["content"], list) for m in row["messages"])
                assert sum(i["type"] == "image" for m in row["messages"]
                           for i in m["content"]) == len(images) == 1
                answer = answer[0]["text"]
            assert all((out / path).is_file() for path in images)
            assert "<tool_call>" in answer
            if fmt == "qwen":
                # the answer is in Qwen3-VL's 0..1000 grid and parses back to the action
                obs = step.observation
                parsed = parse_tool_calls(answer, "qwen3", obs.screen_size, obs.screenshot_size)
                assert parsed.actions == step.output.actions
    info = json.loads((tmp_path / "llamafactory" / "dataset_info.json").read_text())
    assert info["qwen_cua_sft"]["formatting"] == "sharegpt"
    assert info["qwen_cua_sft"]["columns"] == {"messages": "messages", "images": "images"}
    assert info["qwen_cua_sft"]["tags"]["system_tag"] == "system"


def test_sft_filters(oracle_run: Path, tmp_path: Path) -> None:
    everything = export_sft(oracle_run, tmp_path / "all", SFTExportOptions(dedupe=False))
    assert everything.samples == 8
    capped = export_sft(oracle_run, tmp_path / "capped",
                        SFTExportOptions(dedupe=False, max_episodes_per_task=1))
    assert capped.samples == 2 and capped.skipped == {"per-task cap reached": 6}
    rows = _jsonl(tmp_path / "capped" / "data.jsonl")
    assert sorted(r["meta"]["task_id"] for r in rows) == ["click-button", "click-test"]
    with pytest.raises(ExportError, match="no samples selected"):
        export_sft(oracle_run, tmp_path / "none", SFTExportOptions(min_reward=1.5))
    no_thought = export_sft(oracle_run, tmp_path / "nothought",
                            SFTExportOptions(include_thought=False))
    assert no_thought.samples == 4
    for row in _jsonl(tmp_path / "nothought" / "data.jsonl"):
        assert row["messages"][-1]["content"].startswith("<tool_call>")


@pytest.mark.slow
def test_model_run_filters_and_per_episode(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no valid action"):
        export_sft(tiny_run, tmp_path / "valid-only")  # random weights: nothing parses
    with pytest.raises(ExportError, match="episode not successful"):
        export_sft(tiny_run, tmp_path / "ok-only",
                   SFTExportOptions(successful_only=True, include_invalid_steps=True))
    report = export_sft(tiny_run, tmp_path / "episodes",
                        SFTExportOptions(per_episode=True, include_invalid_steps=True,
                                         format="trl", dedupe=False))
    rows = _jsonl(tmp_path / "episodes" / "data.jsonl")
    assert report.samples == len(rows) == len(RunDir(tiny_run).results())
    for row in rows:
        assert [m["role"] for m in row["messages"]].count("assistant") == 2
        assert len(row["images"]) == 2


@pytest.mark.slow
def test_rl_export_keeps_token_ids_as_generated(tiny_run: Path, tmp_path: Path) -> None:
    report = export_rl(tiny_run, tmp_path / "rl")
    rows = read_rollouts(tmp_path / "rl")
    run = RunDir(tiny_run)
    assert report.samples == len(rows) == 4
    for row in rows:
        step = run.steps(row["episode_id"])[row["step"]]
        assert row["prompt_ids"] == step.output.prompt_token_ids
        assert row["response_ids"] == step.output.response_token_ids
        assert row["rollout_logprobs"] == pytest.approx(step.output.response_logprobs, abs=1e-6)
        assert row["response_mask"] == [1] * len(row["response_ids"])
        assert row["group_id"] == "miniwob/click-test/0"
        assert row["images"] == [ref.sha256 for ref in step.output.images]
        assert all((tmp_path / "rl" / p).is_file() for p in row["image_paths"])
        assert row["step_reward"] == (row["episode_reward"] if row["step"] == 1 else 0.0)
    assert {r["episode_id"] for r in rows} == {"click-test_seed0", "click-test_seed0_sample1"}
    # the tiny model's prompts summarise/replay history differently from plain
    # concatenation, so episode rows are refused rather than re-tokenized
    with pytest.raises(ExportError, match="granularity step"):
        export_rl(tiny_run, tmp_path / "rl-episode", RLExportOptions(granularity="episode"))


def test_rl_export_refuses_steps_without_token_ids(oracle_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no token ids.*cua export sft"):
        export_rl(oracle_run, tmp_path / "rl")
    result = CliRunner().invoke(app, ["export", "rl", str(oracle_run), "--out",
                                      str(tmp_path / "rl-cli")])
    assert result.exit_code == 1 and "no token ids" in result.output


def _step(index: int, prompt: list[int], response: list[int]) -> StepRecord:
    meta = ObservationMeta(screenshot_sha256="a" * 64, screen_size=Size(width=10, height=10),
                           screenshot_size=Size(width=10, height=10), timestamp=0.0)
    return StepRecord(
        episode_id="e", index=index, started_at=0.0, observation=meta, policy_s=0.1,
        output=PolicyOutput(raw_text="x", prompt_token_ids=prompt, response_token_ids=response,
                            response_logprobs=[-0.5] * len(response),
                            images=[ImageRef(step=index, sha256=f"{index}" * 64)]))


def test_episode_rows_mask_environment_tokens() -> None:
    """Multi-turn concatenation on append-only prompts: model tokens masked 1 with their
    logprobs, tokens the environment added in between masked 0."""
    result = EpisodeResult(episode_id="e", suite="s", task_id="t", seed=3, success=True,
                           reward=1.0, steps=2, terminated_by="done", wall_time_s=1.0,
                           started_at=0.0)
    steps = [_step(0, [1, 2, 3], [10, 11]), _step(1, [1, 2, 3, 10, 11, 7, 8], [12])]
    row = episode_row(result, steps)
    assert row.prompt_ids == [1, 2, 3]
    assert row.response_ids == [10, 11, 7, 8, 12]
    assert row.response_mask == [1, 1, 0, 0, 1]
    assert row.rollout_logprobs == [-0.5, -0.5, 0.0, 0.0, -0.5]
    assert row.group_id == "s/t/3" and row.images == ["0" * 64, "1" * 64]
    with pytest.raises(NotAppendOnly, match="diverges .* at token 3"):
        episode_row(result, [steps[0], _step(1, [1, 2, 3, 99, 11], [12])])


def test_cli_export_sft(oracle_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "sft", str(oracle_run), "--out",
                                      str(tmp_path / "lf"), "--format", "llamafactory",
                                      "--max-per-task", "1", "--no-dedupe"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "lf" / "data.json").read_text())) == 2
    bad = CliRunner().invoke(app, ["export", "sft", str(oracle_run), "--out",
                                   str(tmp_path / "x"), "--format", "sharegpt"])
    assert bad.exit_code == 2 and "unknown format" in bad.output


def test_cli_export_sft_builds_expert_prompts_with_the_prompt_profile(
        oracle_run: Path, tmp_path: Path) -> None:
    """Plumbing: --prompt-profile reaches the rebuilt prompts (the profile's own layout
    is pinned by tests/test_prompt_profiles.py's goldens)."""
    result = CliRunner().invoke(app, ["export", "sft", str(oracle_run), "--out",
                                      str(tmp_path / "osw"), "--prompt-profile",
                                      "osworld-qwen3vl", "--max-per-task", "1"])
    assert result.exit_code == 0, result.output
    rows = _jsonl(tmp_path / "osw" / "data.jsonl")
    assert rows
    for row in rows:
        system, user = row["messages"][0]["content"], row["messages"][1]["content"]
        text = system if isinstance(system, str) else system[0]["text"]
        assert text.startswith("# Tools") and "# Response format" in text
        assert [item["type"] for item in user] == ["image", "text"]
        assert "Previous actions:\nNone" in user[1]["text"]
        answer = row["messages"][-1]["content"]
        answer = answer if isinstance(answer, str) else answer[0]["text"]
        assert answer.startswith("Action: Click at (") and "\n<tool_call>\n" in answer
    bad = CliRunner().invoke(app, ["export", "sft", str(oracle_run), "--out",
                                   str(tmp_path / "x"), "--prompt-profile", "nope"])
    assert bad.exit_code == 1 and "unknown prompt profile" in bad.output
