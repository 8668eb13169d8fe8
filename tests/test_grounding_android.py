"""Grounding samples from the Android suite's screens on the virtual phone (the real adb
server, `uiautomator dump` bounds): plumbing against our own environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.grounding.data import load_screenspot_pro
from benchmarks.grounding.generate import generate_android, write_screenspot_pro
from tests.conftest_android import *  # noqa: F401,F403

pytestmark = pytest.mark.slow


def test_android_screens_become_samples(adb_port: int, tmp_path: Path) -> None:
    from benchmarks.base import get_suite

    suite = get_suite("android")
    env = suite.make_environment(adb_port=adb_port)
    try:
        screens = generate_android(env, [suite.make_task("TasksAddTask", 0)],
                                   apps=("Tasks", "Settings"))
    finally:
        env.close()
    assert [s.name for s in screens] == ["android-TasksAddTask-0", "android-TasksAddTask-0-tasks",
                                         "android-TasksAddTask-0-settings"]
    written = write_screenspot_pro(screens, tmp_path)
    samples, report = load_screenspot_pro(tmp_path)
    assert written == len(samples) >= 15 and report.files == ["android_android.json"]
    by_instruction = {(s.image_path.name, s.instruction): s for s in samples}
    add = by_instruction[("android-TasksAddTask-0-tasks.png", 'the "Add" button')]
    field = by_instruction[("android-TasksAddTask-0-tasks.png", 'the "New task" text field')]
    assert add.ui_type == "text" and add.region.box[0] > field.region.box[2]  # Add is right of it
    wifi = by_instruction[("android-TasksAddTask-0-settings.png", 'the "Wi-Fi" checkbox')]
    assert wifi.ui_type == "icon"  # a switch shows no text: named by its content-desc
    for sample in samples:
        x1, y1, x2, y2 = sample.region.box
        assert 0 <= x1 < x2 <= sample.image_size[0] and 0 <= y1 < y2 <= sample.image_size[1]
