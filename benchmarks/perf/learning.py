"""Does the loop learn? Data we generate -> SFT of a small Qwen3-VL -> held-out MiniWoB episodes.

The stages (each writes a folder under ``--work`` and is skipped when that folder is
complete, so a rerun resumes):

1. ``demos/``: seeded MiniWoB episodes on the training seeds, in our Playwright browser;
   the scripted oracle (`benchmarks.miniwob.oracle`) names the target and the browser
   gives its box (`document.elementFromPoint` at the oracle's click). One PNG + one JSON
   line per screen. ``heldout/``: the same on the held-out seeds of every evaluated task
   (their boxes give the true target centres for the correlation, their screenshots the
   swapped ablation). ``episodes/``: whole oracle episodes of the multi-step tasks.
2. ``generated/``: single-target pages for the curriculum; ``sft-stage-<i>/``: each SFT
   stage's samples (generated pages and demos) as a `cua export sft --format qwen`
   folder, in the compact prompt (below); ``model-untrained/``: the small Qwen3-VL
   (`policies.tiny`, real classes); ``sft-stage-<i>-model/`` ... ``sft-model/``:
   `policies.train_sft.train_sft` (TRL SFTTrainer), each stage from the previous one.
   ``grpo-model/``: GRPO from ``sft-model/`` (TRL GRPOTrainer, `run_grpo`).
3. ``eval-<row>/``: real episodes (`agent.runner.run_suite`) on the held-out seeds for
   every row of the table — one action per episode on the click tasks (``run/``), up to
   ``multi_step_max_steps`` on the multi-step tasks (``run-multi-step/``, each later step
   shown the conversation so far, as in training): random clicker, best fixed point per
   task (chosen on the training demos' boxes), untrained model, SFT, SFT with each
   episode's first screenshot swapped for another held-out seed's of the same task, SFT
   with blank screenshots; with ``--grpo-steps`` also GRPO from the SFT checkpoint and its
   swapped run.

The compact prompt: one user turn "The user query: <instruction>\\n" + the screenshot, no
system prompt and no tool schema. The GRPO stage shows the same: its environment is the
reference `agent.trainers.trl_env.ComputerUseEnvironment` with this first turn, and TRL gets
a chat template that does not render tools (`compact_chat_template`). The answer is the Qwen3-VL tool call
(`render_response`, 0-1000 grid), parsed back by `actions.parsing` like any policy's.
Why compact: the computer_use schema is ~980 tokens for the small tokenizer, 6x the
rest of a sample, on a 2-core CPU.

Prints one table: success (k/n, 95% Wilson interval), the correlation between predicted
and true target centres (x and y, over the click tasks), episodes and wall seconds per
stage; then GRPO minus SFT paired over the same episodes (a 95% interval and the exact
McNemar p-value), on all tasks and on the click tasks alone. Usage::

    python -m benchmarks.perf.learning --work /tmp/learning
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.table import Table

from actions.contracts import EpisodeState, PolicyOutput
from actions.models import Click

logger = logging.getLogger(__name__)

TASKS = ("click-test", "click-test-2", "click-button", "focus-text")
TRAIN_SEED = 0
EVAL_SEED = 100_000

# Reads the box of the element under a point (CSS px = screen px at scale 1).
_BOX_AT_JS = """([x, y]) => { const e = document.elementFromPoint(x, y); if (!e) return null;
  const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"""

# The Qwen3-VL chat template with the `tools` block never rendered: what GRPO shows the
# model matches the compact prompt it was trained on.
def compact_chat_template() -> str:
    from policies.tiny import QWEN3_VL_CHAT_TEMPLATE

    return QWEN3_VL_CHAT_TEMPLATE.replace("{%- if tools %}", "{%- if false %}", 1)


class SFTStage(BaseModel):
    """One stage of the SFT curriculum: `steps` optimiser steps on samples drawn (seeded,
    with replacement) from the generated single-target pages of difficulty at most
    `max_difficulty` and, for `demo_fraction` of them, from the MiniWoB demos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(ge=1)
    max_difficulty: float = Field(1.0, ge=0, le=1)
    demo_fraction: float = Field(0.0, ge=0, le=1)


class LearningConfig(BaseModel):
    """One run of the loop (the `cua evolve --config` file holds one of these as JSON).

    tasks: MiniWoB tasks whose target moves. train_seeds / eval_seeds: screens per task
    for training and held-out evaluation (seeds TRAIN_SEED.. and EVAL_SEED..; disjoint,
    checked). multi_step_tasks / multi_step_seeds: whole oracle episodes (every screen and
    action, as one multi-turn sample with the screenshots as tool results, the form GRPO's
    rollouts take) on training seeds, drawn with the demos in the SFT stages and run in
    GRPO, so that the RL is multi-turn; they are held-out columns too, each episode up to
    multi_step_max_steps actions (in evaluation and in GRPO). generated_pages: single-target pages rendered for
    the curriculum (`benchmarks.grounding.simple_pages`, seeds 0..; 0 = none).
    generated_episodes: text-entry episodes generated for the curriculum (a made-up word to
    copy from the instruction into a field, then Submit; drawn with the generated pages by
    difficulty; 0 = none). model: the small
    Qwen3-VL's shape (`TinyQwen3VLSpec` fields). min_pixels / max_pixels: the image budget
    (upscaling the 160x210 screen gives more visual tokens per target). sft:
    `TrainSFTOptions` fields shared by the stages (epochs is set per stage: one pass over
    steps x batch_size drawn samples). sft_stages: the curriculum, in order, each stage
    starting from the previous one's checkpoint. grpo_steps: 0 = no RL; grpo: overrides
    of run_grpo's settings (tasks, group, prompts_per_step, learning_rate, beta,
    temperature, max_completion_length, max_tool_calls, num_iterations, outcome: the
    reward, "success" (1/0, the default) or "score", see agent.trainers.rewards). rows: the
    table's rows.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: tuple[str, ...] = TASKS
    train_seeds: int = Field(600, ge=1)
    eval_seeds: int = Field(25, ge=2)
    generated_pages: int = Field(4000, ge=0)
    generated_episodes: int = Field(2000, ge=0)
    multi_step_tasks: tuple[str, ...] = ("enter-text",)
    multi_step_seeds: int = Field(300, ge=0)
    multi_step_max_steps: int = Field(3, ge=1)
    model: dict[str, Any] = Field(default_factory=lambda: {
        "text_hidden_size": 64, "text_layers": 2, "text_heads": 4, "text_kv_heads": 2,
        "text_head_dim": 16, "text_intermediate_size": 192, "vision_hidden_size": 32,
        "vision_layers": 1, "vision_heads": 2, "vision_intermediate_size": 64,
        "vision_patch_bias_std": 1.0, "vision_position_std": 1.0})
    min_pixels: int = 30_000
    max_pixels: int = 40_000
    sft: dict[str, Any] = Field(default_factory=lambda: {
        "learning_rate": 5e-4, "batch_size": 16, "lr_scheduler": "constant_with_warmup",
        "warmup_ratio": 0.03, "logging_steps": 50})
    sft_stages: tuple[SFTStage, ...] = (
        SFTStage(steps=375, max_difficulty=0.3), SFTStage(steps=375, max_difficulty=0.6),
        SFTStage(steps=750, max_difficulty=0.85, demo_fraction=0.5),
        SFTStage(steps=1500, max_difficulty=1.0, demo_fraction=0.5))
    grpo_steps: int = Field(100, ge=0)
    grpo: dict[str, Any] = Field(default_factory=lambda: {
        # the two tasks SFT leaves room on (click-test and focus-text are at 25/25), and
        # enter-text, multi-turn (click the field, type, click Submit); a low learning
        # rate: at 1e-4 the tasks it does not train drifted (docs/training.md, S1)
        "tasks": ["click-test-2", "click-test-2", "click-button", "click-button", "enter-text"],
        "group": 8, "prompts_per_step": 4, "learning_rate": 3e-5, "beta": 0.04,
        "max_completion_length": 320, "max_tool_calls": 3, "outcome": "success"})
    rows: tuple[str, ...] = ("random", "fixed-point", "untrained", "sft", "sft-swapped",
                             "sft-blank", "grpo", "grpo-swapped")
    threads: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _stages_have_data(self) -> LearningConfig:
        if not self.sft_stages:
            raise ValueError("sft_stages: at least one stage")
        for stage in self.sft_stages:
            if stage.demo_fraction < 1 and not (self.generated_pages
                                                or self.generated_episodes):
                raise ValueError("an SFT stage draws generated pages (demo_fraction < 1) but "
                                 "generated_pages and generated_episodes are 0")
        if "epochs" in self.sft or "max_samples" in self.sft:
            raise ValueError("sft: epochs and max_samples are set by sft_stages")
        grpo_settings(self)
        return self


# ------------------------------------------------------------------------ data


def _collect(tasks: tuple[str, ...], first_seed: int, count: int, meta: Path,
             record: Callable[[Any, str, int, Any], dict[str, Any]],
             progress: Callable[[], None] | None) -> list[dict[str, Any]]:
    """Seeded MiniWoB episodes on seeds first_seed.., one JSON row each, made by
    `record(env, task_id, seed, first_observation)` and appended to `meta`; resumable:
    (task, seed) pairs already there are not run again."""
    from benchmarks.miniwob.environment import MiniWoBEnvironment
    from benchmarks.miniwob.suite import MiniWoBSuite

    meta.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in meta.read_text().splitlines()] if meta.exists() else []
    have = {(r["task"], r["seed"]) for r in rows}
    todo = [(t, s) for t in tasks for s in range(first_seed, first_seed + count)
            if (t, s) not in have]
    if todo:
        suite = MiniWoBSuite()
        with MiniWoBEnvironment(suite.web_config) as env, meta.open("a") as sink:
            for task_id, seed in todo:
                row = record(env, task_id, seed, env.reset(suite.make_task(task_id, seed)))
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                rows.append(row)
                if progress:
                    progress()
    wanted = {(t, s) for t in tasks for s in range(first_seed, first_seed + count)}
    return [r for r in rows if (r["task"], r["seed"]) in wanted]


def collect_screens(tasks: tuple[str, ...], first_seed: int, count: int, out: Path,
                    progress: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Seeded first screens with the oracle's target (click point and box); resumable."""
    from benchmarks.miniwob.oracle import SOLVERS, PageReader

    def record(env: Any, task_id: str, seed: int, observation: Any) -> dict[str, Any]:
        click = SOLVERS[task_id](PageReader(env)).actions[0]
        if not isinstance(click, Click):
            raise RuntimeError(f"the oracle's first action on {task_id} is not a click")
        box = env.page.evaluate(_BOX_AT_JS, [click.x, click.y])
        name = f"{task_id}-{seed}.png"
        (out / name).write_bytes(observation.screenshot_png)
        return {"task": task_id, "seed": seed, "instruction": observation.instruction,
                "x": click.x, "y": click.y, "box": box, "image": name,
                "screen": [observation.screen_size.width, observation.screen_size.height]}

    return _collect(tasks, first_seed, count, out / "screens.jsonl", record, progress)


def collect_episodes(tasks: tuple[str, ...], first_seed: int, count: int, out: Path,
                     progress: Callable[[], None] | None = None,
                     max_steps: int = 6) -> list[dict[str, Any]]:
    """Whole oracle episodes (each screen and the oracle's action on it) of multi-step
    tasks on seeds first_seed..; kept when the page scored them a success; resumable."""
    from benchmarks.miniwob.oracle import SOLVERS, PageReader

    def record(env: Any, task_id: str, seed: int, observation: Any) -> dict[str, Any]:
        row = {"task": task_id, "seed": seed, "instruction": observation.instruction,
               "screen": [observation.screen_size.width, observation.screen_size.height],
               "steps": []}
        for index in range(max_steps):
            action = SOLVERS[task_id](PageReader(env)).actions[0]
            name = f"{task_id}-{seed}-{index}.png"
            (out / name).write_bytes(observation.screenshot_png)
            row["steps"].append({"image": name, "action": action.model_dump(mode="json")})
            observation = env.step(action)
            if observation.done:
                break
        row["success"] = env.evaluate() > 0
        return row

    rows = _collect(tasks, first_seed, count, out / "episodes.jsonl", record, progress)
    return [r for r in rows if r["success"]]


def compact_messages(instruction: str) -> list[dict[str, Any]]:
    """The compact prompt (see the module docstring): one user turn."""
    return [{"role": "user", "content": [
        {"type": "text", "text": f"The user query: {instruction}\n"}, {"type": "image"}]}]


def conversation(instruction: str, answers: list[str]) -> list[dict[str, Any]]:
    """The prompt of an episode's next step after `answers` (the assistant's earlier
    replies): the compact first turn, then each reply and the screenshot it led to as the
    tool's result (image placeholders, one per screen) — the form of `sample_messages`'
    episode rows and of GRPO's rollouts."""
    messages = compact_messages(instruction)
    for answer in answers:
        messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "tool", "content": [{"type": "image"}]})
    return messages


def action_answer(action: dict[str, Any] | Click, screen: tuple[int, int]) -> str:
    """The assistant's Qwen3-VL tool call (0-1000 grid) for one action: an Action, or a
    recorded one in its `model_dump(mode="json")` form."""
    from actions.models import ActionAdapter
    from actions.observation import Size
    from actions.parsing import render_response

    size = Size(width=screen[0], height=screen[1])
    return render_response("", [ActionAdapter.validate_python(action)], "qwen3", size, size,
                           platform="web")


def click_answer(x: int, y: int, screen: tuple[int, int]) -> str:
    """The assistant's tool call for a left click at screen pixel (x, y)."""
    return action_answer(Click(x=x, y=y), screen)


def sample_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One SFT sample: a screen row is one user turn and the click; an episode row (with
    `steps`) is the multi-turn conversation GRPO's rollouts have (`conversation`): each
    later screenshot comes back as the tool's result."""
    screen = tuple(row["screen"])
    if "steps" in row:
        images = [step["image"] for step in row["steps"]]
        answers = [action_answer(step["action"], screen) for step in row["steps"]]
    else:
        images, answers = [row["image"]], [click_answer(row["x"], row["y"], screen)]
    messages = conversation(row["instruction"], answers[:-1])
    messages.append({"role": "assistant", "content": answers[-1]})
    placeholders = [item for message in messages if isinstance(message["content"], list)
                    for item in message["content"] if item["type"] == "image"]
    for item, name in zip(placeholders, images, strict=True):
        item["image"] = f"images/{name}"
    return messages


def write_sft_export(screens: list[dict[str, Any]], out: Path) -> int:
    """Screen and episode rows (each with `folder`, the directory of its images) as a
    `cua export sft --format qwen` folder; an image used by several samples is written
    once."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    with (out / "data.jsonl").open("w") as sink:
        for row in screens:
            names = [step["image"] for step in row["steps"]] if "steps" in row else [row["image"]]
            for name in names:
                image = out / "images" / name
                if not image.exists():
                    image.write_bytes((Path(row["folder"]) / name).read_bytes())
            sink.write(json.dumps({"messages": sample_messages(row)}) + "\n")
    (out / "export.json").write_text(json.dumps(
        {"kind": "sft", "format": "qwen", "data_file": "data.jsonl", "samples": len(screens),
         "prompt": "compact (benchmarks.perf.learning)"}, indent=2))
    return len(screens)


def _generate_resumable(count: int, meta: Path,
                        chunk_rows: Callable[[int, int], list[dict[str, Any]]]
                        ) -> list[dict[str, Any]]:
    """Rows 0..count-1 of a generated set, one JSON line each in `meta`, made by
    `chunk_rows(first, n)` (which writes their images beside `meta`) 250 at a time and
    appended; resumable: a rerun goes on after the last row written."""
    meta.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in meta.read_text().splitlines()] if meta.exists() else []
    chunk = 250
    with meta.open("a") as sink:
        for first in range(len(rows), count, chunk):
            for row in chunk_rows(first, min(chunk, count - first)):
                sink.write(json.dumps(row) + "\n")
                rows.append(row)
            sink.flush()
    return rows[:count]


def generate_pages(count: int, out: Path, progress: Callable[[], None] | None = None
                   ) -> list[dict[str, Any]]:
    """The curriculum's single-target pages (`benchmarks.grounding.simple_pages`, seeds
    0..count-1), as screen rows with their difficulty; resumable."""
    from benchmarks.grounding.simple_pages import generate_simple

    def chunk_rows(first: int, n: int) -> list[dict[str, Any]]:
        rows = []
        for screen in generate_simple(n, seed=first, progress=progress):
            record = screen.records[0]
            x1, y1, x2, y2 = record["bbox"]
            (out / record["img_filename"]).write_bytes(screen.png)
            rows.append({"task": "simple-" + ("text" if "textbox" in record["instruction"]
                                              else "button"),
                         "seed": int(screen.name.rsplit("-", 1)[1]),
                         "instruction": record["instruction"], "x": round((x1 + x2) / 2),
                         "y": round((y1 + y2) / 2), "box": [x1, y1, x2, y2],
                         "image": record["img_filename"], "screen": record["img_size"],
                         "difficulty": float(record["group"][1:])})
        return rows

    return _generate_resumable(count, out / "screens.jsonl", chunk_rows)


def generate_entry_episodes(count: int, out: Path,
                            progress: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """The curriculum's text-entry episodes (`benchmarks.grounding.simple_pages`, seeds
    0..count-1: click the field, type a made-up word, click Submit), as episode rows (the
    form `collect_episodes` writes) with their difficulty; resumable."""
    from benchmarks.grounding.simple_pages import generate_text_entry

    def chunk_rows(first: int, n: int) -> list[dict[str, Any]]:
        rows = []
        for episode in generate_text_entry(n, seed=first, progress=progress):
            steps = []
            for index, (png, action) in enumerate(zip(episode.pngs, episode.actions,
                                                      strict=True)):
                name = f"{episode.name}-{index}.png"
                (out / name).write_bytes(png)
                steps.append({"image": name, "action": action.model_dump(mode="json")})
            rows.append({"task": "generated-text-entry",
                         "seed": int(episode.name.rsplit("-", 1)[1]),
                         "instruction": episode.instruction,
                         "screen": [episode.size.width, episode.size.height], "steps": steps,
                         "success": True, "difficulty": episode.difficulty})
        return rows

    return _generate_resumable(count, out / "episodes.jsonl", chunk_rows)


def stage_samples(stage: SFTStage, index: int, demos: list[dict[str, Any]],
                  pages: list[dict[str, Any]], batch_size: int, seed: int
                  ) -> list[dict[str, Any]]:
    """steps x batch_size samples for one curriculum stage (seeded, with replacement)."""
    rng = random.Random(f"{seed}-stage-{index}")
    total = stage.steps * batch_size
    n_demos = round(total * stage.demo_fraction) if demos else 0
    pool = [p for p in pages if p["difficulty"] <= stage.max_difficulty]
    if n_demos < total and not pool:
        raise ValueError(f"SFT stage {index}: no generated page has difficulty <= "
                         f"{stage.max_difficulty}")
    samples = rng.choices(demos, k=n_demos) + (rng.choices(pool, k=total - n_demos)
                                               if total > n_demos else [])
    rng.shuffle(samples)
    return samples


def keep_demos(screens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The filter stage: a demo is kept when the browser found a box and the oracle's
    click lies inside it (what the page would score as a hit)."""
    return [r for r in screens if r["box"] and r["box"][0] <= r["x"] < r["box"][2]
            and r["box"][1] <= r["y"] < r["box"][3]]


def best_fixed_points(screens: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per task, the screen point inside the most training targets' boxes."""
    points: dict[str, tuple[int, int]] = {}
    for task in sorted({r["task"] for r in screens}):
        boxes = [r["box"] for r in screens if r["task"] == task and r["box"]]
        width, height = next(r["screen"] for r in screens if r["task"] == task)
        best, best_hits = (width // 2, height // 2), -1
        for y in range(0, height, 2):
            for x in range(0, width, 2):
                hits = sum(b[0] <= x < b[2] and b[1] <= y < b[3] for b in boxes)
                if hits > best_hits:
                    best, best_hits = (x, y), hits
        points[task] = best
    return points


# ------------------------------------------------------------------- policies


class RandomClickPolicy:
    """Chance level: one left click at a uniformly random pixel of the screen."""

    name = "random-click"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        outputs = []
        for state in states:
            size = state.observation.screen_size
            action = Click(x=self._rng.randrange(size.width), y=self._rng.randrange(size.height))
            outputs.append(PolicyOutput(raw_text=f"random click {action.x},{action.y}",
                                        actions=[action], model="random-click"))
        return outputs

    def close(self) -> None:
        pass


class FixedPointPolicy:
    """Clicks one point per task, never looking at the screen (the screen's centre on a
    task without a point: the multi-step ones, which a click alone cannot solve)."""

    name = "fixed-point"

    def __init__(self, points: dict[str, tuple[int, int]]) -> None:
        self.points = points

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        outputs = []
        for state in states:
            size = state.observation.screen_size
            x, y = self.points.get(state.task.task_id, (size.width // 2, size.height // 2))
            outputs.append(PolicyOutput(raw_text=f"fixed click {x},{y}",
                                        actions=[Click(x=x, y=y)], model="fixed-point"))
        return outputs

    def close(self) -> None:
        pass


class CompactQwenPolicy:
    """A Qwen-VL checkpoint (`QwenVLGenerator`, greedy) answering the compact prompt; on a
    later step of an episode the conversation GRPO's rollouts have (`conversation`).

    screenshot_for: replaces an episode's screenshot (task_id, seed, step index,
    screenshot) -> PNG bytes — the swapped and blank ablations; None shows the real screen.
    """

    name = "qwen3vl-compact"

    def __init__(self, model: str, *, min_pixels: int, max_pixels: int,
                 screenshot_for: Callable[[str, int, int, bytes], bytes] | None = None,
                 max_new_tokens: int = 48) -> None:
        from policies.qwen3vl import QwenVLGenerator

        self.generator = QwenVLGenerator(model, device="cpu", dtype="float32",
                                         min_pixels=min_pixels, max_pixels=max_pixels)
        self.screenshot_for = screenshot_for
        self.max_new_tokens = max_new_tokens

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        from PIL import Image

        from actions.dialects import Dialect
        from actions.parsing import parse_tool_calls
        from policies.prompting import SamplingParams

        def image(state: EpisodeState, step: int, png: bytes) -> Any:
            if self.screenshot_for is not None:
                png = self.screenshot_for(state.task.task_id, state.task.seed, step, png)
            return Image.open(io.BytesIO(png)).convert("RGB")

        prompts = []
        for state in states:
            screens = [past.observation.screenshot_png for past in state.history]
            screens.append(state.observation.screenshot_png)
            prompts.append((conversation(state.instruction,
                                         [past.output.raw_text for past in state.history]),
                            [image(state, step, png) for step, png in enumerate(screens)]))
        generations = self.generator.generate(prompts, SamplingParams.greedy_decoding(),
                                              self.max_new_tokens)
        outputs = []
        for state, generation in zip(states, generations, strict=True):
            observation = state.observation
            parsed = parse_tool_calls(generation.text, Dialect.QWEN3, observation.screen_size,
                                      observation.screen_size)
            outputs.append(PolicyOutput(
                raw_text=generation.text, thought=parsed.thought, actions=parsed.actions,
                parse_errors=parsed.errors, model=self.generator.model_id))
        return outputs

    def close(self) -> None:
        self.generator.close()


# ------------------------------------------------------------------- scoring


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pearson(a: list[float], b: list[float]) -> float | None:
    """Pearson correlation; None when either side does not vary."""
    if len(a) < 2:
        return None
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sa = math.sqrt(sum((v - ma) ** 2 for v in a))
    sb = math.sqrt(sum((v - mb) ** 2 for v in b))
    if sa == 0 or sb == 0:
        return None
    return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / (sa * sb)


def within_task_correlation(pairs: list[tuple[str, float, float]]) -> float | None:
    """Pearson correlation of (task, predicted, true) after subtracting each task's means
    from both sides: whether predictions follow the target within a task. Pooled across
    tasks without centring, a policy clicking one fixed point per task would correlate
    with the targets through the tasks' different mean positions alone."""
    by_task: dict[str, list[tuple[float, float]]] = {}
    for task, predicted, true in pairs:
        by_task.setdefault(task, []).append((predicted, true))
    centred_p, centred_t = [], []
    for values in by_task.values():
        mean_p = sum(v[0] for v in values) / len(values)
        mean_t = sum(v[1] for v in values) / len(values)
        centred_p += [v[0] - mean_p for v in values]
        centred_t += [v[1] - mean_t for v in values]
    return pearson(centred_p, centred_t)


def first_click(run: Any, episode_id: str) -> tuple[float, float] | None:
    """The first click of a recorded episode (a `RunDir`'s), None when its first step
    made none."""
    steps = run.steps(episode_id)
    click = next((a for a in steps[0].output.actions if isinstance(a, Click)), None) \
        if steps else None
    return None if click is None else (click.x, click.y)


class RowResult(BaseModel):
    """One row of the table (correlations within task, see within_task_correlation)."""

    row: str
    successes: int
    episodes: int
    per_task: dict[str, list[int]]
    corr_x: float | None
    corr_y: float | None
    clicks: int
    wall_s: float
    outcomes: dict[str, bool] = {}  # "task/seed" -> success, for paired comparisons


def eval_groups(config: LearningConfig) -> list[tuple[str, tuple[str, ...], int]]:
    """(run folder, tasks, step limit) of a row's held-out episodes: the click tasks end
    after one action, the multi-step ones after multi_step_max_steps."""
    groups = [("run", config.tasks, 1)]
    if config.multi_step_tasks:
        groups.append(("run-multi-step", config.multi_step_tasks, config.multi_step_max_steps))
    return groups


def run_row(row: str, policy: Any, config: LearningConfig, out: Path,
            truth: dict[tuple[str, int], tuple[float, float]], console: Console) -> RowResult:
    """Real episodes of `policy` on the held-out seeds; resumable (a row is scored again
    from its recorded runs, its wall time kept; a killed row's run resumes)."""
    from agent.config import Limits, OutputConfig, RunConfig
    from agent.runner import run_suite

    saved = out / "row.json"
    groups = eval_groups(config)
    if saved.exists():
        wall_s = RowResult.model_validate_json(saved.read_text()).wall_s
    else:
        started = time.monotonic()
        for folder, tasks, max_steps in groups:
            run_suite(RunConfig(
                suite="miniwob", policy=policy.name, tasks=list(tasks),
                episodes_per_task=config.eval_seeds, seed=EVAL_SEED,
                limits=Limits(max_steps=max_steps), output=OutputConfig(out_dir=out / folder)),
                policy=policy, console=console)
        wall_s = time.monotonic() - started
    result = score_row(row, [out / folder for folder, _, _ in groups], truth, wall_s)
    saved.write_text(result.model_dump_json(indent=2))
    return result


def score_row(row: str, run_dirs: list[Path], truth: dict[tuple[str, int], tuple[float, float]],
              wall_s: float) -> RowResult:
    """Success per task, and the correlation of first clicks with the true centres (of
    the tasks in `truth`)."""
    from trajectories.store import RunDir

    per_task: dict[str, list[int]] = {}
    outcomes: dict[str, bool] = {}
    clicks: dict[tuple[str, int], tuple[float, float]] = {}
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        for result in run.results():
            counts = per_task.setdefault(result.task_id, [0, 0])
            counts[0] += int(result.success)
            counts[1] += 1
            outcomes[f"{result.task_id}/{result.seed}"] = bool(result.success)
            click = first_click(run, result.episode_id)
            if click is not None:
                clicks[(result.task_id, result.seed)] = click
    keys = [k for k in truth if k in clicks]
    return RowResult(
        row=row, successes=sum(c[0] for c in per_task.values()),
        episodes=sum(c[1] for c in per_task.values()), per_task=per_task,
        corr_x=within_task_correlation([(k[0], clicks[k][0], truth[k][0]) for k in keys]),
        corr_y=within_task_correlation([(k[0], clicks[k][1], truth[k][1]) for k in keys]),
        clicks=len(keys), wall_s=wall_s, outcomes=outcomes)


class PairedDifference(BaseModel):
    """Success of row `after` minus row `before` on the same episodes (task/seed)."""

    before: str
    after: str
    tasks: tuple[str, ...]
    episodes: int
    difference: float
    low: float
    high: float
    gained: int  # episodes failed before and solved after
    lost: int
    p_value: float  # exact two-sided McNemar test on the discordant episodes


def paired_difference(before: RowResult, after: RowResult, tasks: tuple[str, ...]
                      ) -> PairedDifference:
    """The paired difference of two rows over `tasks`: a 95% interval for the change in
    success rate (Wald on the paired differences) and the exact McNemar p-value — the
    rows ran the same held-out seeds, so pairs are tighter than two separate intervals."""
    keys = sorted(k for k in before.outcomes if k in after.outcomes
                  and k.rsplit("/", 1)[0] in tasks)
    n = len(keys)
    gained = sum(after.outcomes[k] and not before.outcomes[k] for k in keys)
    lost = sum(before.outcomes[k] and not after.outcomes[k] for k in keys)
    d = (gained - lost) / n if n else 0.0
    half = 1.96 * math.sqrt(max(0.0, (gained + lost) / n - d * d) / n) if n else 0.0
    m = gained + lost
    tail = sum(math.comb(m, i) for i in range(min(gained, lost) + 1)) / 2 ** m if m else 1.0
    return PairedDifference(before=before.row, after=after.row, tasks=tasks, episodes=n,
                            difference=d, low=d - half, high=d + half, gained=gained,
                            lost=lost, p_value=min(1.0, 2 * tail))


def results_table(rows: list[RowResult], tasks: tuple[str, ...], title: str,
                  click_tasks: tuple[str, ...] = ()) -> Table:
    """One row per RowResult: successes per task, success over all `tasks` and, when
    `click_tasks` is a proper subset, over those alone (the tasks whose target moves: where
    the swapped-screenshot row is compared with the fixed point), correlations, episodes,
    wall seconds."""
    subset = tuple(t for t in tasks if t in click_tasks)
    subset = subset if subset and subset != tasks else ()
    table = Table(title=title)
    columns = ("row", *tasks, "success (95% CI)", *(("click tasks (95% CI)",) if subset else ()),
               "corr x", "corr y", "episodes", "wall s")
    for column in columns:
        table.add_column(column, justify="left" if column == "row" else "right")

    def rate(successes: int, episodes: int) -> str:
        low, high = wilson(successes, episodes)
        return f"{successes / max(1, episodes):.0%} [{low:.0%}, {high:.0%}]"

    def corr(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for r in rows:
        counts = [r.per_task.get(t, [0, 0]) for t in tasks]
        cells = [f"{k}/{n}" for k, n in counts]
        clicks = [r.per_task.get(t, [0, 0]) for t in subset]
        table.add_row(r.row, *cells, rate(r.successes, r.episodes),
                      *((rate(sum(k for k, _ in clicks), sum(n for _, n in clicks)),)
                        if subset else ()),
                      corr(r.corr_x), corr(r.corr_y), str(r.episodes), f"{r.wall_s:.0f}")
    return table


# ------------------------------------------------------------------- the loop


def run_loop(config: LearningConfig, work: Path, console: Console | None = None
             ) -> list[RowResult]:
    """All stages (resumable); returns the table's rows and writes work/summary.json."""
    import torch
    from rich.progress import Progress

    from policies.tiny import TinyQwen3VLSpec, build_tiny_qwen3vl
    from policies.train_sft import TrainSFTOptions, train_sft

    console = console or Console()
    torch.set_num_threads(config.threads)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(config.model_dump_json(indent=2))
    train_seeds = set(range(TRAIN_SEED, TRAIN_SEED + config.train_seeds))
    eval_seeds = set(range(EVAL_SEED, EVAL_SEED + config.eval_seeds))
    if train_seeds & eval_seeds:
        raise ValueError("training and held-out seeds overlap: lower train_seeds")
    stages: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        stages[name] = stages.get(name, 0.0) + time.monotonic() - started

    started = time.monotonic()
    with Progress(console=console) as progress:
        evaluated = (*config.tasks, *config.multi_step_tasks)
        n = len(config.tasks) * config.train_seeds + len(evaluated) * config.eval_seeds
        bar = progress.add_task("collect screens (oracle + browser)", total=n)
        train = collect_screens(config.tasks, TRAIN_SEED, config.train_seeds, work / "demos",
                                lambda: progress.advance(bar))
        progress.update(bar, completed=len(train))
        heldout = collect_screens(evaluated, EVAL_SEED, config.eval_seeds, work / "heldout",
                                  lambda: progress.advance(bar))
        progress.update(bar, completed=n)
        bar = progress.add_task("collect multi-step oracle episodes",
                                total=len(config.multi_step_tasks) * config.multi_step_seeds)
        episodes = collect_episodes(config.multi_step_tasks, TRAIN_SEED,
                                    config.multi_step_seeds, work / "episodes",
                                    lambda: progress.advance(bar))
        progress.update(bar, completed=len(config.multi_step_tasks) * config.multi_step_seeds)
        timed("collect", started)
        started = time.monotonic()
        bar = progress.add_task("generate single-target pages", total=config.generated_pages)
        pages = generate_pages(config.generated_pages, work / "generated",
                               lambda: progress.advance(bar)) if config.generated_pages else []
        progress.update(bar, completed=config.generated_pages)
        bar = progress.add_task("generate text-entry episodes", total=config.generated_episodes)
        entries = generate_entry_episodes(
            config.generated_episodes, work / "generated-episodes",
            lambda: progress.advance(bar)) if config.generated_episodes else []
        progress.update(bar, completed=config.generated_episodes)
        timed("generate", started)
    assert not {r["seed"] for r in train} & {r["seed"] for r in heldout}
    # the correlation is over the click tasks (a multi-step task's field hardly moves)
    truth = {(r["task"], r["seed"]): (r["x"], r["y"]) for r in heldout
             if r["task"] in config.tasks}
    held_png = {(r["task"], r["seed"]): (work / "heldout" / r["image"]).read_bytes()
                for r in heldout}

    started = time.monotonic()
    untrained = work / "model-untrained"
    if not (untrained / "config.json").exists():
        build_tiny_qwen3vl(untrained, TinyQwen3VLSpec(
            **config.model, min_pixels=config.min_pixels, max_pixels=config.max_pixels,
            seed=config.seed))
    timed("build", started)

    # the SFT curriculum: stage i trains from stage i-1's checkpoint; the last is sft-model
    sft_model = work / "sft-model"
    needs_sft = any(row.startswith(("sft", "grpo")) for row in config.rows)
    demos = ([{**r, "folder": str(work / "demos")} for r in keep_demos(train)]
             + [{**r, "folder": str(work / "episodes")} for r in episodes])
    generated = ([{**r, "folder": str(work / "generated")} for r in pages]
                 + [{**r, "folder": str(work / "generated-episodes")} for r in entries])
    previous = untrained
    stage_logs: list[dict[str, Any]] = []
    curriculum_log = sft_model / "curriculum.json"
    if needs_sft and curriculum_log.exists():  # every stage done (their logs kept there)
        stage_logs = json.loads(curriculum_log.read_text())
    for index, stage in enumerate(config.sft_stages if needs_sft and not stage_logs else ()):
        last = index == len(config.sft_stages) - 1
        model_dir = sft_model if last else work / f"sft-stage-{index + 1}-model"
        if not (model_dir / "train_sft.json").exists():
            started = time.monotonic()
            data = work / f"sft-stage-{index + 1}"
            if not (data / "export.json").exists():
                write_sft_export(stage_samples(stage, index, demos, generated,
                                               config.sft.get("batch_size", 16), config.seed),
                                 data)
            console.rule(f"SFT stage {index + 1}/{len(config.sft_stages)} (TRL SFTTrainer): "
                         f"{stage.steps} steps, generated pages of difficulty <= "
                         f"{stage.max_difficulty}, {stage.demo_fraction:.0%} MiniWoB demos")
            train_sft(TrainSFTOptions(data_dir=data, model=str(previous), out=model_dir,
                                      device="cpu", min_pixels=config.min_pixels,
                                      max_pixels=config.max_pixels, seed=config.seed + index,
                                      epochs=1.0, **{"progress_bar": True, **config.sft}))
            timed("sft", started)
        stage_logs.append(json.loads((model_dir / "train_sft.json").read_text())["result"])
        previous = model_dir
        if last:
            curriculum_log.write_text(json.dumps(stage_logs, indent=2))
    sft_log = ({"result": {"steps": sum(r["steps"] for r in stage_logs),
                           "first_loss": stage_logs[0]["first_loss"],
                           "final_loss": stage_logs[-1]["final_loss"],
                           "train_s": sum(r["train_s"] for r in stage_logs)},
                "stages": stage_logs} if stage_logs else None)

    def swapped(task_id: str, seed: int, step: int, png: bytes) -> bytes:
        # the first screen (where the target must be found) is another held-out seed's of
        # the same task (the next seed, cyclically); later screens are the episode's own
        if step:
            return png
        other = EVAL_SEED + (seed - EVAL_SEED + 1) % config.eval_seeds
        return held_png[(task_id, other)]

    def blank(_task_id: str, _seed: int, _step: int, png: bytes) -> bytes:
        from PIL import Image

        size = Image.open(io.BytesIO(png)).size
        buffer = io.BytesIO()
        Image.new("RGB", size, "white").save(buffer, format="PNG")
        return buffer.getvalue()

    def compact(model: Path, screenshot_for=None) -> CompactQwenPolicy:
        return CompactQwenPolicy(str(model), min_pixels=config.min_pixels,
                                 max_pixels=config.max_pixels, screenshot_for=screenshot_for)

    grpo_model = work / "grpo-model"
    needs_grpo = any(row.startswith("grpo") for row in config.rows)
    if config.grpo_steps and needs_grpo and not (grpo_model / "grpo.json").exists():
        started = time.monotonic()
        console.rule("GRPO (TRL GRPOTrainer, environment_factory)")
        run_grpo(config, sft_model, grpo_model, console)
        timed("grpo", started)

    makers: dict[str, Callable[[], Any]] = {
        "random": lambda: RandomClickPolicy(seed=config.seed),
        "fixed-point": lambda: FixedPointPolicy(best_fixed_points(train)),
        "untrained": lambda: compact(untrained),
        "sft": lambda: compact(sft_model),
        "sft-swapped": lambda: compact(sft_model, swapped),
        "sft-blank": lambda: compact(sft_model, blank),
        "grpo": lambda: compact(grpo_model),
        "grpo-swapped": lambda: compact(grpo_model, swapped),
    }
    rows: list[RowResult] = []
    for row in config.rows:
        if row.startswith("grpo") and not (grpo_model / "config.json").exists():
            continue
        if row.startswith("sft") and sft_log is None:
            continue
        console.rule(f"evaluating: {row}")
        policy = makers[row]()
        try:
            rows.append(run_row(row, policy, config, work / f"eval-{row}", truth, console))
        finally:
            policy.close()
        stages[f"eval {row}"] = rows[-1].wall_s
    title = (f"MiniWoB held-out seeds {EVAL_SEED}..{EVAL_SEED + config.eval_seeds - 1} "
             f"({config.eval_seeds} per task); trained on seeds {TRAIN_SEED}.."
             f"{TRAIN_SEED + config.train_seeds - 1}")
    console.print(results_table(rows, evaluated, title, config.tasks))
    by_row = {r.row: r for r in rows}
    differences = []
    if "sft" in by_row and "grpo" in by_row:  # on all tasks, then the click tasks alone
        differences = [paired_difference(by_row["sft"], by_row["grpo"], tasks)
                       for tasks in dict.fromkeys((evaluated, config.tasks))]
    for d in differences:
        console.print(f"{d.after} - {d.before} on {', '.join(d.tasks)}: {d.difference:+.1%} "
                      f"[{d.low:+.1%}, {d.high:+.1%}] (paired, {d.episodes} episodes: "
                      f"{d.gained} gained, {d.lost} lost; McNemar p = {d.p_value:.3f})")
    if sft_log:
        result = sft_log["result"]
        console.print(f"SFT: {result['steps']} steps, loss {result['first_loss']:.3f} -> "
                      f"{result['final_loss']:.3f}, {result['train_s']:.0f} s")
    if (grpo_model / "grpo.json").exists():
        console.print(f"GRPO: {json.loads((grpo_model / 'grpo.json').read_text())['summary']}")
    console.print("stage wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    (work / "summary.json").write_text(json.dumps(
        {"config": config.model_dump(mode="json"), "rows": [r.model_dump() for r in rows],
         "paired_differences": [d.model_dump() for d in differences],
         "stages_s": stages, "sft": sft_log["result"] if sft_log else None,
         "sft_stages": sft_log["stages"] if sft_log else None}, indent=2))
    return rows


def image_only_processor(model_dir: Path, chat_template: str):
    """The checkpoint's processor without a video processor
    (agent.trainers.processors), with TRL's tool-call parser and `chat_template`."""
    from trl.chat_template_utils import add_response_schema

    from agent.trainers.processors import image_only_processor as plain_processor

    processor = plain_processor(model_dir)
    tokenizer = processor.tokenizer
    # TRL recognises the checkpoint's Qwen3-VL template and sets its tool-call parser;
    # then the template is swapped (the parser does not depend on it)
    add_response_schema(processor)
    processor.chat_template = tokenizer.chat_template = chat_template
    return processor


class GRPOStepLog(BaseModel):
    """One GRPO step: rewards per group, tool calls per rollout, KL, seconds."""

    step: int
    group_reward_means: list[float]
    group_reward_stds: list[float]
    tool_calls_per_rollout: float
    tool_calls_by_task: dict[str, float] = {}
    reward_by_task: dict[str, float] = {}
    kl: float | None
    wall_s: float


def grpo_settings(config: LearningConfig) -> dict[str, Any]:
    """run_grpo's settings: its defaults overridden by `config.grpo`; a setting without a
    default is refused (LearningConfig checks this when it is built, long before GRPO)."""
    defaults = {"tasks": [*config.tasks, *config.multi_step_tasks], "group": 4,
                "prompts_per_step": 2, "learning_rate": 2e-4, "beta": 0.04, "temperature": 1.0,
                "max_completion_length": 160, "max_tool_calls": 4, "num_iterations": 1,
                "outcome": "success"}
    unknown = set(config.grpo) - set(defaults)
    if unknown:
        raise ValueError(f"grpo: unknown settings {sorted(unknown)}")
    return {**defaults, **config.grpo}


def run_grpo(config: LearningConfig, start: Path, out: Path, console: Console) -> None:
    """GRPO from the SFT checkpoint through TRL's `environment_factory`: multi-turn, each
    tool call executed on MiniWoB by `ComputerUseEnvironment`, the new screenshot as the
    tool's result, the episode's success as the reward
    (settings' `outcome`; "score": the page's score). Writes the checkpoint and grpo.json."""
    import os

    import torch
    from datasets import Dataset
    from transformers import Qwen3VLForConditionalGeneration, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agent.trainers.rewards import RewardConfig
    from agent.trainers.trl_env import ComputerUseEnvironment
    from benchmarks.miniwob.environment import MiniWoBEnvironment
    from benchmarks.miniwob.suite import MiniWoBSuite
    from policies.qwen3vl import QwenVLPromptEncoder, vision_token_ids
    from policies.train_sft import _save_processor_files

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # the multi-step tasks (enter-text: click the field, type, click Submit) make the
    # rollouts multi-turn; the click tasks end after one action, as in evaluation
    settings = grpo_settings(config)
    suite = MiniWoBSuite()
    environments: list[ComputerUseEnvironment] = []
    rollouts: list[tuple[str, int, float]] = []  # (task, tool calls, reward) since the last log

    class CountingEnvironment(ComputerUseEnvironment):
        """The reference web environment (the engine's episode rule, the evaluator's score
        as reward) whose first turn is the compact prompt the SFT model was trained on;
        TRL adds get_reward as a reward source, and this one also records it per rollout."""

        def reset(self, **row: Any) -> list[dict[str, Any]]:
            self.task_id = str(row.get("task_id"))
            content = super().reset(**row)
            image = next((c for c in content if c.get("type") == "image"), None)
            if image is None or self.episode is None:
                return content  # the environment failed: its message goes to the model
            return [compact_messages(self.episode.instruction)[0]["content"][0], image]

        def get_reward(self) -> float:
            reward = super().get_reward()
            rollouts.append((self.task_id, self.steps, reward))
            return reward

    def factory() -> ComputerUseEnvironment:
        env = CountingEnvironment(environment=MiniWoBEnvironment(suite.web_config), suite=suite,
                                  rewards=RewardConfig(outcome=settings["outcome"]))
        environments.append(env)
        return env

    def acted(completions, environments=None, **_):
        """-0.5 for a rollout whose environment executed no tool call (the tool-call-count
        term; TRL passes the rollouts' environments)."""
        return [0.0 if env.steps else -0.5 for env in environments]

    rng = random.Random(config.seed)
    rows = []
    for step in range(config.grpo_steps):
        for _ in range(settings["prompts_per_step"]):
            task = rng.choice(settings["tasks"])
            seed = 50_000 + step * 100 + rng.randrange(100)  # disjoint from SFT and held-out
            steps_allowed = 1 if task in config.tasks else config.multi_step_max_steps
            rows.append({"prompt": [{"role": "user", "content": []}], "task_id": task,
                         "seed": seed, "max_steps": steps_allowed})
    model = Qwen3VLForConditionalGeneration.from_pretrained(start, dtype=torch.float32)
    processor = image_only_processor(start, compact_chat_template())
    args = GRPOConfig(
        output_dir=str(out / "trainer"), per_device_train_batch_size=settings["group"]
        * settings["prompts_per_step"], num_generations=settings["group"],
        max_steps=config.grpo_steps, max_completion_length=settings["max_completion_length"],
        learning_rate=settings["learning_rate"], beta=settings["beta"],
        temperature=settings["temperature"], use_cpu=True, report_to=[], logging_steps=1,
        save_strategy="no", bf16=False, max_tool_calling_iterations=settings["max_tool_calls"],
        seed=config.seed, shuffle_dataset=False, num_iterations=settings["num_iterations"],
        # TRL suppresses the image token only; a sampled video token crashed a run
        generation_kwargs={"suppress_tokens": vision_token_ids(processor.tokenizer)})
    step_logs: list[GRPOStepLog] = []
    step_started = [time.monotonic()]

    class StepLog(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kwargs):
            history = logs or {}
            if "loss" not in history or not rollouts:
                return  # not a step's log, or a further update on the same rollouts
            rewards = [reward for _, _, reward in rollouts]
            groups = [rewards[i:i + settings["group"]]
                      for i in range(0, len(rewards), settings["group"])]
            by_task: dict[str, list[tuple[int, float]]] = {}
            for task, count, reward in rollouts:
                by_task.setdefault(task, []).append((count, reward))
            step_logs.append(GRPOStepLog(
                step=state.global_step,
                tool_calls_by_task={t: sum(c for c, _ in v) / len(v)
                                    for t, v in sorted(by_task.items())},
                reward_by_task={t: sum(r for _, r in v) / len(v)
                                for t, v in sorted(by_task.items())},
                group_reward_means=[sum(g) / len(g) for g in groups],
                group_reward_stds=[float(torch.tensor(g).std()) if len(g) > 1 else 0.0
                                   for g in groups],
                tool_calls_per_rollout=sum(count for _, count, _ in rollouts) / len(rollouts),
                kl=history.get("kl"), wall_s=time.monotonic() - step_started[0]))
            rollouts.clear()
            step_started[0] = time.monotonic()
            console.print(step_logs[-1].model_dump())

    trainer = GRPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        reward_funcs=[acted], environment_factory=factory,
        callbacks=[StepLog()])
    started = time.monotonic()
    try:
        trainer.train()
    finally:
        for env in environments:
            env._release()
    trainer.model.save_pretrained(out)
    _save_processor_files(QwenVLPromptEncoder.from_pretrained(str(start)), str(start), out)
    summary = {"steps": len(step_logs), "train_s": round(time.monotonic() - started, 1),
               "group_means_first": step_logs[0].group_reward_means if step_logs else None,
               "group_means_last": step_logs[-1].group_reward_means if step_logs else None}
    (out / "grpo.json").write_text(json.dumps(
        {"settings": settings, "summary": summary,
         "steps": [entry.model_dump() for entry in step_logs]}, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="work folder (resumable)")
    parser.add_argument("--config", type=Path, help="LearningConfig JSON (defaults otherwise)")
    parser.add_argument("--grpo-steps", type=int, help="override: GRPO steps (0 = none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = (LearningConfig.model_validate_json(args.config.read_text()) if args.config
              else LearningConfig())
    if args.grpo_steps is not None:
        config = config.model_copy(update={"grpo_steps": args.grpo_steps})
    run_loop(config, args.work, Console(width=170))


if __name__ == "__main__":
    main()
