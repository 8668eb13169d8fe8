"""Grounding data generated from our environments, and the harness end to end on it.

The proof of the metric and of the generated data: on >= 500 samples read from pages that
Chromium rendered (DOM boxes), the perfect grounder scores 100 % and a uniform-random
grounder scores within noise of the targets' mean area fraction (the chance level).
Then the tiny Qwen3-VL runs through `cua eval screenspot-pro --data <generated set>`
(plumbing: its weights are random), the run resumes, and `cua view` draws each target.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.grounding.data import load_screenspot_pro
from benchmarks.grounding.metric import judge
from benchmarks.grounding.runner import OracleGrounder, RandomGrounder, read_scores

pytest_plugins = ["conftest_policy"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def generated_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once per session with `cua generate-grounding`: 13 synthetic web pages
    (~42 elements each) and two MiniWoB task screens, in ScreenSpot-Pro's format."""
    from agent.cli.main import app

    out = tmp_path_factory.mktemp("generated-grounding") / "set"
    result = CliRunner().invoke(app, ["generate-grounding", "--out", str(out), "--pages", "13",
                                      "--seed", "100", "--miniwob-task", "click-button",
                                      "--miniwob-task", "enter-text"])
    assert result.exit_code == 0, result.output
    assert "samples from 15 screens written" in result.output
    return out


def _images(samples):
    from PIL import Image

    cache: dict[Path, object] = {}
    for sample in samples:
        if sample.image_path not in cache:
            cache[sample.image_path] = Image.open(sample.image_path).convert("RGB")
        yield sample, cache[sample.image_path]


def test_generated_format_reads_back(generated_set: Path) -> None:
    samples, report = load_screenspot_pro(generated_set)
    assert len(samples) >= 500
    assert sorted(report.files) == ["miniwob_web.json", "synthetic-web_web.json"]
    assert {s.ui_type for s in samples} == {"text", "icon"}
    assert {s.group for s in samples} == {"Web", "MiniWoB"}
    record = json.loads((generated_set / "annotations" / "miniwob_web.json").read_text())[0]
    assert set(record) >= {"img_filename", "bbox", "img_size", "instruction", "instruction_cn",
                           "application", "platform", "ui_type", "group", "id"}
    for sample in samples:  # every box lies inside its image and is not empty
        x1, y1, x2, y2 = sample.region.box
        width, height = sample.image_size
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    instructions = [(s.image_path, s.instruction) for s in samples]
    assert len(set(instructions)) == len(instructions)  # one answer per question


def test_perfect_and_random_grounders(generated_set: Path) -> None:
    samples, _ = load_screenspot_pro(generated_set)
    pairs = list(_images(samples))
    perfect = OracleGrounder().ground(pairs)
    assert all(judge(s.region, p.answer.point_px, p.answer.refused) == "correct"
               for s, p in zip(samples, perfect, strict=True))
    fractions = [s.region.area_px() / (s.image_size[0] * s.image_size[1]) for s in samples]
    chance = sum(fractions) / len(fractions)
    draws = 20  # random points per sample: the estimate's noise shrinks with sqrt(draws)
    grounder = RandomGrounder(seed=7)
    hits = 0
    for _ in range(draws):
        for sample, prediction in zip(samples, grounder.ground(pairs), strict=True):
            hits += judge(sample.region, prediction.answer.point_px, False) == "correct"
    trials = draws * len(samples)
    sigma = math.sqrt(draws * sum(p * (1 - p) for p in fractions)) / trials
    assert abs(hits / trials - chance) <= 4 * sigma, (hits / trials, chance, sigma)


def test_tiny_qwen3vl_end_to_end_and_resume(generated_set: Path, tiny_model_dir: Path,
                                            tmp_path: Path, one_torch_thread: None) -> None:
    from agent.cli.main import app

    out = tmp_path / "run"
    args = ["eval", "screenspot-pro", "--data", str(generated_set), "--policy", "qwen3vl",
            "--model", str(tiny_model_dir), "--policy-option", "max_new_tokens=8",
            "--policy-option", "device=cpu", "--limit", "4", "--batch-size", "2",
            "--out", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "format: ScreenSpot-Pro" in first.output and "Overall" in first.output
    assert "4 samples run, 0 already" in first.output
    scores = read_scores(out)
    assert len(scores) == 4 and {s.outcome for s in scores} <= {"correct", "wrong",
                                                                "wrong_format"}
    manifest = json.loads((out / "manifest.json").read_text())
    # a Qwen3-VL checkpoint gets the report's grounding prompt (Appendix B.11) by default
    assert manifest["config"]["grounding_profile"] == "qwen3vl-report"
    assert manifest["config"]["policy_options"]["greedy"] is True
    step = json.loads(next((out / "episodes").glob("*/steps.jsonl")).read_text().splitlines()[0])
    assert step["output"]["messages"][0]["content"].startswith(
        "You may call one or more functions to assist with the user query.")
    assert step["output"]["completion_tokens"] <= 8
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 samples run, 4 already" in again.output
    other = CliRunner().invoke(app, [*args[:-2], "--out", str(out), "--grounding-profile",
                                     "qwen2_5vl"])
    assert other.exit_code == 2 and "different" in other.output.lower()


def test_oracle_run_is_viewable(generated_set: Path, tmp_path: Path) -> None:
    from agent.cli.main import app

    out = tmp_path / "oracle"
    result = CliRunner().invoke(app, ["eval", "screenspot-pro", "--data", str(generated_set),
                                      "--policy", "oracle", "--limit", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "100.0 (30/30)" in result.output
    report = CliRunner().invoke(app, ["view", str(out), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    page = next((tmp_path / "report" / "episodes").glob("*.html")).read_text()
    assert '<rect class="target correct"' in page and 'class="marker click"' in page


def test_grounding_sft_answers_are_judged_correct(generated_set: Path, tmp_path: Path) -> None:
    """The SFT answer of every sample, read back as the profile's harness reads it, hits
    its target (both profiles); `cua export sft` writes the folder as training data."""
    from agent.cli.main import app
    from benchmarks.grounding.sft import grounding_sft_sample
    from policies.grounding import GROUNDING_PROFILES, read_grounding_answer

    samples, _ = load_screenspot_pro(generated_set)
    for name, profile in GROUNDING_PROFILES.items():
        for sample, image in list(_images(samples))[::25]:
            sft, png = grounding_sft_sample(sample, image, name)
            answer_text = sft.messages[-1]["content"]
            prompt = profile.build(image, sample.instruction)
            answer = read_grounding_answer(answer_text, prompt.converter, profile.read_call)
            assert judge(sample.region, answer.point_px, answer.refused) == "correct"
            assert sft.messages[1]["content"][0] == {"type": "image", "sha256": sft.images[0]}
    out = tmp_path / "sft"
    result = CliRunner().invoke(app, ["export", "sft", str(generated_set), "--out", str(out),
                                      "--format", "trl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert len(rows) == len(samples)
    assert all((out / path).is_file() for row in rows for path in row["images"])
    assert rows[0]["messages"][2]["content"][0]["text"].startswith("<tool_call>")
