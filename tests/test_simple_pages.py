"""The learning curriculum's single-target pages (`benchmarks.grounding.simple_pages`) and
the tiny model's init options that let a model trained from scratch see them.

Real parts: the pages are rendered by our Playwright Chromium through
`cua generate-grounding --simple-pages`, read back by the ScreenSpot-Pro loader; the
model is the real Qwen3-VL vision tower built by `policies.tiny`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.grounding.data import load_screenspot_pro
from benchmarks.grounding.simple_pages import page_difficulty, simple_target_page


@pytest.fixture(scope="module")
def simple_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agent.cli.main import app

    out = tmp_path_factory.mktemp("simple-pages") / "set"
    result = CliRunner().invoke(app, ["generate-grounding", "--out", str(out), "--pages", "0",
                                      "--simple-pages", "40", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "40 samples from 40 screens written" in result.output
    return out


def test_pages_are_seeded_and_difficulty_is_fixed_by_the_seed():
    assert simple_target_page(3, 0.5) == simple_target_page(3, 0.5)
    assert simple_target_page(3, 0.5) != simple_target_page(4, 0.5)
    values = [page_difficulty(seed) for seed in range(2000)]
    assert values == [page_difficulty(seed) for seed in range(2000)]
    assert all(0 <= v < 1 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55  # spread over [0, 1)
    # difficulty 0: never a text field, a large dark button
    html, instruction = simple_target_page(11, 0.0)
    assert instruction == "Click the button." and "rgb(60,60,60)" in html


def test_each_page_has_its_target_where_the_screenshot_shows_it(simple_set: Path):
    from PIL import Image

    samples, _ = load_screenspot_pro(simple_set)
    assert len(samples) == 40
    records = json.loads((simple_set / "annotations" / "simple-web_web.json").read_text())
    difficulty = {r["id"]: float(r["group"][1:]) for r in records}
    dark, light = [], []
    for sample in samples:
        x1, y1, x2, y2 = sample.region.box
        assert 0 <= x1 < x2 <= 160 and 50 <= y1 < y2 <= 210  # below the instruction band
        image = Image.open(sample.image_path).convert("L")
        assert image.size == (160, 210)
        inside = image.crop((int(x1) + 3, int(y1) + 3, int(x2) - 3, int(y2) - 3))
        pixels = sorted(inside.tobytes())
        grey = pixels[len(pixels) // 2]  # the fill, not the text
        if sample.instruction == "Click the button.":
            (dark if difficulty[sample.sample_id] < 0.3 else light).append(grey)
            assert grey < 250  # a button is never white: the pixels show the box
        else:
            assert sample.instruction == "Focus into the textbox."
            border = image.getpixel((int(x1), int((y1 + y2) / 2)))
            assert border < 200  # the field's border is where the box says
    assert dark and light and max(dark) < min(light)  # easy pages are darker


def test_patch_bias_init_lets_layernorm_tell_grey_from_white(tmp_path: Path):
    """With the bias-free patch projection transformers initialises, the LayerNorm after it
    maps a white and a grey patch to the same feature (it is scale-invariant); the
    `vision_patch_bias_std` option is what lets a model trained from scratch see a
    light-grey button on a white page (docs/training.md)."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from policies.tiny import TinyQwen3VLSpec, build_tiny_qwen3vl

    def features(spec: TinyQwen3VLSpec) -> torch.Tensor:
        folder = build_tiny_qwen3vl(tmp_path / str(spec.vision_patch_bias_std), spec)
        model = Qwen3VLForConditionalGeneration.from_pretrained(folder)
        block = model.model.visual.blocks[0]
        patch = model.model.visual.patch_embed
        white = torch.ones(1, 3 * 2 * 16 * 16)  # normalised pixels: white = 1
        grey = white * (239 / 255 * 2 - 1)
        with torch.no_grad():
            return torch.stack([block.norm1(patch(white)), block.norm1(patch(grey))])

    plain = features(TinyQwen3VLSpec(vision_layers=1))
    assert torch.allclose(plain[0], plain[1], atol=1e-4)
    biased = features(TinyQwen3VLSpec(vision_layers=1, vision_patch_bias_std=1.0,
                                      vision_position_std=1.0))
    assert (biased[0] - biased[1]).abs().max() > 0.05
