"""Shared by the OSWorld tests: the stand-in `desktop_env` package (tests/fake_osworld,
its "VM" our own Xvfb desktop) on sys.path, and local desktop tasks as OSWorld tasks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actions.contracts import Task
from benchmarks.desktop import DesktopSuite

FAKE = Path(__file__).parent / "fake_osworld"


@pytest.fixture()
def fake_desktop_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(FAKE))
    yield
    for name in [m for m in sys.modules if m == "desktop_env" or m.startswith("desktop_env.")]:
        del sys.modules[name]


def osworld_task(task_id: str) -> Task:
    """A local desktop task (benchmarks/desktop/tasks) as the osworld suite makes one."""
    suite = DesktopSuite()
    spec = suite.tasks[task_id].model_dump(mode="json", exclude={"domain"})
    domain = suite.tasks[task_id].domain
    return Task(suite="osworld", task_id=f"{domain}/{task_id}", instruction=spec["instruction"],
                max_steps=10, config={"osworld": spec, "domain": domain})
