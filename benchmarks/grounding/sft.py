"""Grounding SFT data: a grounding folder (ScreenSpot-Pro format, e.g. from
`cua generate-grounding`) as supervised samples in the formats of `cua export sft`.

Each sample is exactly what a grounding profile (policies.grounding) shows the model —
its system text, the (harness-resized) image, the instruction — followed by the answer
the profile reads as correct: one `left_click` tool call at a point inside the target,
written in the profile's coordinate dialect by `actions.parsing.render_tool_call` (for a
prefilled profile, the whole answer, prefill included). Refusal samples are skipped: the
published grounding prompts have no way to refuse.

Output: OUT/images/<sha256>.png (the image as the model sees it), OUT/data.jsonl or
data.json (+ dataset_info.json), OUT/export.json — the layout of `cua export sft`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actions.models import Click
from actions.parsing import render_tool_call
from benchmarks.grounding.data import GroundingSample, load_screenspot_pro
from benchmarks.grounding.metric import inside_point
from policies.grounding import get_grounding_profile
from trajectories.export_sft import (
    IMAGES_DIR,
    REPORT_FILE,
    SFT_CONVERTERS,
    ExportError,
    ExportReport,
    SFTSample,
    write_sft_rows,
)
from trajectories.store import atomic_write_bytes

__all__ = ["export_grounding_sft", "grounding_sft_sample"]


def grounding_sft_sample(sample: GroundingSample, image: Any, profile_name: str = "qwen3vl"
                         ) -> tuple[SFTSample, bytes] | None:
    """(the SFT sample, the PNG of its image) for one grounding sample; None for a
    refusal sample."""
    point = inside_point(sample.region)
    if sample.region.kind == "refusal" or point is None:
        return None
    profile = get_grounding_profile(profile_name)
    prompt = profile.build(image, sample.instruction)
    converter = prompt.converter
    x = min(max(int(point[0]), 0), converter.screen_size.width - 1)
    y = min(max(int(point[1]), 0), converter.screen_size.height - 1)
    answer = render_tool_call(Click(x=x, y=y), profile.dialect, converter.screen_size,
                              converter.image_size)
    messages = [m for m in prompt.record_messages() if m["role"] != "assistant"]
    messages.append({"role": "assistant", "content": answer})
    sha = prompt.images[0].sha256
    return SFTSample(sample_id=sample.sample_id, episode_id=sample.sample_id,
                     task_id=sample.sample_id, seed=0, step=0, reward=1.0, success=True,
                     source="rebuilt", messages=messages, images=[sha]), prompt.image_pngs[0]


def export_grounding_sft(data_dir: str | Path, out_dir: str | Path, *,
                         profile: str = "qwen3vl", format: str = "qwen") -> ExportReport:
    """Write the SFT samples of a ScreenSpot-Pro-format folder; returns the report."""
    from PIL import Image

    samples, _ = load_screenspot_pro(data_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / REPORT_FILE).exists():
        raise ExportError(f"{out} exists and is not an earlier export (no {REPORT_FILE}): "
                          "choose a new --out directory")
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    converter = SFT_CONVERTERS[format]
    rows: list[dict[str, Any]] = []
    images: set[str] = set()
    skipped: dict[str, int] = {}
    opened: dict[Path, Any] = {}
    for sample in samples:
        if sample.image_path not in opened:
            opened.clear()  # samples of one screen are consecutive: keep one image open
            opened[sample.image_path] = Image.open(sample.image_path).convert("RGB")
        built = grounding_sft_sample(sample, opened[sample.image_path], profile)
        if built is None:
            skipped["refusal sample"] = skipped.get("refusal sample", 0) + 1
            continue
        sft, png = built
        if sft.images[0] not in images:
            atomic_write_bytes(out / IMAGES_DIR / f"{sft.images[0]}.png", png, fsync=False)
            images.add(sft.images[0])
        rows.append(converter(sft))
    if not rows:
        raise ExportError(f"no grounding samples with a target in {data_dir}")
    data_file = write_sft_rows(out, rows, format)
    report = ExportReport(kind="sft", format=format, source_run=str(data_dir),
                          options={"grounding_profile": profile}, episodes_seen=len(samples),
                          episodes_kept=len(rows), samples=len(rows), images=len(images),
                          skipped=skipped, data_file=data_file)
    atomic_write_bytes(out / REPORT_FILE, report.model_dump_json(indent=2).encode(), fsync=False)
    return report
