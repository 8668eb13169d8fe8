"""OSWorldEnvironment end to end against a double of OSWorld's `desktop_env` package
(tests/fake_osworld: 1.0.2's DesktopEnv API, its "VM" our own Xvfb): our expert's
actions go out as pyautogui code or computer_13 dicts and solve local tasks; FAIL reaches
OSWorld's infeasible rule."""

from __future__ import annotations

import pytest

from agent.loop import run_episode
from benchmarks.desktop import DesktopExpert
from benchmarks.osworld import OSWorldEnvironment
from tests.conftest_osworld import fake_desktop_env, osworld_task  # noqa: F401


# count-log-lines types '<': the adapter sends it as shift+',' (pyautogui types '>').
@pytest.mark.slow
@pytest.mark.parametrize(("action_space", "task_ids"), [
    ("pyautogui", ["create-hello-file", "count-log-lines", "unicode-note", "install-spotify"]),
    ("computer_13", ["count-log-lines", "sort-names", "install-spotify"]),
])
def test_expert_solves_tasks_through_the_osworld_adapter(
        fake_desktop_env: None, action_space: str, task_ids: list[str]) -> None:  # noqa: F811
    env = OSWorldEnvironment(provider="vmware", action_space=action_space, protocol="fast",
                             screen_width=1280, screen_height=720, settle_poll_s=0.05)
    try:
        expert = DesktopExpert(env.env.desk)  # reads window geometry from the "VM"
        sent: list = []
        for task_id in task_ids:
            result = run_episode(env, expert, osworld_task(task_id), platform="desktop")
            assert (result.success, result.reward, result.error) == (True, 1.0, None), task_id
            assert env.env.action_history[-1] == ("FAIL" if task_id == "install-spotify"
                                                  else "DONE")
            sent += [a for a in env.env.action_history if a not in ("DONE", "FAIL")]
        if action_space == "pyautogui":
            assert all(isinstance(a, str) and a.startswith(("pyautogui.", "exec(")) for a in sent)
            assert any(a.startswith("exec(") for a in sent)  # unicode-note typed via XTest
        else:
            assert {a["action_type"] for a in sent} == {"CLICK", "TYPING", "HOTKEY"}
    finally:
        env.close()
