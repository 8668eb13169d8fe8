"""The scripted oracle solves the required MiniWoB tasks through pixel actions only."""

from __future__ import annotations

import pytest

from actions.models import Click, Key, Scroll, Type
from benchmarks.miniwob import SOLVERS
from tests.conftest_miniwob import (  # noqa: F401
    REQUIRED,
    miniwob_env,
    miniwob_suite,
    run_oracle,
)

PIXEL_ACTIONS = (Click, Type, Key, Scroll)
CASES = [(task_id, (0, 1, 2) if task_id in REQUIRED else (0, 1)) for task_id in sorted(SOLVERS)]


@pytest.mark.parametrize(("task_id", "seeds"), CASES, ids=[c[0] for c in CASES])
def test_oracle_solves_task(task_id, seeds, miniwob_env, miniwob_suite):  # noqa: F811
    oracle = miniwob_suite.make_expert(miniwob_env)
    for seed in seeds:
        task = miniwob_suite.make_task(task_id, seed)
        reward, steps = run_oracle(miniwob_env, oracle, task)
        trace = [(o.thought, o.actions[0].type, obs.action_error) for o, obs in steps]
        assert reward == 1.0, f"{task_id} seed {seed}: reward {reward}; steps {trace}"
        assert steps[-1][1].done is True
        for output, observation in steps:
            assert isinstance(output.actions[0], PIXEL_ACTIONS)
            assert observation.action_error is None
            assert output.thought and "<tool_call>" in output.raw_text


def test_oracle_gives_up_clearly_on_tasks_it_cannot_solve(miniwob_env, miniwob_suite):  # noqa: F811
    oracle = miniwob_suite.make_expert(miniwob_env)
    reward, steps = run_oracle(miniwob_env, oracle, miniwob_suite.make_task("bisect-angle", 0))
    assert reward == 0.0
    assert steps[-1][0].actions[0].type == "terminate"
    assert "no solution for 'bisect-angle'" in steps[-1][0].thought


def test_oracle_through_the_agent_loop(miniwob_env, miniwob_suite):  # noqa: F811
    from conftest_engine import run_episode

    oracle = miniwob_suite.make_expert(miniwob_env)
    for task_id in ("login-user", "choose-list"):
        result = run_episode(miniwob_env, oracle, miniwob_suite.make_task(task_id, 5))
        assert result.success is True and result.reward == 1.0, result
        assert result.error is None and result.steps >= 3


def test_oracle_clicks_the_uncovered_part_of_an_overlapped_button(miniwob_env, miniwob_suite):  # noqa: F811
    # seed 6 of click-test-2 places button TWO over the center of button ONE
    task = miniwob_suite.make_task("click-test-2", 6)
    miniwob_env.reset(task)
    covered = miniwob_env.page.evaluate("""() => { const r = document.getElementById('subbtn')
        .getBoundingClientRect();
        return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2).id; }""")
    assert covered == "subbtn2"
    reward, _ = run_oracle(miniwob_env, miniwob_suite.make_expert(miniwob_env), task)
    assert reward == 1.0
