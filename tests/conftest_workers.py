"""Picklable test suites for the worker tests (worker processes import this module).

`WorkerSuite` is `conftest_loop.ScriptedSuite` (task 'long-N' needs N clicks, 'crash'
crashes its environment) plus task 'gate': its first step announces the worker's pid in
`gate_dir/pid-<seed>` and then waits (polling, with a deadline) until `gate_dir/release`
exists, so a test can kill or starve the worker at a known point of an episode.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest_loop import CLICK, ScriptedEnv, ScriptedPolicy, out, wait_for  # noqa: F401 (re-exported)

from actions.contracts import Task
from actions.models import Action
from actions.observation import Observation

GATE_DEADLINE_S = 120.0


class GateEnv(ScriptedEnv):
    """ScriptedEnv with the 'gate' task (see module docstring)."""

    def __init__(self, gate_dir: str | None = None) -> None:
        super().__init__()
        self.gate_dir = Path(gate_dir) if gate_dir else None
        self.resets_here = 0

    def reset(self, task: Task) -> Observation:
        self.task = task
        self.crash_on_step = 1 if task.task_id == "crash" else None
        self.done_after = (int(task.task_id.split("-")[1]) if task.task_id.startswith("long-")
                           else 1)
        return super().reset(task)

    def step(self, action: Action) -> Observation:
        if self.task.task_id == "gate" and self.gate_dir is not None:
            (self.gate_dir / f"pid-{self.task.seed}").write_text(str(os.getpid()))
            deadline = time.monotonic() + GATE_DEADLINE_S
            while not (self.gate_dir / "release").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("gate never released")
                time.sleep(0.02)  # polling interval of a condition with a deadline
        return super().step(action)


class WorkerSuite:
    """A picklable Suite over GateEnv; tasks: a, b, long-3, crash, gate."""

    name = "unit"
    platform = "web"

    def __init__(self, tasks: tuple[str, ...] = ("a", "b", "crash", "gate", "long-3")) -> None:
        self.tasks = sorted(tasks)

    def list_tasks(self) -> list[str]:
        return list(self.tasks)

    def make_task(self, task_id: str, seed: int, **overrides) -> Task:
        if task_id not in self.tasks:
            raise KeyError(f"unknown unit task {task_id!r}")
        return Task(suite=self.name, task_id=task_id, seed=seed, instruction=f"do {task_id}",
                    **{"max_steps": 10, **overrides})

    def make_environment(self, **options) -> GateEnv:
        return GateEnv(**options)

    def make_expert(self, env) -> ScriptedPolicy:
        return ScriptedPolicy([out(CLICK)], name="oracle")


def signature(results) -> list[tuple]:
    """What must be identical between runs: per episode key, outcome and step count."""
    return sorted((r.key, r.episode_id, r.success, r.reward, r.steps, r.terminated_by,
                   (r.error or "").split(":")[0]) for r in results)


class HearingEnv(GateEnv):
    """GateEnv with the engine's `notify_output` hook: every policy output it hears of is
    a line `[task_id, step_index, raw_text]` of `heard_dir/heard.jsonl`."""

    def __init__(self, heard_dir: str) -> None:
        super().__init__()
        self.heard = Path(heard_dir) / "heard.jsonl"

    def notify_output(self, step_index: int, raw_text: str) -> None:
        with open(self.heard, "a", encoding="utf-8") as heard:
            heard.write(json.dumps([self.task.task_id, step_index, raw_text]) + "\n")


class HearingSuite(WorkerSuite):
    """WorkerSuite over HearingEnv (picklable: worker processes and the service build it)."""

    def __init__(self, heard_dir: str) -> None:
        super().__init__()
        self.heard_dir = heard_dir

    def make_environment(self, **options) -> HearingEnv:
        return HearingEnv(self.heard_dir)
