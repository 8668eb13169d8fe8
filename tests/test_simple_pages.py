"""The learning curriculum's single-target pages and text-entry episodes
(`benchmarks.grounding.simple_pages`) and the tiny model's init options that let a model
trained from scratch see them.

Real parts: the pages are rendered by our Playwright Chromium through
`cua generate-grounding --simple-pages`, read back by the ScreenSpot-Pro loader; the
model is the real Qwen3-VL vision tower built by `policies.tiny`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actions.models import Click, Type
from benchmarks.grounding.data import load_screenspot_pro
from benchmarks.grounding.simple_pages import (
    generate_text_entry,
    page_difficulty,
    simple_target_page,
    text_entry_page,
)


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


def test_text_entry_pages_are_seeded_with_a_word_to_copy():
    html, instruction, word = text_entry_page(3, 0.5)
    assert (html, instruction, word) == text_entry_page(3, 0.5)
    assert instruction == f'Enter "{word}" into the text field and press Submit.'
    assert f"<b>{word}</b>" in html and 'id="target"' in html and 'id="submit"' in html
    words = [text_entry_page(seed, 0.5)[2] for seed in range(300)]
    assert len(set(words)) > 290  # made up per seed: to be copied, not memorised
    assert all(w.isalpha() and 2 <= len(w) <= 16 for w in words)
    assert "rgb(60,60,60)" in text_entry_page(3, 0.0)[0]  # difficulty 0: a dark Submit


def test_text_entry_episodes_type_the_word_into_the_field():
    """The oracle's episodes run through our WebEnvironment in Chromium: click the field,
    type the instruction's word, click Submit; each screenshot is the page the action
    was taken on (the typed word shows up on the field's row between the 2nd and 3rd)."""
    from PIL import Image, ImageChops

    episodes = generate_text_entry(3, seed=5)
    assert [e.name for e in episodes] == ["entry-000005", "entry-000006", "entry-000007"]
    for episode in episodes:
        field, typed, submit = episode.actions
        assert isinstance(field, Click) and isinstance(submit, Click)
        assert isinstance(typed, Type) and f'"{typed.text}"' in episode.instruction
        assert field.y < submit.y and 50 < field.y < 210  # below the band, Submit under it
        before, after = (Image.open(io.BytesIO(png)).convert("RGB") for png in episode.pngs[1:])
        x1, y1, x2, y2 = ImageChops.difference(before, after).getbbox()
        assert y1 <= field.y <= y2 and y2 < submit.y  # the word appeared in the field
        assert episode.difficulty == page_difficulty(int(episode.name.split("-")[1]))
