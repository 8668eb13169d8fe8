"""The android suite: seeded templates, evaluators that fail before the work is done,
and the scripted expert solving every task through the agent loop and pixel actions."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from conftest_engine import run_episode

from actions.models import Answer, Click, LongPress, Scroll, Swipe, Type
from benchmarks.android import AndroidSuite, AndroidTaskEnvironment
from benchmarks.android.expert import AndroidExpert, parse_tree
from benchmarks.android.tasks import TASK_TYPES, content_query, instantiate
from benchmarks.base import get_suite
from environments.android import AndroidEnvironment
from tests.conftest_android import *  # noqa: F401,F403


@pytest.fixture(scope="module")
def suite(adb_port: int, virtual_device) -> AndroidSuite:
    return AndroidSuite(serial=virtual_device.address, adb_port=adb_port)


@pytest.fixture(scope="module")
def task_env(suite: AndroidSuite) -> Iterator[AndroidTaskEnvironment]:
    env = suite.make_environment()
    try:
        yield env
    finally:
        env.close()


def test_suite_is_registered_and_lists_at_least_12_tasks(adb_port, virtual_device):
    suite = get_suite("android", serial=virtual_device.address, adb_port=adb_port)
    assert isinstance(suite, AndroidSuite) and suite.platform == "mobile"
    tasks = suite.list_tasks()
    assert len(tasks) >= 12 and tasks == sorted(tasks)
    with pytest.raises(KeyError, match="ContactsAddContact"):
        suite.make_task("NoSuchTask", 0)


def test_params_are_drawn_from_the_seed():
    for cls in TASK_TYPES.values():
        first = cls.generate_params(random.Random(7))
        assert first == cls.generate_params(random.Random(7))
    goals = {instantiate("ContactsAddContact", seed).goal for seed in range(10)}
    assert len(goals) > 5


def test_content_query_splits_values_containing_commas():
    class FakeShell:
        def shell(self, command: str) -> str:
            return "Row: 0 title=a, b, body=x, y=z, _id=3\nRow: 1 title=c, body=, _id=4"

    rows = content_query(FakeShell(), "com.vdev.notes", "notes", ("title", "body"))
    assert rows == [{"title": "a, b", "body": "x, y=z", "_id": "3"},
                    {"title": "c", "body": "", "_id": "4"}]


def test_every_evaluator_fails_before_the_task_is_done(suite, task_env):
    for task_id in suite.list_tasks():
        task = suite.make_task(task_id, seed=3)
        obs = task_env.reset(task)
        assert obs.instruction == task.instruction and obs.app == "com.vdev.launcher"
        assert task_env.evaluate() == 0.0, task_id


def test_question_tasks_reject_wrong_answers(suite, task_env):
    for task_id in ("ContactsPhoneQuestion", "TasksRemainingQuestion", "ClockAlarmQuestion"):
        task_env.reset(suite.make_task(task_id, seed=1))
        task_env.env.last_answer = "12:61 or 5551234"
        assert task_env.evaluate() == 0.0


class RecordingPolicy:
    """Passes through to a policy and remembers every action it emitted."""

    def __init__(self, policy) -> None:
        self.policy, self.name, self.actions = policy, policy.name, []

    def act(self, states):
        outputs = self.policy.act(states)
        for output in outputs:
            self.actions.extend(output.actions)
        return outputs

    def close(self) -> None:
        self.policy.close()


@pytest.mark.slow
def test_expert_solves_every_task(suite, task_env):
    expert = suite.make_expert(task_env)
    assert isinstance(expert, AndroidExpert)
    policy = RecordingPolicy(expert)
    failures = []
    for task_id in suite.list_tasks():
        task = suite.make_task(task_id, seed=11)
        result = run_episode(task_env, policy, task, platform="mobile")
        if not result.success:
            failures.append((task_id, result.terminated_by, result.error, result.answer))
    assert not failures, failures
    # The expert works through pixels: taps, long presses, swipes, scrolls and typing.
    kinds = {type(action) for action in policy.actions}
    assert {Click, LongPress, Swipe, Type, Scroll, Answer} <= kinds


def test_expert_finds_elements_in_a_real_dump(task_env):
    env: AndroidEnvironment = task_env.env
    env.shell("pm clear com.vdev.settings")
    env.reset(task_env.env.task or _probe())
    env.shell("am start -n com.vdev.settings/.MainActivity")
    nodes = parse_tree(env.ui_tree())
    labels = {n.attrs.get("content-desc") for n in nodes}
    assert {"Wi-Fi", "Bluetooth"} <= labels
    switch = next(n for n in nodes if n.attrs.get("content-desc") == "Wi-Fi")
    assert switch.attrs["class"] == "android.widget.Switch" and switch.attrs["checkable"] == "true"
    left, top, right, bottom = switch.bounds
    assert 0 <= left < right <= 720 and 0 <= top < bottom <= 1600


def _probe():
    from tests.conftest_android import android_task

    return android_task()
