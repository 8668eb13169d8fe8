"""Supervised fine-tuning data from recorded runs: Qwen, LLaMA-Factory and TRL formats.

One sample per step (the prompt the policy saw, then its answer), or one per episode
(`per_episode=True`: the last step's prompt with its replayed history turns, every
assistant turn trained on).

Where the prompt comes from:

- a step produced by a model policy recorded its exact chat messages
  (`PolicyOutput.messages`, images as ``{"type": "image", "sha256": ...}``): they are used
  as they are, and the answer is the raw text as generated;
- a step produced by a scripted expert (the MiniWoB oracle) has no model prompt: it is
  built with the same prompt builder the Qwen3-VL policy uses
  (`policies.prompting.build_prompt`) from the recorded observations and history, and
  the answer is rendered in the model's dialect with `actions.parsing.render_response`.
  History answers are re-rendered the same way, so the sample is exactly what the policy
  would have been shown had it taken the expert's actions.

Output directory (every format)::

    OUT/
      images/<sha256>.png   each screenshot once, named by the hash of its PNG bytes
      data.jsonl | data.json
      dataset_info.json     (llamafactory only) the dataset registration
      export.json           ExportReport: options, counts, what was skipped and why

Formats (image paths are relative to OUT):

- ``qwen``: JSONL, ``{"id", "messages", "meta"}``; messages as Qwen-VL's chat template and
  `qwen_vl_utils.process_vision_info` consume them: system/assistant content strings,
  user content lists of ``{"type": "image", "image": "images/<sha>.png"}`` and
  ``{"type": "text", "text": ...}`` items.
- ``llamafactory``: a JSON list in LLaMA-Factory's sharegpt/multimodal layout
  (``{"messages": [{"role", "content"}], "images": [...]}``, one ``<image>`` placeholder
  per image in the content strings, the system prompt as the first message) plus
  `dataset_info.json` registering it as ``qwen_cua_sft`` (``dataset_dir`` = OUT).
- ``trl``: JSONL in TRL's conversational vision format, ``{"messages", "images"}``;
  every message content is a list of ``{"type": "text", "text"}`` / ``{"type": "image"}``
  items, images in order in the ``images`` column (load them as PIL images).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EpisodeState, PolicyOutput, StepHistory
from actions.observation import Observation
from actions.parsing import render_response
from policies.profiles import get_profile
from policies.prompting import PromptConfig, build_prompt
from trajectories.record import EpisodeRecord, EpisodeResult, ObservationMeta, StepRecord
from trajectories.store import RunDir, atomic_write_bytes

logger = logging.getLogger(__name__)

SFTFormat = Literal["qwen", "llamafactory", "trl"]
SFT_FORMATS: tuple[str, ...] = ("qwen", "llamafactory", "trl")
LLAMAFACTORY_DATASET_NAME = "qwen_cua_sft"
IMAGES_DIR = "images"
REPORT_FILE = "export.json"


class ExportError(RuntimeError):
    """The export cannot be made as asked (empty selection, bad output directory, ...)."""


class SFTExportOptions(BaseModel):
    """What to export and how.

    format: output layout (see the module docstring).
    per_episode: one multi-turn sample per episode instead of one per step.
    successful_only: keep only episodes whose result says success.
    min_reward: keep only episodes with reward >= this.
    max_episodes_per_task: cap on kept episodes per task id (first finished first).
    dedupe: drop a step whose (screenshot, actions) pair was already exported (per
        episode: whose whole sequence of such pairs was).
    include_invalid_steps: also export steps without a valid action (parse errors);
        off by default, as they teach the model to fail.
    include_thought: keep the thought before the tool call in answers rendered for
        expert steps (recorded model answers are never changed).
    prompt: how prompts of expert steps are built; use the policy's settings (dialect,
        history_images, image budget) so samples match what it will be shown.
    """

    model_config = ConfigDict(frozen=True)

    format: SFTFormat = "qwen"
    per_episode: bool = False
    successful_only: bool = False
    min_reward: float | None = None
    max_episodes_per_task: int | None = Field(None, ge=1)
    dedupe: bool = True
    include_invalid_steps: bool = False
    include_thought: bool = True
    prompt: PromptConfig = Field(default_factory=PromptConfig)


class SFTSample(BaseModel):
    """One training sample in the neutral recorded form.

    messages: chat messages ending with the assistant answer; images are
    ``{"type": "image", "sha256": ...}`` items. images: the sha256 of each image item,
    in order. source: "recorded" (the policy's own prompt) or "rebuilt" (built with the
    prompt builder for an expert step).
    """

    sample_id: str
    episode_id: str
    task_id: str
    seed: int
    step: int | None = Field(None, description="Step index; None for a per-episode sample.")
    reward: float
    success: bool
    source: Literal["recorded", "rebuilt"]
    messages: list[dict[str, Any]]
    images: list[str]


class ExportReport(BaseModel):
    """export.json: what an export contains and what it left out."""

    kind: Literal["sft", "rl"]
    format: str
    source_run: str
    options: dict[str, Any]
    episodes_seen: int
    episodes_kept: int
    samples: int
    images: int
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="Reason -> count of steps/episodes left out.")
    data_file: str


StepFilter = Callable[[EpisodeRecord, StepRecord], bool]
"""Extra per-step selection (e.g. a critic's verdicts): False drops the step."""


# ---------------------------------------------------------------------------- building


def _observation(run: RunDir, meta: ObservationMeta) -> Observation:
    return Observation(
        screenshot_png=run.screenshot(meta.screenshot_sha256), screen_size=meta.screen_size,
        screenshot_size=meta.screenshot_size, instruction=meta.instruction, url=meta.url,
        app=meta.app, timestamp=meta.timestamp,
    )


def is_recorded_prompt(output: PolicyOutput) -> bool:
    """True when the step's output carries the model prompt it was answered to."""
    return bool(output.messages)


def render_expert_answer(output: PolicyOutput, observation: ObservationMeta, platform: str,
                         config: PromptConfig, *, include_thought: bool = True) -> str:
    """The assistant text a model in `config.dialect` would write for this step's actions,
    in the prompt profile's response format: the thought (or the profile's Thought/Action
    lines), then one tool call per action (actions.parsing.render_response)."""
    image_size = config.image_budget.image_size(observation.screenshot_size)
    calls = render_response("", list(output.actions), config.dialect, observation.screen_size,
                            image_size, platform=platform)
    return get_profile(config.profile).expert_answer(
        output.thought.strip() if include_thought else "", list(output.actions), calls)


def rebuild_prompt_messages(run: RunDir, episode: EpisodeRecord, steps: list[StepRecord],
                            index: int, config: PromptConfig, *,
                            include_thought: bool = True) -> list[dict[str, Any]]:
    """The prompt (recorded form, images by sha256) the Qwen-VL policy would have been
    given at step `index` of this episode, had it taken the recorded actions so far.

    Earlier steps whose outputs were not model outputs have their answers re-rendered in
    `config.dialect` (so history turns look like the model's own); model outputs stay.
    """
    history: list[StepHistory] = []
    first_replayed = max(0, index - config.history_images)
    for step in steps[:index]:
        output = step.output
        if not is_recorded_prompt(output) and output.actions:
            output = output.model_copy(update={"raw_text": render_expert_answer(
                output, step.observation, episode.platform, config,
                include_thought=include_thought)})
        # Only replayed steps need their screenshot; older ones are text lines.
        observation = (_observation(run, step.observation) if step.index >= first_replayed
                       else _placeholder_observation(step.observation))
        history.append(StepHistory(index=step.index, observation=observation, output=output,
                                   feedback=step.feedback))
    current = steps[index]
    state = EpisodeState(
        episode_id=episode.episode_id, task=episode.task, instruction=episode.instruction,
        observation=_observation(run, current.observation), history=history,
        platform=episode.platform,
    )
    return build_prompt(state, config).record_messages()


_ONE_PIXEL_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def _placeholder_observation(meta: ObservationMeta) -> Observation:
    """A history step summarised as text: its image is never read, so skip loading it."""
    return Observation(screenshot_png=_ONE_PIXEL_PNG, screen_size=meta.screen_size,
                       screenshot_size=meta.screenshot_size)


def _image_shas(messages: list[dict[str, Any]]) -> list[str]:
    shas: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            shas += [item["sha256"] for item in content if item.get("type") == "image"]
    return shas


def step_sample_messages(run: RunDir, episode: EpisodeRecord, steps: list[StepRecord],
                         index: int, options: SFTExportOptions
                         ) -> tuple[list[dict[str, Any]], Literal["recorded", "rebuilt"]]:
    """Prompt + answer messages for one step, and where the prompt came from."""
    step = steps[index]
    if is_recorded_prompt(step.output):
        messages = [dict(m) for m in step.output.messages]
        answer = step.output.raw_text
        source: Literal["recorded", "rebuilt"] = "recorded"
    else:
        messages = rebuild_prompt_messages(run, episode, steps, index, options.prompt,
                                           include_thought=options.include_thought)
        answer = render_expert_answer(step.output, step.observation, episode.platform,
                                      options.prompt, include_thought=options.include_thought)
        source = "rebuilt"
    messages.append({"role": "assistant", "content": answer})
    return messages, source


def _step_key(step: StepRecord) -> str:
    actions = [a.model_dump(mode="json") for a in step.output.actions]
    return step.observation.screenshot_sha256 + json.dumps(actions, sort_keys=True)


def _usable(step: StepRecord) -> str | None:
    """Why a step cannot be a training target, or None."""
    if step.output.error:
        return "policy error"
    if not step.output.actions:
        return "no valid action"
    return None


def iter_samples(run: RunDir, options: SFTExportOptions, *,
                 step_filter: StepFilter | None = None,
                 skipped: dict[str, int] | None = None,
                 counts: dict[str, int] | None = None) -> Iterable[SFTSample]:
    """The samples of `run` selected by `options` (neutral form), in results order."""
    skipped = skipped if skipped is not None else {}
    counts = counts if counts is not None else {}

    def skip(reason: str, n: int = 1) -> None:
        skipped[reason] = skipped.get(reason, 0) + n

    per_task: dict[str, int] = {}
    seen: set[str] = set()
    results: list[EpisodeResult] = run.results()
    counts["episodes_seen"] = len(results)
    counts["episodes_kept"] = 0
    for result in results:
        if options.successful_only and not result.success:
            skip("episode not successful")
            continue
        if options.min_reward is not None and result.reward < options.min_reward:
            skip(f"episode reward < {options.min_reward}")
            continue
        if (options.max_episodes_per_task is not None
                and per_task.get(result.task_id, 0) >= options.max_episodes_per_task):
            skip("per-task cap reached")
            continue
        episode = run.episode(result.episode_id)
        steps = run.steps(result.episode_id)
        kept_any = False
        if options.per_episode:
            sample = _episode_sample(run, episode, result, steps, options, step_filter,
                                     seen, skip)
            if sample is not None:
                kept_any = True
                yield sample
        else:
            for index, step in enumerate(steps):
                reason = None if options.include_invalid_steps else _usable(step)
                if reason is None and step_filter is not None and not step_filter(episode, step):
                    reason = "rejected by step filter"
                if reason is None and options.dedupe:
                    key = _step_key(step)
                    if key in seen:
                        reason = "duplicate (screenshot, action)"
                    seen.add(key)
                if reason is not None:
                    skip(reason)
                    continue
                messages, source = step_sample_messages(run, episode, steps, index, options)
                kept_any = True
                yield SFTSample(
                    sample_id=f"{result.episode_id}/{step.index}", episode_id=result.episode_id,
                    task_id=result.task_id, seed=result.seed, step=step.index,
                    reward=result.reward, success=result.success, source=source,
                    messages=messages, images=_image_shas(messages))
        if kept_any:
            per_task[result.task_id] = per_task.get(result.task_id, 0) + 1
            counts["episodes_kept"] += 1


def _episode_sample(run: RunDir, episode: EpisodeRecord, result: EpisodeResult,
                    steps: list[StepRecord], options: SFTExportOptions,
                    step_filter: StepFilter | None, seen: set[str],
                    skip: Callable[..., None]) -> SFTSample | None:
    if not steps:
        skip("episode without steps")
        return None
    bad = [s for s in steps if (not options.include_invalid_steps and _usable(s))
           or (step_filter is not None and not step_filter(episode, s))]
    if bad:
        skip("episode with an unusable or rejected step")
        return None
    if options.dedupe:
        key = "|".join(_step_key(s) for s in steps)
        if key in seen:
            skip("duplicate episode")
            return None
        seen.add(key)
    # The last step's prompt replays the history as turns; its answer closes the episode.
    messages, source = step_sample_messages(run, episode, steps, len(steps) - 1, options)
    return SFTSample(
        sample_id=result.episode_id, episode_id=result.episode_id, task_id=result.task_id,
        seed=result.seed, step=None, reward=result.reward, success=result.success,
        source=source, messages=messages, images=_image_shas(messages))


# ---------------------------------------------------------------------------- formats


def _image_path(sha: str) -> str:
    return f"{IMAGES_DIR}/{sha}.png"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(item.get("text", "") for item in content if item.get("type") == "text")


def to_qwen(sample: SFTSample) -> dict[str, Any]:
    """Messages as Qwen-VL's chat template consumes them (images by relative path)."""
    messages = []
    for message in sample.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image", "image": _image_path(item["sha256"])}
                       if item.get("type") == "image" else dict(item) for item in content]
        messages.append({"role": message["role"], "content": content})
    return {"id": sample.sample_id, "messages": messages, "meta": _meta(sample)}


def to_llamafactory(sample: SFTSample) -> dict[str, Any]:
    """LLaMA-Factory sharegpt/multimodal: content strings with one `<image>` per image."""
    messages = []
    for message in sample.messages:
        content = message["content"]
        if isinstance(content, list):
            content = "".join("<image>" if item.get("type") == "image" else item.get("text", "")
                              for item in content)
        messages.append({"role": message["role"], "content": content})
    return {"messages": messages, "images": [_image_path(s) for s in sample.images]}


def to_trl(sample: SFTSample) -> dict[str, Any]:
    """TRL's conversational vision format: content lists, images column in order."""
    messages = []
    for message in sample.messages:
        content = message["content"]
        if isinstance(content, list):
            items = [{"type": "image"} if item.get("type") == "image"
                     else {"type": "text", "text": item.get("text", "")} for item in content]
        else:
            items = [{"type": "text", "text": content}]
        messages.append({"role": message["role"], "content": items})
    return {"messages": messages, "images": [_image_path(s) for s in sample.images]}


def _meta(sample: SFTSample) -> dict[str, Any]:
    return sample.model_dump(include={"episode_id", "task_id", "seed", "step", "reward",
                                      "success", "source"})


LLAMAFACTORY_DATASET_INFO: dict[str, Any] = {
    LLAMAFACTORY_DATASET_NAME: {
        "file_name": "data.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }
}


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / REPORT_FILE).exists():
        raise ExportError(f"{out_dir} exists and is not an earlier export (no {REPORT_FILE}): "
                          "choose a new --out directory")
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)


def copy_image(run: RunDir, sha: str, out_dir: Path) -> None:
    """Put RUN/screenshots/<sha>.png into OUT/images/ once (hard link when possible)."""
    target = out_dir / IMAGES_DIR / f"{sha}.png"
    if target.exists():
        return
    source = run.screenshot_path(sha)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def export_sft(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               options: SFTExportOptions | None = None, *,
               step_filter: StepFilter | None = None) -> ExportReport:
    """Export the SFT samples of one run directory to `out_dir`; returns the report
    (also written to OUT/export.json). Raises ExportError when nothing is selected."""
    options = options or SFTExportOptions()
    run = RunDir(run_dir)
    out = Path(out_dir)
    _prepare_out(out)
    skipped: dict[str, int] = {}
    counts: dict[str, int] = {}
    converter = SFT_CONVERTERS[options.format]
    rows: list[dict[str, Any]] = []
    images: set[str] = set()
    for sample in iter_samples(run, options, step_filter=step_filter, skipped=skipped,
                               counts=counts):
        for sha in sample.images:
            if sha not in images:
                copy_image(run, sha, out)
                images.add(sha)
        rows.append(converter(sample))
    if not rows:
        raise ExportError(
            f"no samples selected from {run.path} ({counts.get('episodes_seen', 0)} finished "
            f"episodes; skipped: {skipped or 'nothing'}): relax the filters or check the run")
    data_file = write_sft_rows(out, rows, options.format)
    report = ExportReport(
        kind="sft", format=options.format, source_run=str(run.path),
        options=options.model_dump(mode="json"), episodes_seen=counts["episodes_seen"],
        episodes_kept=counts["episodes_kept"], samples=len(rows), images=len(images),
        skipped=skipped, data_file=data_file)
    atomic_write_bytes(out / REPORT_FILE, report.model_dump_json(indent=2).encode(), fsync=False)
    for problem in run.problems:
        logger.warning("%s", problem)
    return report


def write_sft_rows(out: Path, rows: list[dict[str, Any]], format: str) -> str:
    """Write converted samples as OUT/data.json (+ dataset_info.json) for llamafactory or
    OUT/data.jsonl otherwise; returns the data file's name."""
    if format == "llamafactory":
        atomic_write_bytes(out / "data.json", json.dumps(rows, ensure_ascii=False, indent=1)
                           .encode(), fsync=False)
        atomic_write_bytes(out / "dataset_info.json",
                           json.dumps(LLAMAFACTORY_DATASET_INFO, indent=2).encode(), fsync=False)
        return "data.json"
    atomic_write_bytes(out / "data.jsonl", "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), fsync=False)
    return "data.jsonl"


SFT_CONVERTERS: dict[str, Callable[[SFTSample], dict[str, Any]]] = {
    "qwen": to_qwen, "llamafactory": to_llamafactory, "trl": to_trl}


def read_export_report(data_dir: str | os.PathLike[str]) -> ExportReport:
    """The export.json of an export directory (ExportError when it is not one)."""
    path = Path(data_dir) / REPORT_FILE
    if not path.exists():
        raise ExportError(f"{data_dir} has no {REPORT_FILE}: not a `cua export sft` directory")
    return ExportReport.model_validate_json(path.read_bytes())


__all__ = [
    "LLAMAFACTORY_DATASET_INFO", "SFT_CONVERTERS", "SFT_FORMATS", "ExportError", "ExportReport", "SFTExportOptions",
    "SFTFormat", "SFTSample", "StepFilter", "export_sft", "iter_samples", "read_export_report",
    "rebuild_prompt_messages", "render_expert_answer", "step_sample_messages", "to_llamafactory",
    "to_qwen", "to_trl", "write_sft_rows",
]
