"""Single-target pages for a grounding curriculum, rendered in Chromium.

A MiniWoB-sized page (160x210 CSS px: a 50 px yellow instruction band over a 160x160 area)
with one target at a seeded random place: a button (seeded size and grey level) or a text
field. `difficulty` in [0, 1] sets how hard the target is to see: 0 is a large dark button
(60-150 px, grey 60), 1 a MiniWoB-like light button (30-90 px, grey up to 239 on white)
or a text field (white with a thin border; only at difficulty > 0). A model trained from
scratch does not find a light-grey button on a white page by itself (it learns one click
point per task instead, docs/training.md); starting on dark, large targets and raising the
difficulty is the curriculum `benchmarks.perf.learning` uses.

The target's box comes from the DOM (`getBoundingClientRect` of `#target`, times the device
scale factor), as for every generated sample; the instruction is the page's own text.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from actions.contracts import Task
from actions.observation import Size
from benchmarks.grounding.generate import GeneratedScreen
from trajectories.export_grounding import screenspot_pro_record

__all__ = ["SIMPLE_VIEWPORT", "generate_simple", "page_difficulty", "simple_target_page"]

SIMPLE_VIEWPORT = Size(width=160, height=210)
_BUTTON_TEXT = "Click Me!"
_TARGET_BOX_JS = """() => { const r = document.getElementById('target').getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom]; }"""


def page_difficulty(seed: int) -> float:
    """The difficulty of page `seed`: uniform in [0, 1), fixed by the seed."""
    return random.Random(f"difficulty-{seed}").random()


def simple_target_page(seed: int, difficulty: float) -> tuple[str, str]:
    """(html, instruction) of one seeded single-target page (see the module docstring)."""
    rng = random.Random(seed)
    d = min(1.0, max(0.0, difficulty))
    field = rng.random() < 0.3 * d
    if field:
        instruction = "Focus into the textbox."
        width, height = rng.randint(60, 150), rng.randint(18, 24)
        target = (f'<input id="target" type="text" style="position:absolute;width:{width}px;'
                  f'height:{height}px;box-sizing:border-box;left:{{left}}px;top:{{top}}px">')
    else:
        instruction = "Click the button."
        low, high = round(60 - 30 * d), round(150 - 60 * d)
        width, height = rng.randint(low, high), rng.randint(max(20, low - 10), high)
        grey = round(60 + d * (239 - 60) * rng.uniform(0.7, 1.0))
        ink = "#000" if grey > 128 else "#fff"
        target = (f'<button id="target" style="position:absolute;width:{width}px;'
                  f'height:{height}px;left:{{left}}px;top:{{top}}px;background:rgb({grey},'
                  f'{grey},{grey});color:{ink};border:1px solid #767676;padding:0">'
                  f'{_BUTTON_TEXT}</button>')
    height = min(height, 160)
    left, top = rng.randint(0, 160 - width), rng.randint(0, 160 - height)
    html = ('<!doctype html><html><head><meta charset="utf-8"></head>'
            '<body style="margin:0;width:160px;height:210px;font-family:sans-serif;'
            'font-size:10px;background:#fff">'
            '<div style="width:160px;height:50px;background:#ff0;padding:3px;'
            f'box-sizing:border-box">{instruction}</div>'
            '<div style="position:relative;width:160px;height:160px">'
            + target.format(left=left, top=top) + "</div></body></html>")
    return html, instruction


def generate_simple(count: int, *, seed: int = 0, device_scale_factor: float = 1.0,
                    progress: Callable[[], None] | None = None) -> list[GeneratedScreen]:
    """Render pages seed..seed+count-1 (difficulty `page_difficulty(seed)`) in Chromium;
    one ScreenSpot-Pro record each (its group names the difficulty, e.g. "d0.42")."""
    from environments.web import WebConfig, WebEnvironment

    config = WebConfig(viewport=SIMPLE_VIEWPORT, device_scale_factor=device_scale_factor,
                       fresh_context_per_episode=False)
    size = Size(width=round(SIMPLE_VIEWPORT.width * device_scale_factor),
                height=round(SIMPLE_VIEWPORT.height * device_scale_factor))
    screens = []
    with WebEnvironment(config) as env:
        # the first page through reset (browser, context, viewport); the next ones replace
        # the document in that page and take its screenshot (a reset per page costs ~0.2 s)
        env.reset(Task(suite="web", task_id="simple-pages", config={"url": "about:blank"}))
        for page_seed in range(seed, seed + count):
            difficulty = page_difficulty(page_seed)
            html, instruction = simple_target_page(page_seed, difficulty)
            env.page.set_content(html)
            png = env.page.screenshot(type="png")
            box = [v * device_scale_factor for v in env.page.evaluate(_TARGET_BOX_JS)]
            name = f"simple-{page_seed:06d}"
            record = screenspot_pro_record(
                f"{name}.png", tuple(box), size, instruction, "icon",
                application="simple-web", platform="web", group=f"d{difficulty:.2f}",
                sample_id=name)
            screens.append(GeneratedScreen(name=name, png=png, size=size, records=[record]))
            if progress is not None:
                progress()
    return screens
