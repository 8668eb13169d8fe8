"""Loaders of the four grounding formats, on small datasets written here (parity with the
published file formats: the facts below; the screenshots are drawn by the tests).

Facts (what the reference code reads):

| benchmark | source (repo / path / commit) | file | image field | box |
|---|---|---|---|---|
| ScreenSpot | njucckevin/SeeClick pretrain/screenspot_test.py @ 661ff1b2 | screenspot_{mobile,desktop,web}.json | img_filename | bbox [x, y, w, h] px; x2 = x + w |
| ScreenSpot (HF copy) | issue 13's description (the HF card is not stored here) | same names | file_name | corners [x1, y1, x2, y2] |
| ScreenSpot-v2 | issue 13 (OS-Copilot/OS-Atlas stores no evaluation code: eval/README.md @ 49ba04b0 is unrelated text) | screenspot_*_v2.json | img_filename | as v1 |
| ScreenSpot-Pro | likaixin2000/ScreenSpot-Pro-GUI-Grounding eval_screenspot_pro.py @ 588f1f25 | annotations/*.json (every .json of --screenspot_test) | img_filename | bbox [x1, y1, x2, y2] px, img_size [w, h]; gt_type set per run (--gt_type) |
| OSWorld-G | Onifin/Holo3.1-OSWorld-G evaluation/holo_osworld_g.py @ 0fbdd890 | OSWorld-G.json, classification_result.json | image_path | box_type bbox [x, y, w, h] / polygon flat list / refusal |

OSWorld-G categories: `classification_result["classified"][category]` lists `{"id": ...}`;
a sample is in every category that lists its id, else "unclassified" (holo_osworld_g.py
`BenchmarkRunner.evaluate`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from benchmarks.grounding.data import (
    GroundingDataError,
    load_benchmark,
    load_osworld_g,
    load_screenspot,
    load_screenspot_pro,
)


def draw(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle(box, fill=(40, 90, 200))
    image.save(path)


def write_screenspot(root: Path, suffix: str = "", hf: bool = False) -> None:
    draw(root / "images" / "m1.png", (200, 400), (10, 20, 60, 50))
    for split in ("mobile", "desktop", "web"):
        if hf:
            records = [{"file_name": "m1.png", "bbox": [10, 20, 60, 50], "instruction": f"{split} a",
                        "data_type": "text", "data_source": "ios"}]
        else:
            records = [{"img_filename": "m1.png", "bbox": [10, 20, 50, 30],
                        "instruction": f"{split} a", "data_type": "icon", "data_source": "ios"}]
        (root / f"screenspot_{split}{suffix}.json").write_text(json.dumps(records))


def test_screenspot_original_xywh(tmp_path: Path) -> None:
    write_screenspot(tmp_path)
    samples, report = load_screenspot(tmp_path)
    assert len(samples) == 3 and report.variant == "original (img_filename, bbox x,y,w,h in pixels)"
    assert samples[0].region.box == (10, 20, 60, 50)  # x2 = x + w, y2 = y + h
    assert [s.platform for s in samples] == ["mobile", "desktop", "web"]
    assert samples[0].ui_type == "icon" and samples[0].group == "ios"
    assert samples[0].image_path == tmp_path / "images" / "m1.png"


def test_screenspot_hf_copy_corners_detected(tmp_path: Path) -> None:
    write_screenspot(tmp_path, hf=True)
    samples, report = load_screenspot(tmp_path)
    assert report.variant == "Hugging Face copy (file_name, bbox x1,y1,x2,y2 in pixels)"
    assert samples[0].region.box == (10, 20, 60, 50)


def test_screenspot_hf_copy_fractions(tmp_path: Path) -> None:
    draw(tmp_path / "s.png", (200, 400), (0, 0, 1, 1))
    (tmp_path / "screenspot_web.json").write_text(json.dumps([
        {"file_name": "s.png", "bbox": [0.1, 0.25, 0.5, 0.5], "instruction": "x",
         "data_type": "text", "data_source": "shop"}]))
    samples, report = load_screenspot(tmp_path)
    assert "fractions" in report.variant
    assert samples[0].region.box == (20, 100, 100, 200)


def test_screenspot_v2_files(tmp_path: Path) -> None:
    write_screenspot(tmp_path, suffix="_v2")
    samples, report = load_benchmark("screenspot-v2", tmp_path)
    assert report.files == ["screenspot_mobile_v2.json", "screenspot_desktop_v2.json",
                            "screenspot_web_v2.json"]
    assert all(s.benchmark == "screenspot-v2" for s in samples)
    with pytest.raises(GroundingDataError, match="no screenspot_"):
        load_screenspot(tmp_path, 1)  # v1 names are absent: a clear error


def write_pro(root: Path) -> None:
    draw(root / "images" / "vscode_1.png", (300, 200), (100, 50, 140, 70))
    records = [
        {"img_filename": "vscode_1.png", "bbox": [100, 50, 140, 70], "img_size": [300, 200],
         "instruction": "open the terminal", "instruction_cn": "打开终端",
         "application": "vscode", "platform": "windows", "ui_type": "text", "group": "Dev",
         "id": "vscode_1"},
        {"img_filename": "vscode_1.png", "bbox": [10, 10, 20, 20], "img_size": [300, 200],
         "instruction": "gear", "instruction_cn": "齿轮", "application": "vscode",
         "platform": "windows", "ui_type": "icon", "group": "Dev", "id": "vscode_2"},
    ]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "vscode_windows.json").write_text(json.dumps(records))


def test_screenspot_pro(tmp_path: Path) -> None:
    write_pro(tmp_path)
    samples, report = load_screenspot_pro(tmp_path)
    assert [s.sample_id for s in samples] == ["vscode_1", "vscode_2"]
    first = samples[0]
    assert first.region.box == (100, 50, 140, 70) and first.image_size == (300, 200)
    assert (first.group, first.ui_type, first.application, first.platform) == (
        "Dev", "text", "vscode", "windows")
    cn, _ = load_screenspot_pro(tmp_path, language="cn")
    assert cn[0].instruction == "打开终端"
    with_negatives, _ = load_screenspot_pro(tmp_path, negatives=True)
    assert [s.region.kind for s in with_negatives] == ["box", "refusal", "box", "refusal"]
    assert with_negatives[1].categories == ("negative",)


def test_screenspot_pro_bad_input_says_what(tmp_path: Path) -> None:
    with pytest.raises(GroundingDataError, match="no annotation files"):
        load_screenspot_pro(tmp_path)
    write_pro(tmp_path)
    (tmp_path / "images" / "vscode_1.png").unlink()
    with pytest.raises(GroundingDataError, match="not found in any of"):
        load_screenspot_pro(tmp_path)
    (tmp_path / "annotations" / "vscode_windows.json").write_text('[{"img_filename": 1}')
    with pytest.raises(GroundingDataError, match="not valid JSON"):
        load_screenspot_pro(tmp_path)


def test_osworld_g(tmp_path: Path) -> None:
    draw(tmp_path / "images" / "a.png", (400, 300), (0, 0, 10, 10))
    records = [
        {"id": "a1", "image_path": "a.png", "image_size": [400, 300], "instruction": "box",
         "box_type": "bbox", "box_coordinates": [10, 20, 30, 40], "GUI_types": ["Button"]},
        {"id": "a2", "image_path": "a.png", "image_size": [400, 300], "instruction": "poly",
         "box_type": "polygon", "box_coordinates": [0, 0, 100, 0, 100, 50, 0, 50],
         "GUI_types": []},
        {"id": "a3", "image_path": "a.png", "image_size": [400, 300], "instruction": "none",
         "box_type": "refusal", "box_coordinates": [-1, -1, -1, -1], "GUI_types": []},
    ]
    (tmp_path / "OSWorld-G.json").write_text(json.dumps(records))
    (tmp_path / "classification_result.json").write_text(json.dumps({"classified": {
        "text_matching": [{"id": "a1"}], "layout_understanding": [{"id": "a1"}, {"id": "a2"}],
        "refusal": [{"id": "a3"}]}}))
    samples, report = load_osworld_g(tmp_path)
    assert samples[0].region.box == (10, 20, 40, 60)  # [x, y, w, h]
    assert samples[0].categories == ("text_matching", "layout_understanding")
    assert samples[1].region.kind == "polygon"
    assert samples[1].region.polygon == ((0, 0), (100, 0), (100, 50), (0, 50))
    assert samples[2].region.kind == "refusal" and samples[2].categories == ("refusal",)
    (tmp_path / "classification_result.json").unlink()
    samples, report = load_osworld_g(tmp_path)
    assert samples[0].categories == ("unclassified",) and "no classification" in report.variant
    with pytest.raises(GroundingDataError, match="OSWorld-G_refined.json does not exist"):
        load_osworld_g(tmp_path, refined=True)
