"""Grounding samples from recorded runs: `cua export grounding RUN --out DIR`.

Every click of a recorded run whose target element is known becomes a grounding sample in
ScreenSpot-Pro's format (annotations/<app>_<platform>.json, images/): the screenshot the
policy saw before the click, an instruction built from the element (see
`instruction_for`), and the element's box in screenshot pixels. The target is known when
the run was recorded with `cua eval ... --record-click-targets`, which wraps each
environment in `benchmarks.grounding.click_targets.ClickTargets`: before a click it asks
the page which element is under the pointer and stores that element (box in input-space
pixels, tag, role, visible text, accessible name) in the observation's
`info["click_target"]`.

`instruction_for` is also what `cua generate-grounding` uses, so generated and exported
samples read alike.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from actions.models import Click
from actions.observation import Size
from trajectories.store import RunDir

__all__ = [
    "GroundingExportReport", "export_grounding", "instruction_for", "screenspot_pro_record",
]

_KIND_BY_ROLE = {"button": "button", "link": "link", "checkbox": "checkbox", "tab": "tab",
                 "menuitem": "menu item", "textbox": "text field", "radio": "radio button"}
_KIND_BY_TAG = {"a": "link", "button": "button", "select": "drop-down list",
                "textarea": "text area", "label": "label", "h1": "heading", "h2": "heading",
                "h3": "heading", "h4": "heading", "img": "image", "li": "list item",
                "td": "table cell"}
_KIND_BY_INPUT = {"checkbox": "checkbox", "radio": "radio button", "button": "button",
                  "submit": "button", "reset": "button"}


def instruction_for(element: dict[str, Any]) -> tuple[str, str] | None:
    """(instruction, ui_type) for a described element, or None when nothing names it.

    A template, not a human description: the visible text (or, without text, the
    accessible name) quoted and followed by the element's kind — `the "Save" button`,
    `the "Search" icon`; ui_type "text" when the element shows text, else "icon".
    """
    tag, role = element.get("tag", ""), element.get("role", "")
    kind = (_KIND_BY_ROLE.get(role) or (_KIND_BY_INPUT.get(element.get("type", ""), "text field")
                                       if tag == "input" else None)
            or _KIND_BY_TAG.get(tag) or "text")
    text = (element.get("text") or "").strip()
    label = (element.get("label") or "").strip()
    if text and len(text) <= 60 and "\n" not in text:
        return f'the "{text}" {kind}', "text"
    if label and len(label) <= 60:
        if kind in ("button", "link", "image", "text"):
            kind = "icon"
        return f'the "{label}" {kind}', "icon"
    return None


def screenspot_pro_record(img_filename: str, box: tuple[float, ...], image_size: Size,
                          instruction: str, ui_type: str, *, application: str, platform: str,
                          group: str, sample_id: str) -> dict[str, Any]:
    """One ScreenSpot-Pro annotation record (bbox = [x1, y1, x2, y2] in image pixels)."""
    return {"img_filename": img_filename, "bbox": [round(float(v), 2) for v in box],
            "img_size": [image_size.width, image_size.height], "instruction": instruction,
            "instruction_cn": "", "application": application, "platform": platform,
            "ui_type": ui_type, "group": group, "id": sample_id}


class GroundingExportReport(BaseModel):
    """What `export_grounding` wrote and what it left out (reason -> count)."""

    source_run: str
    clicks: int = Field(..., description="Click actions executed in finished episodes.")
    samples: int
    images: int
    skipped: dict[str, int] = Field(default_factory=dict)


def export_grounding(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                     successful_only: bool = False) -> GroundingExportReport:
    """Write the run's clicks with a known target as a ScreenSpot-Pro folder."""
    run = RunDir(run_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if {p.name for p in out.iterdir()} - {"annotations", "images"}:
            raise FileExistsError(f"{out} is not empty and not a grounding folder: choose a "
                                  "new --out folder")
        for name in ("annotations", "images"):  # an earlier export: replace it
            shutil.rmtree(out / name, ignore_errors=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    results = {r.episode_id: r for r in run.results()}
    files: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, int] = {}
    images: set[str] = set()
    clicks = 0

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for episode, step in run.iter_steps():
        result = results.get(episode.episode_id)
        if result is None or (successful_only and not result.success):
            continue
        for execution in step.executions:
            if not isinstance(execution.action, Click):
                continue
            # the screen the click was made on: before the step, or after the action before it
            earlier = step.executions[execution.index - 1] if execution.index else None
            seen = earlier.observation if earlier is not None else step.observation
            clicks += 1
            target = (execution.observation.info.get("click_target")
                      if execution.observation is not None else None)
            if not target:
                skip("click target not recorded (run with --record-click-targets)")
                continue
            if seen is None:
                skip("the screen before the click was not recorded")
                continue
            described = instruction_for(target)
            if described is None:
                skip("target element has no text or accessible name")
                continue
            scale_x = seen.screenshot_size.width / seen.screen_size.width
            scale_y = seen.screenshot_size.height / seen.screen_size.height
            box = (target["x1"] * scale_x, target["y1"] * scale_y,
                   target["x2"] * scale_x, target["y2"] * scale_y)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                skip("empty target box")
                continue
            sha = seen.screenshot_sha256
            if sha not in images:
                (out / "images" / f"{sha}.png").write_bytes(run.screenshot(sha))
                images.add(sha)
            instruction, ui_type = described
            application = episode.task.suite
            files.setdefault(f"{application}_{episode.platform}", []).append(
                screenspot_pro_record(
                    f"{sha}.png", box, seen.screenshot_size, instruction, ui_type,
                    application=application, platform=episode.platform,
                    group=episode.task.task_id,
                    sample_id=f"{episode.episode_id}-{step.index}-{execution.index}"))
    for stem, records in files.items():
        (out / "annotations" / f"{stem}.json").write_text(json.dumps(records, indent=1))
    return GroundingExportReport(source_run=str(run.path), clicks=clicks,
                                 samples=sum(len(r) for r in files.values()),
                                 images=len(images), skipped=skipped)
