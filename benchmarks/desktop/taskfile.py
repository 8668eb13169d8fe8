"""OSWorld's task JSON, read unchanged.

A task file looks like OSWorld's `evaluation_examples/examples/<domain>/<id>.json`:

    {"id": "...", "instruction": "...", "related_apps": ["..."],
     "config": [{"type": "launch", "parameters": {"command": ["xterm"]}}, ...],
     "evaluator": {"func": "exact_match" | [...], "conj": "and" | "or",
                   "result": {"type": "vm_command_line", ...} | [...],
                   "expected": {"type": "rule", "rules": {...}} | [...],
                   "options": {...} | [...], "postconfig": [setup steps]}}

Extra keys are kept (OSWorld files carry `snapshot`, `source`, `trajectory`, ...). Our
local tasks add one key OSWorld ignores: `expert`, the scripted expert's plan.
Which steps, getters and metrics this machine supports is checked by `unsupported()`;
a task that needs others still loads, and is refused at reset, before any setup step,
with one line naming all it needs (benchmarks.desktop.validate.task_problems, which also
refuses commands that would change the host).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from benchmarks.desktop.registry import GETTERS, METRICS, SETUP_STEPS

LOCAL_TASKS_DIR = Path(__file__).parent / "tasks"


class UnsupportedTaskError(RuntimeError):
    """The task needs a setup step, getter or metric that is not supported here."""


class SetupStep(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Evaluator(BaseModel):
    """OSWorld's evaluator block; list-valued fields pair up index by index."""

    model_config = ConfigDict(extra="allow")

    func: str | list[str]
    conj: str = "and"
    result: dict[str, Any] | list[dict[str, Any]] | None = None
    expected: dict[str, Any] | list[dict[str, Any] | None] | None = None
    options: dict[str, Any] | list[dict[str, Any] | None] | None = None
    postconfig: list[SetupStep] = Field(default_factory=list)

    def metrics(self) -> list[tuple[str, dict | None, dict | None, dict]]:
        """(metric name, result getter config, expected getter config, options) per metric."""
        funcs = self.func if isinstance(self.func, list) else [self.func]
        many = isinstance(self.func, list)

        def pick(value: Any, i: int) -> Any:
            if many and isinstance(value, list):
                return value[i] if i < len(value) else None
            return value

        out = []
        for i, name in enumerate(funcs):
            result = pick(self.result, i) or None
            expected = pick(self.expected, i) or None
            options = pick(self.options, i) or {}
            out.append((name, result, expected, options))
        return out


class OSWorldTask(BaseModel):
    """One task in OSWorld's JSON shape; `domain` is the folder it was read from."""

    model_config = ConfigDict(extra="allow")

    id: str
    instruction: str
    config: list[SetupStep] = Field(default_factory=list)
    evaluator: Evaluator
    related_apps: list[str] = Field(default_factory=list)
    domain: str = ""
    expert: list[dict[str, Any]] | None = Field(
        None, description="qwen-cua extension: the scripted expert's plan (local tasks)."
    )

    def unsupported(self) -> list[str]:
        """What this task needs that is not implemented here (empty: runnable)."""
        missing = [f"setup step {s.type!r}" for s in self.config + self.evaluator.postconfig
                   if s.type not in SETUP_STEPS]
        for name, result, expected, _ in self.evaluator.metrics():
            if name != "infeasible" and name not in METRICS:
                missing.append(f"metric {name!r}")
            for getter in (result, expected):
                if getter and getter.get("type") not in GETTERS:
                    missing.append(f"getter {getter.get('type')!r}")
        return sorted(set(missing))


def load_task(path: str | Path, domain: str | None = None) -> OSWorldTask:
    """Read one task file; `domain` defaults to the name of its folder."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("domain", domain or path.parent.name)
    return OSWorldTask.model_validate(data)


def load_tasks(root: str | Path = LOCAL_TASKS_DIR) -> dict[str, OSWorldTask]:
    """All `<domain>/<id>.json` files under `root`, keyed by task id."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"task folder {root} does not exist")
    tasks: dict[str, OSWorldTask] = {}
    for path in sorted(root.glob("*/*.json")):
        task = load_task(path)
        if task.id in tasks:
            raise ValueError(f"duplicate task id {task.id!r} in {path}")
        tasks[task.id] = task
    return tasks
