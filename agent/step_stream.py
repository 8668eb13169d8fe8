"""The live step stream of `cua run`: what each step did, printed as it happens.

A recorder tee (`StreamingRecorder`) sits over the EpisodeRecorder protocol of
trajectories.store: every record goes to the run directory first, then to the stream, so
the stream never shows a step the record does not hold. `StreamingRunWriter` wraps a
RunWriter the same way the safety layer's redacting writer does (execute_run wraps it in
that one when secrets are configured, so the stream shows redacted text too).

Modes: ``text`` (a few readable lines per step: the thought shortened, each action in
words with its coordinates, timings, errors and the user's interventions), ``json`` (one
JSON object per line: ``{"event": "start" | "step" | "result", ...}``; the step event
holds the full thought and every action as recorded), ``quiet`` (nothing).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.markup import escape

from actions.observation import Observation
from actions.words import action_in_words
from trajectories.record import EpisodeRecord, EpisodeResult, ObservationMeta, StepRecord
from trajectories.store import WrappedRunWriter

StreamMode = Literal["text", "json", "quiet"]

THOUGHT_CHARS = 160


def shorten(text: str | None, limit: int = THOUGHT_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def interventions_of(record: StepRecord) -> list[dict[str, Any]]:
    """What the user did at this step (agent.human records it in the observation info)."""
    return [e.observation.info["intervention"] for e in record.executions
            if e.observation is not None and "intervention" in e.observation.info]


def step_event(record: StepRecord) -> dict[str, Any]:
    """The JSON event of one step (what `--json` prints)."""
    out = record.output
    executed = [e.observation for e in record.executions if e.observation is not None]
    return {
        "event": "step", "episode_id": record.episode_id, "step": record.index + 1,
        "thought": out.thought, "actions": [
            {**a.model_dump(mode="json"), "words": action_in_words(a)} for a in out.actions],
        "policy_s": round(record.policy_s, 4), "env_s": round(record.env_s, 4),
        "model_latency_s": out.latency_s,
        "execute_s": [o.execute_s for o in executed], "settle_s": [o.settle_s for o in executed],
        "parse_errors": list(out.parse_errors),
        "action_errors": [o.action_error for o in executed if o.action_error],
        "feedback": record.feedback, "error": record.error or out.error,
        "interventions": interventions_of(record),
        "screen": (executed[-1].app or executed[-1].url) if executed else None,
    }


class StepStream:
    """Writes the stream of one `cua run` (see the module docstring)."""

    def __init__(self, mode: StreamMode = "text", *, console: Console | None = None,
                 json_out: TextIO | None = None) -> None:
        self.mode = mode
        self.console = console or Console(stderr=False, highlight=False, soft_wrap=True)
        self.json_out = json_out or sys.stdout

    def _json(self, event: dict[str, Any]) -> None:
        self.json_out.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.json_out.flush()

    def started(self, record: EpisodeRecord) -> None:
        if self.mode == "json":
            self._json({"event": "start", "episode_id": record.episode_id,
                        "instruction": record.instruction, "platform": record.platform,
                        "policy": record.policy, "reset_s": record.reset_s})
        elif self.mode == "text":
            self.console.print(f"[bold]{escape(record.instruction)}[/bold] "
                               f"[dim]({record.platform}, {escape(record.policy)}, reset "
                               f"{record.reset_s or 0:.2f}s)[/dim]")

    def step(self, record: StepRecord) -> None:
        if self.mode == "json":
            self._json(step_event(record))
            return
        if self.mode != "text":
            return
        event = step_event(record)
        timing = f"policy {record.policy_s:.2f}s · env {record.env_s:.2f}s"
        settle = [s for s in event["settle_s"] if s is not None]
        if settle:
            timing += f" (settle {sum(settle):.2f}s)"
        print_ = self.console.print
        print_(f"[bold cyan]step {event['step']}[/bold cyan] [dim]{timing}[/dim]")
        if record.output.thought:
            print_(f"  [italic]{escape(shorten(record.output.thought))}[/italic]")
        for action in record.output.actions:
            print_(f"  → {escape(action_in_words(action))}")
        for intervention in event["interventions"]:
            print_(f"  [magenta]user: {escape(_intervention_words(intervention))}[/magenta]")
        for message in [*event["parse_errors"], *event["action_errors"]]:
            print_(f"  [red]✗ {escape(shorten(message, 300))}[/red]")
        if event["error"]:
            print_(f"  [red]✗ {escape(shorten(event['error'], 300))}[/red]")

    def finished(self, result: EpisodeResult) -> None:
        if self.mode == "json":
            self._json({"event": "result", **result.model_dump(mode="json")})


def _intervention_words(intervention: dict[str, Any]) -> str:
    kind = intervention.get("kind", "?")
    if kind == "edit":
        return f"edited the text to {json.dumps(intervention.get('text'), ensure_ascii=False)}"
    return {"approve": "approved", "skip": "skipped the action (refused)",
            "stop": "stopped the episode", "resume": "paused, acted by hand, resumed",
            "end": "paused and ended the episode"}.get(kind, kind)


class StreamingRecorder:
    """An EpisodeRecorder tee: records through `inner`, then shows it on `stream`."""

    def __init__(self, inner: Any, stream: StepStream) -> None:
        self.inner = inner
        self.stream = stream

    def observation(self, obs: Observation) -> ObservationMeta:
        return self.inner.observation(obs)

    def start(self, record: EpisodeRecord) -> None:
        self.inner.start(record)
        self.stream.started(record)

    def step(self, record: StepRecord) -> None:
        self.inner.step(record)
        self.stream.step(record)

    def finish(self, result: EpisodeResult) -> None:
        self.inner.finish(result)
        self.stream.finished(result)


class StreamingRunWriter(WrappedRunWriter):
    """A RunWriter whose episode recorders also stream (everything else is the inner's)."""

    def __init__(self, inner: Any, stream: StepStream) -> None:
        super().__init__(inner, lambda recorder: StreamingRecorder(recorder, stream))
        self.stream = stream


__all__ = ["StepStream", "StreamingRecorder", "StreamingRunWriter", "shorten", "step_event"]
