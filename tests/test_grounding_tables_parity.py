"""Grounding data and tables: the ScreenSpot Hugging Face parquet copy, ScreenSpot-Pro's
per-application results, OSWorld-G's relative coordinates.

Reference facts:
- rootsautomation/ScreenSpot dataset card (huggingface.co, README @ 0be08781): features
  file_name (string), bbox (sequence float64, x1, y1, x2, y2), instruction, data_type,
  data_source, image (Image); split `test`, data_files `data/test-*` (three parquet
  shards); data_source is the platform (iOS, Android, macOS, Windows, web sites).
- likaixin2000/ScreenSpot-Pro-GUI-Grounding eval_screenspot_pro.py @ 588f1f25
  `evaluate_leaderboard_detailed_style`: one entry per `application` ("app:<name>"), with
  calc_metric_for_result_list's action_acc, text_acc, icon_acc.
- OSWorld-G's GroundingEval `_eval` (as recorded in tests/test_grounding_metric.py):
  a prediction whose coordinates all lie in [0, 1] is read as fractions of the image.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from rich.console import Console

from benchmarks.grounding.data import GroundingSample, Region, load_benchmark
from benchmarks.grounding.runner import PolicyGrounder, read_scores, run_grounding
from benchmarks.grounding.tables import SampleScore, osworld_g_table, table_for
from policies.grounding import get_grounding_profile
from tests.test_grounding_exact_edges import ScriptedAnswers


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_screenspot_loads_the_hugging_face_parquet_copy(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    rows = [
        {"file_name": "ios_1.png", "bbox": [0.1, 0.2, 0.3, 0.4], "instruction": "open mail",
         "data_type": "icon", "data_source": "ios", "image": {"bytes": png((100, 200)),
                                                              "path": "ios_1.png"}},
        {"file_name": "web_1.png", "bbox": [10.0, 20.0, 30.0, 40.0], "instruction": "search",
         "data_type": "text", "data_source": "gitlab", "image": {"bytes": png((300, 100)),
                                                                 "path": None}},
    ]
    for shard, row in enumerate(rows):
        pq.write_table(pa.Table.from_pylist([row]),
                       tmp_path / "data" / f"test-0000{shard}-of-00002.parquet")
    samples, report = load_benchmark("screenspot", tmp_path)
    assert [s.platform for s in samples] == ["mobile", "web"]
    assert samples[0].region.box == (10.0, 40.0, 30.0, 80.0)  # fractions -> pixels
    assert samples[1].region.box == (10.0, 20.0, 30.0, 40.0)
    assert samples[0].ui_type == "icon" and samples[1].instruction == "search"
    assert all(s.image_path.is_file() for s in samples)
    assert "parquet" in report.variant and report.samples == 2
    again, _ = load_benchmark("screenspot", tmp_path, splits=("web",))
    assert [s.platform for s in again] == ["web"]


def score(outcome: str, application: str, ui: str) -> SampleScore:
    return SampleScore(sample_id=f"{application}-{ui}-{outcome}", outcome=outcome, ui_type=ui,
                       group="Dev", application=application)


def test_screenspot_pro_reports_every_application() -> None:
    scores = [score("correct", "vscode", "text"), score("wrong", "vscode", "icon"),
              score("correct", "pycharm", "icon")]
    tables = table_for("screenspot-pro", scores)
    apps = next(t for t in tables if "application" in t.title)
    assert apps.rows["vscode"]["Avg"].accuracy == 0.5
    assert apps.rows["vscode"]["Text"].accuracy == 1.0
    assert apps.rows["pycharm"]["Icon"].accuracy == 1.0


def test_osworld_g_reads_coordinates_in_0_1_as_relative_and_says_so(tmp_path: Path) -> None:
    """A point within [0, 1] pixels (the model answered fractions, on the qwen2_5vl
    profile's pixel dialect: [0.5, 0.5]) is read as the image's centre, as OSWorld-G's
    scorer reads it; the table counts such answers."""
    image_path = tmp_path / "shot.png"
    image_path.write_bytes(png((1000, 800)))
    sample = GroundingSample(sample_id="g1", benchmark="osworld-g", image_path=image_path,
                             instruction="x", region=Region(kind="box", box=(450, 350, 550, 450)),
                             categories=("text_matching",))
    answer = ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
              '"coordinate": [0.5, 0.5]}}\n</tool_call>')
    grounder = PolicyGrounder(ScriptedAnswers(answer), get_grounding_profile("qwen2_5vl"))
    run_grounding([sample], grounder, tmp_path / "run", {"suite": "osworld-g"},
                  console=Console(file=io.StringIO()), show_progress=False)
    [scored] = read_scores(tmp_path / "run")
    assert scored.outcome == "correct" and scored.read_as_relative
    table = osworld_g_table([scored])
    [label] = [k for k in table.summary if k.startswith("read as relative")]
    assert "1 of 1" in label and table.summary[label] == 1.0
