"""`cua train sft`: assistant-only labels, prompts tokenized as the policy does, TRL
training of the tiny Qwen3-VL (full and LoRA), the saved checkpoint loads as a policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from policies.train_sft import (
    IGNORE_INDEX,
    SFTCollator,
    TrainingDataError,
    TrainSFTOptions,
    load_samples,
    train_sft,
)
from trajectories.export_sft import SFTExportOptions, export_sft

pytest_plugins = ["conftest_policy", "conftest_export"]


@pytest.fixture(scope="module")
def sft_data(oracle_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sft") / "qwen"
    export_sft(oracle_run, out, SFTExportOptions(format="qwen"))
    return out


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path):
    from policies.qwen3vl import QwenVLPromptEncoder

    return QwenVLPromptEncoder.from_pretrained(str(tiny_model_dir))


def _labelled_text(encoder, encoded: dict) -> list[str]:
    """Decoded runs of consecutive labelled tokens."""
    runs, current = [], []
    for label in encoded["labels"]:
        if label == IGNORE_INDEX:
            if current:
                runs.append(encoder.tokenizer.decode(current))
                current = []
        else:
            current.append(label)
    if current:
        runs.append(encoder.tokenizer.decode(current))
    return runs


def test_labels_cover_exactly_the_answer_and_prompt_matches_the_policy(sft_data: Path,
                                                                        encoder) -> None:
    collator = SFTCollator(encoder)
    for sample in load_samples(sft_data):
        encoded = collator.encode(sample)
        answer = sample["messages"][-1]["content"]
        assert _labelled_text(encoder, encoded) == [answer + "<|im_end|>"]
        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in sample["images"]]
        prompt_ids = encoder.encode(sample["messages"][:-1], images)["input_ids"]
        # the tokens before the answer are exactly what the policy feeds the model
        assert encoded["input_ids"][:len(prompt_ids)] == prompt_ids
        assert all(label == IGNORE_INDEX for label in encoded["labels"][:len(prompt_ids)])
        assert encoded["pixel_values"] is not None and encoded["image_grid_thw"].shape == (1, 3)


def test_every_assistant_turn_of_a_multi_turn_sample_is_labelled(sft_data: Path,
                                                                 encoder) -> None:
    first, second = load_samples(sft_data)[:2]
    messages = [*first["messages"], {"role": "user", "content": [{"type": "image"}]},
                second["messages"][-1]]
    sample = {"messages": messages, "images": first["images"] + second["images"][:1]}
    encoded = SFTCollator(encoder).encode(sample)
    assert _labelled_text(encoder, encoded) == [
        first["messages"][-1]["content"] + "<|im_end|>",
        second["messages"][-1]["content"] + "<|im_end|>"]
    batch = SFTCollator(encoder)([
        {"messages_json": json.dumps(s["messages"]), "image_files": s["images"]}
        for s in (first, sample)])
    assert batch["input_ids"].shape[0] == 2 and batch["image_grid_thw"].shape[0] == 3
    assert int((batch["mm_token_type_ids"] == 1).sum()) == int(
        (batch["input_ids"] == encoder.image_token_id).sum())


def test_trl_and_qwen_exports_load_the_same(oracle_run: Path, sft_data: Path,
                                            tmp_path: Path) -> None:
    export_sft(oracle_run, tmp_path / "trl", SFTExportOptions(format="trl"))
    qwen, trl = load_samples(sft_data), load_samples(tmp_path / "trl")
    assert [s["messages"] for s in qwen] == [s["messages"] for s in trl]
    assert [Path(p).name for s in qwen for p in s["images"]] == [
        Path(p).name for s in trl for p in s["images"]]
    with pytest.raises(TrainingDataError, match="export.json"):
        load_samples(tmp_path)


@pytest.mark.slow
def test_train_full_and_lora_then_load_as_policy(sft_data: Path, tiny_model_dir: Path,
                                                 tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from actions.contracts import EpisodeState, Task
    from actions.observation import Observation
    from policies.qwen3vl import Qwen3VLOptions, Qwen3VLPolicy

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    full = train_sft(TrainSFTOptions(data_dir=sft_data, model=str(tiny_model_dir),
                                     out=tmp_path / "full", epochs=2, learning_rate=2e-3,
                                     max_samples=3, logging_steps=1, device="cpu"))
    assert full.steps == 6 and full.first_loss is not None
    assert full.final_loss < full.first_loss  # it learns the answers' fixed scaffolding
    trained = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert trained.keys() == base.keys()
    assert any(not trained[k].equal(base[k]) for k in base if "visual" in k)

    lora = train_sft(TrainSFTOptions(data_dir=sft_data, model=str(tiny_model_dir),
                                     out=tmp_path / "lora", epochs=1, learning_rate=1e-2,
                                     lora=True, lora_r=4, max_samples=2, device="cpu"))
    assert lora.steps == 2
    merged = load_file(str(tmp_path / "lora" / "model.safetensors"))
    assert merged.keys() == base.keys()  # adapters merged: a plain checkpoint
    changed = {k for k in base if not merged[k].equal(base[k])}
    assert changed and all("language_model" in k and "proj" in k for k in changed)

    policy = Qwen3VLPolicy(Qwen3VLOptions(model=str(tmp_path / "full"), device="cpu",
                                          max_new_tokens=4))
    try:
        sample = load_samples(sft_data)[0]
        png = Path(sample["images"][0]).read_bytes()
        from actions.observation import Size

        size = Size(width=160, height=210)
        state = EpisodeState(episode_id="e", task=Task(suite="t", task_id="t"),
                             instruction="Click the button.",
                             observation=Observation(screenshot_png=png, screen_size=size,
                                                     screenshot_size=size))
        output = policy.act([state])[0]
        assert output.response_token_ids and output.prompt_token_ids
    finally:
        policy.close()


def test_cli_train_reports_bad_data(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["train", "sft", str(tmp_path), "--model",
                                      str(tiny_model_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "export.json" in result.output
