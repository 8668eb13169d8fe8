"""OSWorldEnvironment end to end against a double of OSWorld's `desktop_env` package
(tests/fake_osworld: 1.0.2's DesktopEnv API, its "VM" our own Xvfb): our expert's
actions go out as pyautogui code or computer_13 dicts and solve local tasks; FAIL reaches
OSWorld's infeasible rule."""

from __future__ import annotations

import pytest
from conftest_engine import run_episode

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


def _png(rgb: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_fast_protocol_waits_for_a_reaction_that_starts_after_two_equal_frames(
        fake_desktop_env: None) -> None:  # noqa: F811
    """The VM's screen changes only at the 4th screenshot (a window that opens late): the
    fast protocol's settling returns the changed screen, where the old rule (two equal
    screenshots in a row) returned the stale one. Plumbing: the screenshots are scripted
    (by count, not time; the windows are wide so a loaded machine cannot cut them)."""
    env = OSWorldEnvironment(provider="vmware", protocol="fast", screen_width=1280,
                             screen_height=720, settle_poll_s=0.02, settle_quiet_s=0.2,
                             settle_first_change_s=10.0, settle_timeout_s=30.0)
    try:
        before, after = _png((10, 10, 10)), _png((200, 30, 30))
        shots = iter([before, before, before])
        env.env.controller.get_screenshot = lambda: next(shots, after)
        settled = env._settled()
        assert settled.screenshot_png == after
        assert settled.settled and settled.report().settled
    finally:
        env.close()
