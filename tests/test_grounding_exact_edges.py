"""Grounding metric at exact edges: the ScreenSpot family compares in fractions of the
image, as the reference does.

Reference facts: likaixin2000/ScreenSpot-Pro-GUI-Grounding eval_screenspot_pro.py @
588f1f25a59318d49cf2a657e8dc18529c723713 `eval_sample_positive_gt`:
    img_size = sample["img_size"]
    bbox = [bbox[0] / img_size[0], bbox[1] / img_size[1], bbox[2] / img_size[0], bbox[3] / img_size[1]]
    click_point = response["point"]
    if (bbox[0] <= click_point[0] <= bbox[2]) and (bbox[1] <= click_point[1] <= bbox[3]): "correct"
where the model's `point` is its answer over its grid: x / 1000 for Qwen3-VL
(models/qwen3vl.py), x / resized width for Qwen2.5-VL (models/qwen2_5vl.py).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from rich.console import Console

from actions.contracts import PolicyOutput
from actions.dialects import CoordinateConverter
from actions.observation import Size
from benchmarks.grounding.data import GroundingSample, Region
from benchmarks.grounding.metric import judge
from benchmarks.grounding.runner import PolicyGrounder, read_scores, run_grounding
from policies.grounding import get_grounding_profile, read_grounding_answer


def reference_outcome(box: tuple[int, int, int, int], img_size: tuple[int, int],
                      point: tuple[float, float]) -> str:
    """eval_sample_positive_gt, rebuilt from its text above."""
    bbox = [box[0] / img_size[0], box[1] / img_size[1], box[2] / img_size[0],
            box[3] / img_size[1]]
    inside = bbox[0] <= point[0] <= bbox[2] and bbox[1] <= point[1] <= bbox[3]
    return "correct" if inside else "wrong"


def call(x: int, y: int) -> str:
    return ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
            f'"coordinate": [{x}, {y}]}}}}\n</tool_call>')


def test_every_exact_edge_case_of_the_qwen3_grid_agrees_with_the_reference() -> None:
    """Parity: for ScreenSpot-Pro's screen sizes, every grid answer that lands exactly
    on a box's left or top edge (in pixels) scores as the reference scores it."""
    checked = 0
    for width, height in ((2880, 1800), (3840, 2160), (2560, 1440), (1920, 1080)):
        size = Size(width=width, height=height)
        converter = CoordinateConverter("qwen3", size)
        for grid in range(1, 1000):
            if (grid * width) % 1000:
                continue  # not an exact pixel edge
            edge = grid * width // 1000
            box = (edge, 100, edge + 40, 140)
            answer = read_grounding_answer(call(grid, 120 * 1000 // height), converter)
            ours = judge(Region(kind="box", box=box), answer.point_px, answer.refused,
                         answer.point_frac, (width, height))
            assert ours == reference_outcome(box, (width, height), answer.point_frac), (
                width, grid)
            checked += 1
    assert checked > 100


class ScriptedAnswers:
    """A policy that answers every prebuilt prompt with one text."""

    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    def answer(self, prompts):
        return [PolicyOutput(raw_text=self.text) for _ in prompts]


def test_the_issues_case_scores_as_the_reference_through_the_runner(tmp_path: Path) -> None:
    """2880x1800, box x1 = 504, answer 175/1000: correct there, and here (in pixels it
    was 503.99999999999994: a miss)."""
    image_path = tmp_path / "shot.png"
    Image.new("RGB", (2880, 1800), "white").save(image_path)
    sample = GroundingSample(sample_id="edge", benchmark="screenspot-pro", image_path=image_path,
                             instruction="x", region=Region(kind="box", box=(504, 900, 600, 1000)),
                             image_size=(2880, 1800), application="vscode", group="Dev")
    assert 175 / 1000 * 2880 < 504  # the float rounding the pixel comparison trips on
    grounder = PolicyGrounder(ScriptedAnswers(call(175, 520)), get_grounding_profile("qwen3vl"))
    run_grounding([sample], grounder, tmp_path / "run", {"suite": "screenspot-pro"},
                  console=Console(file=io.StringIO()), show_progress=False)
    [score] = read_scores(tmp_path / "run")
    assert score.outcome == reference_outcome((504, 900, 600, 1000), (2880, 1800),
                                              (175 / 1000, 520 / 1000)) == "correct"
