"""Run a grounder over grounding samples into an ordinary run directory (resumable).

The loop is simple on purpose: samples go to the grounder in batches (one batched
`generate` for the in-process policy, concurrent requests for a served one), each answer
is judged (`benchmarks.grounding.metric`) and recorded as a one-step episode of the usual
trajectory store (`trajectories.store`), so `cua view` shows every sample — the image,
the target region and the predicted point — and rerunning the same command resumes.

Per sample the step's observation `info["grounding"]` holds the judged result: outcome
(correct / wrong / wrong_format), the predicted point in image pixels (unrounded), refused,
why no point was read, and the fields the tables group by. The step's `output` is the
policy's full PolicyOutput (raw text, prompt messages, token ids, latency).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from actions.contracts import PolicyOutput, Task
from actions.models import Click
from actions.observation import Size
from agent.engine.policy_service import PolicyClient
from benchmarks.grounding.data import GroundingSample
from benchmarks.grounding.metric import inside_point, judge
from benchmarks.grounding.tables import SampleScore
from policies.grounding import GroundingAnswer, GroundingProfile, read_grounding_answer
from trajectories.record import (
    EpisodeRecord,
    EpisodeResult,
    ObservationMeta,
    StepRecord,
    episode_key,
    screenshot_sha256,
)
from trajectories.store import SCREENSHOTS, RunDir, RunWriter

logger = logging.getLogger(__name__)

__all__ = [
    "Grounder", "GroundingPrediction", "GroundingRunSummary", "OracleGrounder",
    "PolicyGrounder", "RandomGrounder", "read_scores", "run_grounding",
]


class GroundingPrediction(BaseModel):
    """A grounder's answer to one sample: the point it names and the policy output."""

    answer: GroundingAnswer
    output: PolicyOutput


class Grounder(Protocol):
    """Answers batches of (sample, RGB PIL image)."""

    name: str

    def ground(self, batch: list[tuple[GroundingSample, Any]]) -> list[GroundingPrediction]: ...


class PolicyGrounder:
    """A model policy (qwen3vl in-process, openai served) prompted by a grounding profile."""

    def __init__(self, policy: Any, profile: GroundingProfile):
        if not hasattr(policy, "answer"):
            raise TypeError(f"policy {getattr(policy, 'name', policy)!r} cannot answer "
                            "prebuilt prompts (it has no answer() method)")
        self.policy = policy
        self.profile = profile
        self.name = f"{policy.name} [{profile.name}]"
        # the engine's policy service: one batched generate in-process, concurrent
        # requests to a server — as for episode steps
        self.client = PolicyClient(policy)

    def ground(self, batch: list[tuple[GroundingSample, Any]]) -> list[GroundingPrediction]:
        prompts = [self.profile.build(image, sample.instruction) for sample, image in batch]
        outputs = self.client.answer(prompts)
        predictions = []
        for prompt, output in zip(prompts, outputs, strict=True):
            if output.error:
                answer = GroundingAnswer(error=f"policy error: {output.error}")
            else:
                answer = read_grounding_answer(output.raw_text, prompt.converter,
                                               self.profile.read_call,
                                               self.profile.terminate_refuses)
            predictions.append(GroundingPrediction(answer=answer, output=output))
        return predictions

    def close(self) -> None:
        """Close the policy service, then the policy."""
        self.client.close()
        close = getattr(self.policy, "close", None)
        if close is not None:
            close()


def _scripted_output(name: str, point: tuple[float, float] | None, size: Size) -> PolicyOutput:
    if point is None:
        return PolicyOutput(raw_text="refuse", model=name)
    x = min(max(int(point[0]), 0), size.width - 1)
    y = min(max(int(point[1]), 0), size.height - 1)
    return PolicyOutput(raw_text=f"point ({point[0]:.2f}, {point[1]:.2f})", model=name,
                        actions=[Click(x=x, y=y)])


class OracleGrounder:
    """The perfect grounder: points inside the target (refuses refusal samples). It
    checks the data and the metric, not a model."""

    name = "oracle"

    def ground(self, batch: list[tuple[GroundingSample, Any]]) -> list[GroundingPrediction]:
        out = []
        for sample, image in batch:
            size = Size(width=image.width, height=image.height)
            if sample.region.kind == "refusal":
                out.append(GroundingPrediction(answer=GroundingAnswer(point_px=(-1.0, -1.0),
                                                                      refused=True),
                                               output=_scripted_output(self.name, None, size)))
                continue
            point = inside_point(sample.region)
            out.append(GroundingPrediction(answer=GroundingAnswer(point_px=point),
                                           output=_scripted_output(self.name, point, size)))
        return out


class RandomGrounder:
    """Points uniformly at random over the image (never refuses): its accuracy estimates
    the mean fraction of the image the targets cover — the chance level."""

    name = "random"

    def __init__(self, seed: int = 0):
        self._random = random.Random(seed)

    def ground(self, batch: list[tuple[GroundingSample, Any]]) -> list[GroundingPrediction]:
        out = []
        for _, image in batch:
            size = Size(width=image.width, height=image.height)
            point = (self._random.uniform(0, image.width), self._random.uniform(0, image.height))
            out.append(GroundingPrediction(answer=GroundingAnswer(point_px=point),
                                           output=_scripted_output(self.name, point, size)))
        return out


class GroundingRunSummary(BaseModel):
    out_dir: str
    total: int
    skipped: int
    ran: int
    scores: list[SampleScore]
    wall_s: float


def _store_image(run: RunWriter, path: Path) -> tuple[str, Any]:
    """Store the sample image in the run (PNG bytes as they are; other formats converted
    losslessly to PNG) and return (sha256, RGB PIL image)."""
    import io

    from PIL import Image

    data = path.read_bytes()
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.format != "PNG":
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    sha = screenshot_sha256(data)
    target = run.path / SCREENSHOTS / f"{sha}.png"
    if not target.exists() and image.format == "PNG":
        try:  # a hard link costs no space for multi-megabyte benchmark screenshots
            target.hardlink_to(path)
        except OSError:
            run.save_screenshot(data)
    else:
        run.save_screenshot(data)
    return sha, image if image.mode == "RGB" else image.convert("RGB")


def _batches(items: list[GroundingSample], size: int) -> Iterator[list[GroundingSample]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_grounding(samples: list[GroundingSample], grounder: Grounder, out_dir: str | Path,
                  config: dict[str, Any], *, batch_size: int = 8,
                  invocation: dict[str, Any] | None = None, console: Console | None = None,
                  show_progress: bool = True) -> GroundingRunSummary:
    """Ground every sample not yet recorded in `out_dir`, recording each as it finishes.

    `config` is the run's identity (benchmark, data folder, policy, profile, options):
    resuming into `out_dir` requires the same config (RunConfigMismatch otherwise).
    Returns the scores of all recorded samples (earlier runs included).
    """
    started = time.monotonic()
    console = console or Console()
    # no fsync per record: a kill -9 loses nothing either way (see trajectories.store), and
    # thousands of one-step episodes would otherwise wait on the disk
    writer = RunWriter(out_dir, config, invocation=invocation, fsync=False)
    suite = config.get("suite", samples[0].benchmark if samples else "grounding")
    done = writer.finished_keys()
    todo = [s for s in samples if episode_key(suite, s.sample_id, 0) not in done]
    for sample in todo:
        writer.discard_episode(sample.sample_id)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("correct {task.fields[rate]}"),
                        TimeElapsedColumn(), console=console, disable=not show_progress)
    correct = ran = 0
    with progress:
        bar = progress.add_task(f"{suite} [{grounder.name}]", total=len(todo), rate="-")
        for batch in _batches(todo, batch_size):
            loaded = [(_store_image(writer, s.image_path), s) for s in batch]
            asked = time.time()
            call_started = time.monotonic()
            predictions = grounder.ground([(s, image) for (_, image), s in loaded])
            policy_s = time.monotonic() - call_started
            for ((sha, image), sample), prediction in zip(loaded, predictions, strict=True):
                outcome = _record(writer, suite, sample, sha, image, prediction, asked,
                                  policy_s, grounder.name)
                ran += 1
                correct += outcome == "correct"
                progress.update(bar, advance=1, rate=f"{100 * correct / ran:.1f}%")
    return GroundingRunSummary(out_dir=str(out_dir), total=len(samples),
                               skipped=len(samples) - len(todo), ran=ran,
                               scores=read_scores(out_dir), wall_s=time.monotonic() - started)


def _record(writer: RunWriter, suite: str, sample: GroundingSample, sha: str, image: Any,
            prediction: GroundingPrediction, asked: float, policy_s: float,
            grounder_name: str) -> str:
    answer = prediction.answer
    image_size = sample.image_size or (image.width, image.height)
    relative = False
    if (sample.benchmark == "osworld-g" and answer.point_px is not None
            and all(0 <= v <= 1 for v in answer.point_px)):
        # OSWorld-G's scorer reads a prediction whose coordinates all lie in [0, 1] as
        # fractions of the image; so do we, and the table says how many were read so.
        relative = True
        answer = answer.model_copy(update={"point_px": (
            answer.point_px[0] * image_size[0], answer.point_px[1] * image_size[1])})
    fractions = sample.benchmark.startswith("screenspot")  # their scripts compare fractions
    outcome = judge(sample.region, answer.point_px, answer.refused,
                    answer.point_frac if fractions else None,
                    image_size if fractions else None)
    size = Size(width=image.width, height=image.height)
    grounding = {**sample.table_fields(), "outcome": outcome, "read_as_relative": relative,
                 "point_px": list(answer.point_px) if answer.point_px else None,
                 "refused": answer.refused, "error": answer.error,
                 "image_path": str(sample.image_path)}
    observation = ObservationMeta(screenshot_sha256=sha, screen_size=size, screenshot_size=size,
                                  timestamp=asked, instruction=sample.instruction,
                                  info={"grounding": grounding})
    task = Task(suite=suite, task_id=sample.sample_id, instruction=sample.instruction,
                max_steps=1, config={"grounding": grounding})
    episode = writer.start_episode(sample.sample_id)
    episode.start(EpisodeRecord(episode_id=sample.sample_id, key=task.key, task=task,
                                instruction=sample.instruction, policy=grounder_name,
                                platform=sample.platform or "desktop", started_at=asked,
                                initial_observation=observation))
    output = prediction.output
    episode.step(StepRecord(episode_id=sample.sample_id, index=0, started_at=asked,
                            observation=observation, output=output, policy_s=policy_s,
                            error=output.error and f"PolicyError: {output.error}"))
    episode.finish(EpisodeResult(
        episode_id=sample.sample_id, suite=suite, task_id=sample.sample_id, seed=0,
        instruction=sample.instruction, success=outcome == "correct",
        reward=1.0 if outcome == "correct" else 0.0, steps=1,
        parse_errors=int(outcome == "wrong_format"), terminated_by="answer",
        answer=outcome, error=output.error and f"PolicyError: {output.error}",
        wall_time_s=policy_s, started_at=asked))
    return outcome


def read_scores(out_dir: str | Path) -> list[SampleScore]:
    """The judged samples recorded in a grounding run directory."""
    run = RunDir(out_dir)
    scores: dict[str, SampleScore] = {}
    finished = {r.episode_id for r in run.results()}
    for episode_id in run.episode_ids():
        if episode_id not in finished:
            continue
        for step in run.steps(episode_id):
            info = step.observation.info.get("grounding")
            if info is None:
                continue
            scores[episode_id] = SampleScore(
                sample_id=episode_id, outcome=info["outcome"], platform=info.get("platform"),
                ui_type=info.get("ui_type"), group=info.get("group"),
                application=info.get("application"),
                categories=list(info.get("categories") or []),
                read_as_relative=bool(info.get("read_as_relative")))
    return list(scores.values())
