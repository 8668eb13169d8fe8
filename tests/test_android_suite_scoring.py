"""The local Android suite scores as AndroidWorld's runner does.

Reference facts, google-research/android_world at d9c569f764b3a5629321858de03ff653d0f24056,
android_world/suite_utils.py: `_allocate_step_budget(complexity) = int(10 * complexity)`;
`_run_task`: `agent_successful = task_successful if interaction_results.done else 0.0`
(the episode is `done` when the agent signalled completion: a `status` action; an
`answer` sets the interaction cache that question tasks grade).
task_evals/single/contacts.py: ContactsAddContact.complexity = 1.2.

The credit test drives AndroidTaskEnvironment over a recording stand-in device
(plumbing of the rule); the real device path is covered in tests/test_android_tasks.py.
"""

from __future__ import annotations

import pytest

from actions.models import Answer, Click, Terminate
from benchmarks.android.suite import AndroidSuite, AndroidTaskEnvironment
from benchmarks.android.tasks import TASK_TYPES, instantiate, step_budget

AW_CONTACTS_ADD_CONTACT_COMPLEXITY = 1.2


def test_step_budget_is_ten_times_complexity() -> None:
    assert step_budget(AW_CONTACTS_ADD_CONTACT_COMPLEXITY) == 12
    assert TASK_TYPES["ContactsAddContact"].complexity == AW_CONTACTS_ADD_CONTACT_COMPLEXITY
    suite = AndroidSuite()
    for name, cls in TASK_TYPES.items():
        assert suite.make_task(name, seed=0).max_steps == int(10 * cls.complexity)


class AlwaysSolved:
    """A task template whose device check always passes."""

    name = "AlwaysSolved"

    def is_successful(self, device, answer) -> float:
        return 1.0

    def tear_down(self, device) -> None:
        pass


class StandInDevice:
    def __init__(self) -> None:
        self.last_answer = None
        self.steps: list = []

    def step(self, action):
        self.steps.append(action)

    def notify_terminal(self, action) -> None:
        if isinstance(action, Answer):
            self.last_answer = action.text


@pytest.mark.parametrize("signal,credited", [
    (None, False),
    ("step_terminate", True),
    ("notify_terminate", True),
    ("notify_answer", True),
    ("notify_failure", True),  # AndroidWorld credits the device state after any `status`
])
def test_credit_only_after_the_agent_signals_completion(signal, credited) -> None:
    env = AndroidTaskEnvironment(StandInDevice())  # type: ignore[arg-type]
    env.template = AlwaysSolved()  # type: ignore[assignment]
    env.step(Click(x=1, y=1))
    if signal == "step_terminate":
        env.step(Terminate(status="success"))
    elif signal == "notify_terminate":
        env.notify_terminal(Terminate(status="success"))
    elif signal == "notify_answer":
        env.notify_terminal(Answer(text="42"))
    elif signal == "notify_failure":
        env.notify_terminal(Terminate(status="failure"))
    assert env.evaluate() == (1.0 if credited else 0.0)


def test_every_template_fits_its_expert_in_the_budget() -> None:
    """The scripted expert's plan (one step per plan entry plus the final terminate)
    fits the AndroidWorld budget of every template."""
    for name in TASK_TYPES:
        template = instantiate(name, 0)
        assert len(template.expert_plan()) + 1 <= template.max_steps, name
