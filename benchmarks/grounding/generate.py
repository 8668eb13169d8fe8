"""Grounding samples generated from our own live environments, in ScreenSpot-Pro's format.

The perception half of the self-evolving data loop: render a screen in a real
environment, read where its elements are from the environment itself, and write
(screenshot, instruction, box) samples that the grounding harness evaluates
(`cua eval screenspot-pro --data OUT`) and `cua export sft --grounding` trains on.

Sources:

- web: synthetic pages (seeded layouts of buttons, links, icon buttons, text fields,
  checkboxes, headings) rendered by Chromium through `environments.web.WebEnvironment`;
- miniwob: MiniWoB++ task pages (`benchmarks.miniwob`), seeded episodes;
- android: the local Android suite's task screens (the virtual phone, or a real device),
  boxes from the `uiautomator dump` bounds, names from `text` / `content-desc`.

Boxes come from the DOM (`getBoundingClientRect`, CSS px, times the device scale factor
= screenshot px), clipped to the viewport. An element is kept only when it is visible,
at least 4 px on each side, and the topmost element at its centre (so what the box
covers is what the screenshot shows).

How the instruction is built (honestly: a template, not a human description): the
element's visible text (a text field's value or placeholder, a drop-down's selected
option), or for an element without text its accessible name (aria-label, title, alt), quoted and followed by its kind — e.g. `the "Save" button`,
`the "Home" link`, `the "Search" icon`, `the "Email" text field`. `ui_type` is "text"
when the element shows text, "icon" when only its accessible name says what it is.
Instructions that would name two elements of one screen are dropped, so every sample has
one answer.
"""

from __future__ import annotations

import json
import logging
import random
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from actions.contracts import Task
from actions.observation import Observation, Size
from trajectories.export_grounding import instruction_for, screenspot_pro_record

logger = logging.getLogger(__name__)

__all__ = [
    "COLLECT_ELEMENTS_JS", "DESCRIBE_ELEMENT_JS", "GeneratedScreen", "samples_from_elements",
    "android_elements", "generate_android", "generate_miniwob", "generate_web",
    "synthetic_page", "write_screenspot_pro",
]

# Describes one element (box in CSS px clipped to the viewport, tag, role, visible text,
# accessible name); shared by the collector below and the click-target probe
# (benchmarks.grounding.click_targets).
DESCRIBE_ELEMENT_JS = """
  const describe = (el) => {
    const r = el.getBoundingClientRect();
    const vw = window.innerWidth, vh = window.innerHeight;
    let text = '';
    if (el.tagName === 'INPUT' && ['button', 'submit', 'reset'].includes(el.type)) text = el.value;
    else if (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') text = el.value || el.placeholder;
    else if (el.tagName === 'SELECT') text = el.selectedOptions.length ? el.selectedOptions[0].text : '';
    else text = el.innerText || '';
    return {x1: Math.max(0, r.left), y1: Math.max(0, r.top), x2: Math.min(vw, r.right),
      y2: Math.min(vh, r.bottom), tag: el.tagName.toLowerCase(), type: el.type || '',
      role: el.getAttribute('role') || '', text: (text || '').trim().replace(/\\s+/g, ' '),
      label: el.getAttribute('aria-label') || el.getAttribute('title') || el.getAttribute('alt')
        || '',
      interactive: el.matches('a, button, input, select, textarea, [role=button], [onclick]')};
  };
"""

# Reads every candidate element's box and names; runs in the page.
COLLECT_ELEMENTS_JS = """() => {""" + DESCRIBE_ELEMENT_JS + """
  const sel = 'a, button, input, select, textarea, label, h1, h2, h3, h4, [role], [aria-label],'
    + ' [title], img, svg, [onclick], span, td, li, p';
  const out = [];
  for (const el of document.querySelectorAll(sel)) {
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none' || +style.opacity === 0) continue;
    const d = describe(el);
    if (d.x2 - d.x1 < 4 || d.y2 - d.y1 < 4) continue;
    const top = document.elementFromPoint((d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2);
    if (!top || !(el === top || el.contains(top))) continue;
    out.push(d);
  }
  return out;
}"""


class GeneratedScreen(BaseModel):
    """One rendered screen and the samples read from it (image px, ScreenSpot-Pro records)."""

    model_config = {"arbitrary_types_allowed": True}

    name: str
    png: bytes
    size: Size
    records: list[dict[str, Any]]


def samples_from_elements(elements: list[dict[str, Any]], scale: float, image_size: Size,
                          *, application: str, platform: str, group: str, screen_name: str
                          ) -> list[dict[str, Any]]:
    """ScreenSpot-Pro records for the unambiguous elements of one screen.

    Elements nested in one another with the same instruction (a button and its label
    span) count once: the outermost box is kept.
    """
    named: dict[str, list[tuple[tuple[float, ...], str]]] = {}
    for element in elements:
        described = instruction_for(element)
        if described is None:
            continue
        instruction, ui_type = described
        box = tuple(round(v * scale, 2) for v in (element["x1"], element["y1"],
                                                    element["x2"], element["y2"]))
        named.setdefault(instruction, []).append((box, ui_type))
    records = []
    for instruction, hits in named.items():
        outer = max(hits, key=lambda h: (h[0][2] - h[0][0]) * (h[0][3] - h[0][1]))
        nested = all(outer[0][0] <= b[0] and outer[0][1] <= b[1] and b[2] <= outer[0][2]
                     and b[3] <= outer[0][3] for b, _ in hits)
        if not nested:
            continue  # two separate elements answer to it: ambiguous
        box, ui_type = outer
        records.append(screenspot_pro_record(
            f"{screen_name}.png", box, image_size, instruction, ui_type, application=application,
            platform=platform, group=group, sample_id=f"{screen_name}-{len(records):03d}"))
    return records


_WORDS = ("Save", "Open", "Close", "Search", "Home", "Profile", "Settings", "Export", "Share",
          "Delete", "Archive", "Reply", "Forward", "Upload", "Download", "Refresh", "Print",
          "Cancel", "Submit", "Next", "Back", "Edit", "Copy", "Paste", "Undo", "Redo", "Help",
          "Login", "Logout", "Cart", "Orders", "Billing", "Reports", "Inbox", "Drafts", "Team",
          "Projects", "Calendar", "Notes", "Files", "Photos", "Music", "Videos", "Maps",
          "News", "Weather", "Sports", "Travel", "Books", "Games", "Tools", "Labels")
_ICONS = ("Settings", "Search", "Notifications", "Menu", "Favorite", "Bookmark", "Mail",
          "Phone", "Camera", "Trash", "Lock", "Info", "Warning", "Star", "Heart", "Bell")


def synthetic_page(seed: int, viewport: Size) -> str:
    """A seeded page of ~40 distinct elements scattered over the viewport."""
    rng = random.Random(seed)
    words = list(_WORDS)
    rng.shuffle(words)
    icons = list(_ICONS)
    rng.shuffle(icons)
    parts: list[str] = []
    cols, rows = 6, 8
    cell_w, cell_h = viewport.width // cols, viewport.height // rows
    cells = [(c, r) for c in range(cols) for r in range(rows)]
    rng.shuffle(cells)
    for index, (col, row) in enumerate(cells[:42]):
        left = col * cell_w + rng.randint(2, max(3, cell_w // 4))
        top = row * cell_h + rng.randint(2, max(3, cell_h // 4))
        font = rng.choice((11, 12, 13, 14, 16, 18))
        style = f"position:absolute;left:{left}px;top:{top}px;font-size:{font}px"
        kind = rng.choice(("button", "link", "icon", "input", "checkbox", "heading", "select"))
        word = words[index % len(words)] + ("" if index < len(words) else f" {index}")
        if kind == "button":
            parts.append(f'<button style="{style}">{word}</button>')
        elif kind == "link":
            parts.append(f'<a href="#{word}" style="{style}">{word}</a>')
        elif kind == "icon":
            label = icons[index % len(icons)] + ("" if index < len(icons) else f" {index}")
            size = rng.choice((16, 20, 24, 32))
            color = rng.choice(("#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00"))
            shape = rng.choice((f'<circle cx="12" cy="12" r="9" fill="{color}"/>',
                                f'<rect x="3" y="3" width="18" height="18" fill="{color}"/>',
                                f'<path d="M12 2 L22 22 L2 22 Z" fill="{color}"/>'))
            parts.append(f'<button aria-label="{label}" style="{style};padding:2px;border:0;'
                         f'background:none"><svg width="{size}" height="{size}" viewBox="0 0 24 '
                         f'24">{shape}</svg></button>')
        elif kind == "input":
            width = rng.choice((100, 140, 160))
            parts.append(f'<input placeholder="{word}" style="{style};width:{width}px">')
        elif kind == "checkbox":
            parts.append(f'<label style="{style}"><input type="checkbox"> {word}</label>')
        elif kind == "heading":
            parts.append(f'<h3 style="{style};margin:0">{word}</h3>')
        else:
            parts.append(f'<select aria-label="{word}" style="{style}"><option>{word}</option>'
                         "</select>")
    background = rng.choice(("#ffffff", "#f5f5f5", "#fafafa", "#eef3f8"))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>page {seed}</title></head>'
            f'<body style="margin:0;background:{background};font-family:sans-serif">'
            + "".join(parts) + "</body></html>")


def _screen_from(env: Any, observation: Observation, *, name: str, application: str,
                 platform: str, group: str) -> GeneratedScreen:
    elements = env.page.evaluate(COLLECT_ELEMENTS_JS)
    scale = observation.screenshot_size.width / observation.screen_size.width
    records = samples_from_elements(elements, scale, observation.screenshot_size,
                                    application=application, platform=platform, group=group,
                                    screen_name=name)
    return GeneratedScreen(name=name, png=observation.screenshot_png,
                           size=observation.screenshot_size, records=records)


DEFAULT_WEB_VIEWPORT = Size(width=1280, height=720)


def generate_web(pages: int, *, seed: int = 0, viewport: Size = DEFAULT_WEB_VIEWPORT,
                 device_scale_factor: float = 1.0) -> list[GeneratedScreen]:
    """Render `pages` synthetic pages in Chromium and read their elements."""
    from environments.web import WebConfig, WebEnvironment

    config = WebConfig(viewport=viewport, device_scale_factor=device_scale_factor,
                       fresh_context_per_episode=False)
    screens = []
    with WebEnvironment(config) as env:
        for page in range(pages):
            html = synthetic_page(seed + page, viewport)
            url = "data:text/html;charset=utf-8," + urllib.parse.quote(html)
            observation = env.reset(Task(suite="web", task_id=f"grounding-page-{seed + page}",
                                         config={"url": url}))
            screens.append(_screen_from(env, observation, name=f"web-{seed + page:05d}",
                                        application="synthetic-web", platform="web",
                                        group="Web"))
    return screens


def generate_miniwob(task_ids: list[str], seeds: range) -> list[GeneratedScreen]:
    """Start seeded MiniWoB++ episodes and read their elements (no action is taken)."""
    from benchmarks.miniwob.environment import MiniWoBEnvironment

    screens = []
    with MiniWoBEnvironment() as env:
        for task_id in task_ids:
            for seed in seeds:
                observation = env.reset(Task(suite="miniwob", task_id=task_id, seed=seed))
                screens.append(_screen_from(env, observation, name=f"miniwob-{task_id}-{seed}",
                                            application="miniwob", platform="web",
                                            group="MiniWoB"))
    return screens


# uiautomator class (last dotted part) -> the element's kind in the instruction
_ANDROID_KINDS = {"Button": ("button", "button"), "ImageButton": ("button", "button"),
                  "EditText": ("input", "text"), "CheckBox": ("input", "checkbox"),
                  "Switch": ("input", "checkbox"), "ToggleButton": ("input", "checkbox"),
                  "RadioButton": ("input", "radio"), "ImageView": ("img", ""),
                  "TextView": ("span", "")}


def android_elements(xml_text: str) -> list[dict[str, Any]]:
    """Elements of a `uiautomator dump` in the collector's form: bounds (screen px) as the
    box, `text` as the visible text, `content-desc` as the accessible name, the widget
    class as the kind. Nodes without a name, smaller than 4 px a side, or holding a named
    descendant's text only through it (layouts) are left out by `instruction_for`."""
    from benchmarks.android.expert import parse_tree

    out = []
    for node in parse_tree(xml_text):
        x1, y1, x2, y2 = node.bounds
        if x2 - x1 < 4 or y2 - y1 < 4:
            continue
        widget = node.attrs.get("class", "").rsplit(".", 1)[-1]
        tag, input_type = _ANDROID_KINDS.get(widget, ("", ""))
        if not tag:
            continue  # layouts and containers: their children are the targets
        out.append({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "tag": tag, "type": input_type,
                    "role": "", "text": node.attrs.get("text", ""),
                    "label": node.attrs.get("content-desc", ""),
                    "resource_id": node.attrs.get("resource-id", "")})
    return out


ANDROID_APPS = ("Contacts", "Notes", "Tasks", "Clock", "Settings")


def generate_android(env: Any, tasks: list[Task], apps: tuple[str, ...] = ANDROID_APPS
                     ) -> list[GeneratedScreen]:
    """Reset `env` (an Android environment whose observations carry the `uiautomator dump`,
    e.g. the android suite's on the virtual phone) to each task, read its screen, then open
    each of `apps` and read that screen too. Screens seen before are not repeated."""
    from actions.models import OpenApp
    from actions.observation import png_sha256

    screens: list[GeneratedScreen] = []
    seen: set[str] = set()

    def read(observation: Observation, name: str) -> None:
        if not observation.a11y_tree:
            raise RuntimeError("the Android observation has no UI tree: keep a11y_tree on")
        digest = png_sha256(observation.screenshot_png)
        if digest in seen or observation.action_error:
            return
        seen.add(digest)
        scale = observation.screenshot_size.width / observation.screen_size.width
        records = samples_from_elements(
            android_elements(observation.a11y_tree), scale, observation.screenshot_size,
            application="android", platform="android", group="Android", screen_name=name)
        screens.append(GeneratedScreen(name=name, png=observation.screenshot_png,
                                       size=observation.screenshot_size, records=records))

    for task in tasks:
        read(env.reset(task), f"android-{task.task_id}-{task.seed}")
        for app in apps:
            read(env.step(OpenApp(name=app)),
                 f"android-{task.task_id}-{task.seed}-{app.lower()}")
    return screens


def write_screenspot_pro(screens: list[GeneratedScreen], out_dir: str | Path) -> int:
    """Write screens as a ScreenSpot-Pro folder (annotations/<app>_<platform>.json,
    images/<name>.png); returns the number of samples written."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    files: dict[str, list[dict[str, Any]]] = {}
    for screen in screens:
        if not screen.records:
            continue
        (out / "images" / f"{screen.name}.png").write_bytes(screen.png)
        for record in screen.records:
            files.setdefault(f"{record['application']}_{record['platform']}", []).append(record)
    for stem, records in files.items():
        (out / "annotations" / f"{stem}.json").write_text(json.dumps(records, indent=1))
    return sum(len(r) for r in files.values())
