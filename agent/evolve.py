"""The self-evolving data loop: roll out, judge, keep, export, train, evaluate; repeat.

Each round ``r`` of `evolve(options)` writes ``OUT/round-<r>/``::

    rollouts/     run directory: `group` episodes per task (fresh seeds each round) by the
                  current policy (round 0: the seed policy, e.g. the suite's oracle)
    verdicts.jsonl  one line per episode: environment reward, the critic's step verdicts
                  (GOOD / NEUTRAL / HARMFUL, when a critic is set) and whether it was kept
    sft/          `cua export sft` of the kept episodes (HARMFUL steps left out)
    checkpoint/   the model trained on sft/ from the current checkpoint (`cua train sft`)
    eval/         run directory: the new checkpoint on the evaluation seeds

and ``OUT/evolve.json`` (the per-round, per-task success rates). Running the same
command again resumes: finished rollouts, exports, checkpoints and evaluations are kept.

Judging: an episode passes when its environment reward says success (and its reward is
at least `min_reward`, if set). With a critic (a Qwen-VL checkpoint used as a judge),
every step of a passing episode is shown to it as the screenshot before, the screenshot
after and the action taken, and it answers GOOD, NEUTRAL or HARMFUL; HARMFUL steps are
not trained on, and an episode with more than `max_harmful_steps` of them fails its
trajectory-level verdict and is dropped entirely.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from agent.config import Limits, OutputConfig, PolicyOptions, RunConfig
from agent.runner import RunSummary, run_suite
from policies.prompting import PromptConfig
from trajectories.record import EpisodeRecord, EpisodeResult, StepRecord
from trajectories.store import RunDir

logger = logging.getLogger(__name__)

Verdict = Literal["GOOD", "NEUTRAL", "HARMFUL"]
VERDICTS: tuple[str, ...] = ("GOOD", "NEUTRAL", "HARMFUL")
_VERDICT_RE = re.compile(r"\b(GOOD|NEUTRAL|HARMFUL)\b")

CRITIC_SYSTEM_PROMPT = (
    "You judge one step of a computer-use agent. You see the screen before the step, the "
    "screen after it, the task and the action taken. Answer with exactly one word: GOOD if "
    "the action made progress towards the task, NEUTRAL if it neither helped nor hurt, "
    "HARMFUL if it undid progress or moved away from the task."
)


class StepJudgement(BaseModel):
    """A critic's verdict on one step: the verdict, and the critic's raw answer."""

    step: int
    verdict: Verdict
    raw: str = ""


class EpisodeVerdict(BaseModel):
    """One line of verdicts.jsonl."""

    episode_id: str
    task_id: str
    reward: float
    success: bool
    steps: list[StepJudgement] = Field(default_factory=list)
    kept: bool
    reason: str


class CriticItem(BaseModel):
    """What the critic is shown for one step."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    instruction: str
    action_text: str
    before_png: bytes
    after_png: bytes | None


class Critic(Protocol):
    """Judges steps; returns one StepJudgement per item (in order)."""

    def judge(self, items: list[CriticItem]) -> list[tuple[Verdict, str]]: ...

    def close(self) -> None: ...


def parse_verdict(text: str) -> Verdict:
    """The first GOOD / NEUTRAL / HARMFUL word in a critic's answer; NEUTRAL when there is
    none (an unparsable judgement neither keeps nor removes anything)."""
    found = _VERDICT_RE.search(text.upper())
    return found.group(1) if found else "NEUTRAL"  # type: ignore[return-value]


def critic_messages(item: CriticItem) -> list[dict[str, Any]]:
    """The judge prompt (chat messages with image placeholders, before then after)."""
    content: list[dict[str, Any]] = [
        {"type": "text", "text": f"Task: {item.instruction}\nScreen before the step:"},
        {"type": "image"},
    ]
    if item.after_png is not None:
        content += [{"type": "text", "text": "Screen after the step:"}, {"type": "image"}]
    content.append({"type": "text", "text": f"Action taken: {item.action_text}\n"
                    "Verdict (GOOD, NEUTRAL or HARMFUL):"})
    return [{"role": "system", "content": CRITIC_SYSTEM_PROMPT},
            {"role": "user", "content": content}]


class QwenVLCritic:
    """A Qwen-VL checkpoint as the step judge (greedy, a few tokens per verdict)."""

    def __init__(self, model: str, *, device: str = "auto", max_new_tokens: int = 8,
                 batch_size: int = 8) -> None:
        from policies.qwen3vl import QwenVLGenerator

        self.generator = QwenVLGenerator(model, device=device)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def judge(self, items: list[CriticItem]) -> list[tuple[Verdict, str]]:
        import io

        from PIL import Image

        from policies.prompting import SamplingParams

        def rgb(png: bytes):
            return Image.open(io.BytesIO(png)).convert("RGB")

        answers: list[tuple[Verdict, str]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            prompts = [(critic_messages(i), [rgb(i.before_png)]
                        + ([rgb(i.after_png)] if i.after_png is not None else [])) for i in chunk]
            for generation in self.generator.generate(
                    prompts, SamplingParams.greedy_decoding(), self.max_new_tokens):
                answers.append((parse_verdict(generation.text), generation.text))
        return answers

    def close(self) -> None:
        self.generator.close()


class EvolveOptions(BaseModel):
    """Options of `cua evolve`.

    suite / tasks: where to roll out. policy: model policy name (qwen3vl) and `model`: its
    starting checkpoint; policy_options: further policy options (greedy, max_new_tokens,
    history_images, ...). rounds: how many rounds. group: episodes per task per round
    (seeds ``seed + r*group ...``, fresh each round). seed_policy: who rolls out in round
    0 ('oracle' = the suite's scripted expert; None = the policy itself).
    eval_episodes: episodes per task evaluating each new checkpoint on seeds
    ``eval_seed ..`` (0 = no evaluation). max_steps: step budget per episode.
    min_reward: also require this reward to keep an episode. critic_model: a Qwen-VL
    checkpoint judging steps (None = no critic); max_harmful_steps: more HARMFUL steps
    than this drop the episode. train: overrides of TrainSFTOptions (epochs,
    learning_rate, lora, ...). no_thought: train on tool calls only for expert steps.
    """

    model_config = ConfigDict(frozen=True)

    suite: str = "miniwob"
    tasks: tuple[str, ...]
    policy: str = "qwen3vl"
    model: str
    policy_options: dict[str, Any] = Field(default_factory=dict)
    rounds: int = Field(1, ge=1)
    group: int = Field(4, ge=1)
    seed: int = 0
    seed_policy: str | None = None
    eval_episodes: int = Field(0, ge=0)
    eval_seed: int = 100_000
    max_steps: int | None = Field(None, ge=1)
    min_reward: float | None = None
    critic_model: str | None = None
    critic_device: str = "auto"
    max_harmful_steps: int = Field(0, ge=0)
    train: dict[str, Any] = Field(default_factory=dict)
    no_thought: bool = False
    history_images: int = Field(2, ge=0)
    out: Path


class RoundSummary(BaseModel):
    """One round: who rolled out, rollout and evaluation success per task, data sizes."""

    round: int
    rollout_policy: str
    checkpoint_in: str
    checkpoint_out: str | None
    rollout_success: dict[str, float]
    eval_success: dict[str, float] = Field(default_factory=dict)
    episodes: int
    kept_episodes: int
    samples: int
    harmful_steps: int = 0


def _rates(summary: RunSummary) -> dict[str, float]:
    return {s.task_id: s.success_rate for s in summary.per_task()}


def _action_text(step: StepRecord) -> str:
    return "; ".join(json.dumps(a.model_dump(mode="json"), ensure_ascii=False)
                     for a in step.output.actions) or "(no action)"


def judge_run(run: RunDir, results: list[EpisodeResult], options: EvolveOptions,
              critic: Critic | None) -> list[EpisodeVerdict]:
    """Environment reward, then (for passing episodes) the critic's step verdicts."""
    verdicts: list[EpisodeVerdict] = []
    for result in results:
        passed = result.success and (options.min_reward is None
                                     or result.reward >= options.min_reward)
        if not passed:
            verdicts.append(EpisodeVerdict(episode_id=result.episode_id, task_id=result.task_id,
                                           reward=result.reward, success=result.success,
                                           kept=False, reason="environment: not successful"
                                           if not result.success else "reward below minimum"))
            continue
        judgements: list[StepJudgement] = []
        if critic is not None:
            steps = run.steps(result.episode_id)
            items = []
            for step in steps:
                after = next((e.observation for e in reversed(step.executions)
                              if e.observation is not None), None)
                items.append(CriticItem(
                    instruction=result.instruction, action_text=_action_text(step),
                    before_png=run.screenshot(step.observation.screenshot_sha256),
                    after_png=run.screenshot(after.screenshot_sha256) if after else None))
            for step, (verdict, raw) in zip(steps, critic.judge(items), strict=True):
                judgements.append(StepJudgement(step=step.index, verdict=verdict, raw=raw))
        harmful = sum(j.verdict == "HARMFUL" for j in judgements)
        kept = harmful <= options.max_harmful_steps
        verdicts.append(EpisodeVerdict(
            episode_id=result.episode_id, task_id=result.task_id, reward=result.reward,
            success=result.success, steps=judgements, kept=kept,
            reason="kept" if kept else f"critic: {harmful} harmful steps"))
    return verdicts


def summary_table(rounds: list[RoundSummary], tasks: list[str]) -> Table:
    """Success rate per task per round: rollouts (by the round's policy) and evaluation of
    the checkpoint trained in that round."""
    table = Table(title="cua evolve: success rate per task per round")
    table.add_column("task")
    for summary in rounds:
        table.add_column(f"r{summary.round} rollout\n({summary.rollout_policy})", justify="right")
        table.add_column(f"r{summary.round} eval\n(trained)", justify="right")
    for task in [*tasks, "kept / samples"]:
        cells = []
        for summary in rounds:
            if task == "kept / samples":
                cells += [f"{summary.kept_episodes}/{summary.episodes}", str(summary.samples)]
                continue
            rollout = summary.rollout_success.get(task)
            evaluation = summary.eval_success.get(task)
            cells += [f"{rollout:.0%}" if rollout is not None else "-",
                      f"{evaluation:.0%}" if evaluation is not None else "-"]
        table.add_row(task, *cells, style="dim" if task == "kept / samples" else None)
    return table


def evolve(options: EvolveOptions, *, console: Console | None = None,
           make_critic: Callable[[EvolveOptions], Critic | None] | None = None,
           show_progress: bool = True) -> list[RoundSummary]:
    """Run the rounds (resuming finished parts); returns one RoundSummary per round."""
    from policies.qwen3vl import prompt_config_from
    from policies.train_sft import TrainSFTOptions, train_sft
    from trajectories.export_sft import ExportError, SFTExportOptions, export_sft

    console = console or Console()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(options.tasks)
    checkpoint = options.model
    prompt: PromptConfig = prompt_config_from(
        options.policy_options.get("dialect", "qwen3"), options.history_images,
        options.model if Path(options.model).exists() else None, None, None)
    critic: Critic | None = None
    if make_critic is not None:
        critic = make_critic(options)
    elif options.critic_model:
        critic = QwenVLCritic(options.critic_model, device=options.critic_device)
    summaries: list[RoundSummary] = []
    try:
        for round_index in range(options.rounds):
            folder = out / f"round-{round_index}"
            folder.mkdir(exist_ok=True)
            seeded = round_index == 0 and options.seed_policy is not None
            rollout_policy = options.seed_policy if seeded else options.policy
            assert rollout_policy is not None
            policy_options = {} if seeded else {**options.policy_options, "model": checkpoint}
            console.rule(f"round {round_index}: rollouts by {rollout_policy}"
                         + ("" if seeded else f" ({checkpoint})"))
            rollouts = run_suite(RunConfig(
                suite=options.suite, policy=rollout_policy, tasks=tasks,
                episodes_per_task=options.group, seed=options.seed + round_index * options.group,
                policy_options=PolicyOptions(**policy_options),
                limits=Limits(max_steps=options.max_steps),
                output=OutputConfig(out_dir=folder / "rollouts")),
                console=console, show_progress=show_progress)
            run = RunDir(folder / "rollouts")
            verdicts = judge_run(run, rollouts.results, options, critic)
            (folder / "verdicts.jsonl").write_text(
                "".join(v.model_dump_json() + "\n" for v in verdicts))
            kept = {v.episode_id for v in verdicts if v.kept}
            harmful = {(v.episode_id, j.step) for v in verdicts for j in v.steps
                       if j.verdict == "HARMFUL"}

            def keep_step(episode: EpisodeRecord, step: StepRecord,
                          kept: set[str] = kept, harmful: set[tuple[str, int]] = harmful) -> bool:
                return (episode.episode_id in kept
                        and (episode.episode_id, step.index) not in harmful)

            summary = RoundSummary(
                round=round_index, rollout_policy=rollout_policy, checkpoint_in=checkpoint,
                checkpoint_out=None, rollout_success=_rates(rollouts),
                episodes=len(rollouts.results), kept_episodes=len(kept), samples=0,
                harmful_steps=len(harmful))
            data = folder / "sft"
            try:
                report = export_sft(folder / "rollouts", data, SFTExportOptions(
                    format="qwen", successful_only=True, min_reward=options.min_reward,
                    include_thought=not options.no_thought, prompt=prompt),
                    step_filter=keep_step)
                summary.samples = report.samples
            except ExportError as exc:
                console.print(f"[yellow]round {round_index}: nothing to train on[/yellow] ({exc})")
            if summary.samples:
                trained = folder / "checkpoint"
                if not (trained / "config.json").exists():
                    console.print(f"training on {summary.samples} samples from {checkpoint}")
                    train_sft(TrainSFTOptions(data_dir=data, model=checkpoint, out=trained,
                                              **options.train))
                checkpoint = str(trained)
                summary.checkpoint_out = checkpoint
            if options.eval_episodes:
                console.rule(f"round {round_index}: evaluating {checkpoint}")
                evaluation = run_suite(RunConfig(
                    suite=options.suite, policy=options.policy, tasks=tasks,
                    episodes_per_task=options.eval_episodes, seed=options.eval_seed,
                    policy_options=PolicyOptions(**{**options.policy_options,
                                                    "model": checkpoint}),
                    limits=Limits(max_steps=options.max_steps),
                    output=OutputConfig(out_dir=folder / "eval")),
                    console=console, show_progress=show_progress)
                summary.eval_success = _rates(evaluation)
            summaries.append(summary)
            (out / "evolve.json").write_text(json.dumps(
                {"options": options.model_dump(mode="json"),
                 "rounds": [s.model_dump(mode="json") for s in summaries]}, indent=2))
            console.print(summary_table(summaries, tasks))
    finally:
        if critic is not None:
            critic.close()
    return summaries


__all__ = [
    "CRITIC_SYSTEM_PROMPT", "Critic", "CriticItem", "EpisodeVerdict", "EvolveOptions",
    "QwenVLCritic", "RoundSummary", "StepJudgement", "VERDICTS", "Verdict", "critic_messages",
    "evolve", "judge_run", "parse_verdict", "summary_table",
]
