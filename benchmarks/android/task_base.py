"""What every Android task template is made of: the device access the templates use (adb
`content query` / `content insert`, clearing an app's data), the steps of a scripted
expert's plan (UI elements to find and act on), and `AndroidTask`, the template's base
with AndroidWorld's step budget. The templates themselves are in
benchmarks/android/tasks.py.
"""

from __future__ import annotations

import random
import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from actions.models import Action


class AdbShell(Protocol):
    """What templates need of a device: run a shell command, get its output."""

    def shell(self, command: str) -> str: ...


# ---------------------------------------------------------------- device access helpers

def content_query(device: AdbShell, package: str, table: str,
                  columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of `content query --uri content://PACKAGE/TABLE`, values as strings.

    `columns` are the table's column names; they split the "k=v, k=v" output correctly
    even when a value contains ", ".
    """
    output = device.shell(f"content query --uri content://{package}/{table}")
    rows = []
    names = "|".join(re.escape(c) for c in (*columns, "_id"))
    for line in output.splitlines():
        match = re.match(r"Row: \d+ (.*)$", line)
        if not match:
            continue
        parts = re.split(rf", (?=(?:{names})=)", match.group(1))
        row = {}
        for part in parts:
            key, _, value = part.partition("=")
            row[key] = value
        rows.append(row)
    return rows


def content_insert(device: AdbShell, package: str, table: str, **values: Any) -> None:
    binds = []
    for column, value in values.items():
        kind = "i" if isinstance(value, int) else "s"
        binds.append("--bind " + shlex.quote(f"{column}:{kind}:{value}"))
    device.shell(f"content insert --uri content://{package}/{table} " + " ".join(binds))


def reset_app(device: AdbShell, package: str) -> None:
    """Clear the app's data and stop it (`pm clear`), as AndroidWorld's setup does."""
    device.shell(f"pm clear {package}")


# ---------------------------------------------------------------- expert plan steps

@dataclass(frozen=True)
class Find:
    """Locate one UI element in the accessibility tree.

    Matches on `resource_id` (the part after ":id/"), exact `text`, `desc` (content
    description) — all given fields must match.
    """

    resource_id: str | None = None
    text: str | None = None
    desc: str | None = None


@dataclass(frozen=True)
class Tap:
    """Tap the element's centre (scrolling down to find it if needed)."""

    target: Find


@dataclass(frozen=True)
class LongPressOn:
    target: Find


@dataclass(frozen=True)
class SwipeLeftOn:
    target: Find


@dataclass(frozen=True)
class TypeInto:
    """Tap the field, then type `text`."""

    target: Find
    text: str


@dataclass(frozen=True)
class AnswerFrom:
    """Answer with the element's text: the first match of `pattern` (its group 1) in the
    element's text, or in the texts of its parent's subtree when `in_parent` is set."""

    target: Find
    pattern: str | None = None
    in_parent: bool = False


@dataclass(frozen=True)
class Do:
    """Perform a fixed action (open an app, press a system button, ...)."""

    action: Action


PlanStep = Tap | LongPressOn | SwipeLeftOn | TypeInto | AnswerFrom | Do


# ---------------------------------------------------------------- the templates

def step_budget(complexity: float) -> int:
    """AndroidWorld's step budget for a task of `complexity`: int(10 x complexity)
    (android_world/suite_utils.py `_allocate_step_budget`)."""
    return int(10 * complexity)


class AndroidTask(ABC):
    """One task template; an instance is the task with its parameters fixed.

    `complexity` is AndroidWorld's task attribute: the step budget is
    `step_budget(complexity)`. Where AndroidWorld has the same task (ContactsAddContact)
    its value is used; the others take the value of AndroidWorld's closest task (named
    beside each), raised where our expert needs scrolls.
    """

    name: ClassVar[str]
    template: ClassVar[str]
    app: ClassVar[str]
    complexity: ClassVar[float] = 1.0

    @property
    def max_steps(self) -> int:
        return step_budget(self.complexity)

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    @classmethod
    @abstractmethod
    def generate_params(cls, rng: random.Random) -> dict[str, Any]:
        """Parameters of one instance, drawn from `rng` (seeded by the task's seed)."""

    @property
    def goal(self) -> str:
        return self.template.format(**self.params)

    def initialize(self, device: AdbShell) -> None:
        """Put the device in the task's start state (app data cleared, rows inserted)."""
        reset_app(device, self.app)

    @abstractmethod
    def is_successful(self, device: AdbShell, answer: str | None) -> float:
        """1.0 when the device (or the answer) shows the goal achieved, else 0.0."""

    def tear_down(self, device: AdbShell) -> None:
        reset_app(device, self.app)

    @abstractmethod
    def expert_plan(self) -> list[PlanStep]:
        """The scripted expert's steps for this instance."""


__all__ = ["AdbShell", "AndroidTask", "AnswerFrom", "Do", "Find", "LongPressOn", "PlanStep",
           "SwipeLeftOn", "Tap", "TypeInto", "content_insert", "content_query", "reset_app",
           "step_budget"]
