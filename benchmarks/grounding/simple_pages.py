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

Text-entry episodes (`generate_text_entry`) are the curriculum's multi-step data: MiniWoB
enter-text's form (a field, a Submit button, 'Enter "<word>" into the text field and press
Submit.') with a made-up word per seed, run by the oracle through our WebEnvironment. The 50
names MiniWoB's enter-text draws from are too few to learn to *copy* from: trained on 300
enter-text episodes alone, the model types a name it memorised; with words that cannot be
memorised it learns to copy the instruction's word (docs/training.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pydantic import BaseModel

from actions.contracts import Task
from actions.models import Action, Click, Type
from actions.observation import Size
from benchmarks.grounding.generate import GeneratedScreen
from trajectories.export_grounding import screenspot_pro_record

__all__ = ["SIMPLE_VIEWPORT", "GeneratedEpisode", "entry_word", "generate_simple",
           "generate_text_entry", "page_difficulty", "simple_target_page", "text_entry_page"]

SIMPLE_VIEWPORT = Size(width=160, height=210)
_BUTTON_TEXT = "Click Me!"
# The box of the element with an id (CSS px).
_BOX_JS = """(id) => { const r = document.getElementById(id).getBoundingClientRect();
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
            box = [v * device_scale_factor for v in env.page.evaluate(_BOX_JS, "target")]
            name = f"simple-{page_seed:06d}"
            record = screenspot_pro_record(
                f"{name}.png", tuple(box), size, instruction, "icon",
                application="simple-web", platform="web", group=f"d{difficulty:.2f}",
                sample_id=name)
            screens.append(GeneratedScreen(name=name, png=png, size=size, records=[record]))
            if progress is not None:
                progress()
    return screens


# ----------------------------------------------------------------- text entry episodes

_ENTRY_INSTRUCTION = 'Enter "{word}" into the text field and press Submit.'
_VALUE_JS = "() => document.getElementById('target').value"
_CONSONANTS = "bcdfghjklmnprstvwyz"
_VOWELS = "aeiou"


def entry_word(rng: random.Random) -> str:
    """A seeded pronounceable made-up word (2-4 syllables, capitalised as a name, sometimes
    lower case): never a word to memorise, only to copy from the instruction."""
    word = "".join(
        (rng.choice(_CONSONANTS) if rng.random() < 0.85 else "")
        + rng.choice(_VOWELS) + (rng.choice("nrlsy") if rng.random() < 0.2 else "")
        for _ in range(rng.randint(2, 4)))
    return word if rng.random() < 0.2 else word.capitalize()


def text_entry_page(seed: int, difficulty: float) -> tuple[str, str, str]:
    """(html, instruction, word) of one seeded text-entry page: MiniWoB enter-text's form (a
    text field, a Submit button under it, the instruction in a yellow band) with a made-up
    word, the field at a seeded place and the button's grey set by `difficulty` as on the
    single-target pages (dark at 0, MiniWoB-like light grey at 1)."""
    rng = random.Random(f"entry-{seed}")
    d = min(1.0, max(0.0, difficulty))
    word = entry_word(rng)
    instruction = _ENTRY_INSTRUCTION.format(word=word)
    field_w, field_h = rng.randint(80, 130), rng.randint(16, 22)
    button_w, button_h = rng.randint(50, 75), rng.randint(20, 26)
    gap = rng.randint(2, 22)
    left, top = rng.randint(0, 160 - field_w), rng.randint(0, 160 - field_h - gap - button_h)
    button_left = min(left + rng.randint(0, 20), 160 - button_w)
    grey = round(60 + d * (239 - 60) * rng.uniform(0.7, 1.0))
    ink = "#000" if grey > 128 else "#fff"
    html = ('<!doctype html><html><head><meta charset="utf-8"></head>'
            '<body style="margin:0;width:160px;height:210px;font-family:Arial,sans-serif;'
            'font-size:10px;background:#fff">'
            '<div style="width:160px;height:50px;background:#ff0;padding:3px;'
            f'box-sizing:border-box">Enter "<b>{word}</b>" into the text field and press '
            'Submit.</div><div style="position:relative;width:160px;height:160px">'
            f'<input id="target" type="text" style="position:absolute;left:{left}px;'
            f'top:{top}px;width:{field_w}px;height:{field_h}px;box-sizing:border-box;'
            'font-size:10px">'
            f'<button id="submit" style="position:absolute;left:{button_left}px;'
            f'top:{top + field_h + gap}px;width:{button_w}px;height:{button_h}px;'
            f'background:rgb({grey},{grey},{grey});color:{ink};border:1px solid #767676;'
            'padding:0;font-size:10px">Submit</button></div></body></html>')
    return html, instruction, word


class GeneratedEpisode(BaseModel):
    """One generated multi-step episode: the screen before each action and the action
    (screenshot i shows the page action i was taken on)."""

    model_config = {"arbitrary_types_allowed": True}

    name: str
    instruction: str
    difficulty: float
    size: Size
    pngs: list[bytes]
    actions: list[Action]


def generate_text_entry(count: int, *, seed: int = 0,
                        progress: Callable[[], None] | None = None) -> list[GeneratedEpisode]:
    """Oracle episodes on text-entry pages seed..seed+count-1 (difficulty
    `page_difficulty`), executed by our WebEnvironment's real input events: click the
    field's centre, type the word, click Submit's centre. Each is checked in the page (the
    field holds the word, Submit's centre is the button) or refused with an error."""
    from environments.web import WebConfig, WebEnvironment

    config = WebConfig(viewport=SIMPLE_VIEWPORT, fresh_context_per_episode=False)
    episodes = []
    with WebEnvironment(config) as env:
        env.reset(Task(suite="web", task_id="text-entry", config={"url": "about:blank"}))
        for page_seed in range(seed, seed + count):
            difficulty = page_difficulty(page_seed)
            html, instruction, word = text_entry_page(page_seed, difficulty)
            env.page.set_content(html)
            field = env.page.evaluate(_BOX_JS, "target")
            submit = env.page.evaluate(_BOX_JS, "submit")
            actions: list[Action] = [
                Click(x=round((field[0] + field[2]) / 2), y=round((field[1] + field[3]) / 2)),
                Type(text=word),
                Click(x=round((submit[0] + submit[2]) / 2), y=round((submit[1] + submit[3]) / 2))]
            pngs = [env.page.screenshot(type="png")]
            for action in actions[:-1]:
                observation = env.step(action)
                pngs.append(observation.screenshot_png)
            under = env.page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y).id", [actions[2].x, actions[2].y])
            value = env.page.evaluate(_VALUE_JS)
            if value != word or under != "submit":
                raise RuntimeError(f"text-entry page {page_seed}: the oracle's episode does "
                                   f"not hold (field {value!r}, submit point on {under!r})")
            episodes.append(GeneratedEpisode(
                name=f"entry-{page_seed:06d}", instruction=instruction, difficulty=difficulty,
                size=SIMPLE_VIEWPORT, pngs=pngs, actions=actions))
            if progress is not None:
                progress()
    return episodes
