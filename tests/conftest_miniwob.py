"""Shared MiniWoB fixtures (one browser per test module) and a minimal oracle loop.

Import from test files: `from tests.conftest_miniwob import ...`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actions.contracts import EpisodeState, PolicyOutput, StepHistory, Task
from actions.observation import Observation
from benchmarks.miniwob import MiniWoBEnvironment, MiniWoBOracle, MiniWoBSuite

# The tasks the oracle must solve (issue 3).
REQUIRED = {
    "click-test", "click-test-2", "click-button", "click-button-sequence", "click-link",
    "click-dialog", "click-dialog-2", "click-checkboxes", "click-option", "click-tab",
    "click-widget", "enter-text", "enter-text-2", "enter-password", "focus-text",
    "focus-text-2", "login-user", "choose-list", "navigate-tree", "use-spinner",
}


@pytest.fixture(scope="session")
def miniwob_suite() -> MiniWoBSuite:
    return MiniWoBSuite()


@pytest.fixture(scope="module")
def miniwob_env(miniwob_suite: MiniWoBSuite) -> Iterator[MiniWoBEnvironment]:
    # Per module, not per session: a Playwright sync session marks its event loop as
    # running on this thread while it is open, so a session-wide browser made every later
    # module's `asyncio.run` fail ("cannot be called from a running event loop") and left
    # an extra Chromium for the fault tests to find.
    env = miniwob_suite.make_environment()
    yield env
    env.close()


def run_oracle(env: MiniWoBEnvironment, oracle: MiniWoBOracle,
               task: Task) -> tuple[float, list[tuple[PolicyOutput, Observation]]]:
    """reset -> act -> step until the page says done (or terminate / max_steps).

    Returns the reward and the (output, observation after it) pairs.
    """
    observation = env.reset(task)
    instruction = observation.instruction or ""
    history: list[StepHistory] = []
    steps: list[tuple[PolicyOutput, Observation]] = []
    for index in range(task.max_steps):
        state = EpisodeState(episode_id=f"{task.key}", task=task, instruction=instruction,
                             observation=observation, history=history)
        output = oracle.act([state])[0]
        history.append(StepHistory(index=index, observation=observation, output=output))
        action = output.actions[0]
        observation = env.step(action)
        steps.append((output, observation))
        if observation.done or action.type == "terminate":
            break
    return env.evaluate(), steps
