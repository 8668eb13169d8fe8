"""DesktopEnv on a real Xvfb: every action's real effect, seen by a Tk probe app."""

from __future__ import annotations

import pytest
from conftest_desktop import Probe, desktop, plain_task, wait_until  # noqa: F401

from actions.models import (
    Click,
    Drag,
    Key,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    Terminate,
    Type,
    Wait,
)
from environments.desktop import DesktopEnv


@pytest.fixture()
def probe(desktop: DesktopEnv) -> Probe:  # noqa: F811
    desktop.reset(plain_task())
    return Probe(desktop)


def presses(probe: Probe, button: int) -> list[tuple[int, int]]:
    return [(e["x"], e["y"]) for e in probe.events("press") if e["b"] == button]


def test_click_lands_on_the_exact_pixel(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    x, y = probe.point(0.3, 0.6)
    obs = desktop.step(Click(x=x, y=y))
    assert obs.action_error is None
    wait_until(lambda: presses(probe, 1), what="button press")
    assert presses(probe, 1) == [(x, y)]
    assert [(e["x"], e["y"]) for e in probe.events("release")] == [(x, y)]
    assert desktop.pointer_position() == (x, y)
    assert obs.pointer == (x, y)  # the observation reports the X pointer


def test_right_and_double_click(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    x, y = probe.point(0.5, 0.5)
    desktop.step(Click(x=x, y=y, button="right"))
    desktop.step(Click(x=x + 10, y=y, clicks=2))
    wait_until(lambda: len(presses(probe, 1)) == 2, what=lambda: f"double click; events {probe.events()}")
    assert presses(probe, 3) == [(x, y)]
    assert presses(probe, 1) == [(x + 10, y), (x + 10, y)]


def test_mouse_move_hovers(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    x, y = probe.point(0.7, 0.7)
    desktop.step(MouseMove(x=x, y=y))
    wait_until(lambda: (x, y) in [(e["x"], e["y"]) for e in probe.events("motion")],
               what="motion event at target")
    assert desktop.pointer_position() == (x, y)
    assert not probe.events("press")
    location = desktop._x(["xdotool", "getmouselocation", "--shell"])
    assert f"X={x}\n" in location and f"Y={y}\n" in location


def test_drag_presses_moves_and_releases(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    (sx, sy), (ex, ey) = probe.point(0.2, 0.4), probe.point(0.8, 0.9)
    desktop.step(Drag(start_x=sx, start_y=sy, end_x=ex, end_y=ey))
    wait_until(lambda: probe.events("release"), what=lambda: f"release; events {probe.events()}")
    assert presses(probe, 1) == [(sx, sy)], probe.events()
    drags = [(e["x"], e["y"]) for e in probe.events("drag")]
    assert drags and drags[-1] == (ex, ey)  # motion with the button held (Tk merges motion)
    assert [(e["x"], e["y"]) for e in probe.events("release")] == [(ex, ey)]


# X wheel buttons: 4 up, 5 down, 6 left, 7 right; Tk 8.6 reports 6/7 as 4/5 with Shift.
@pytest.mark.parametrize(("direction", "button", "shift"), [
    ("up", 4, False), ("down", 5, False), ("left", 4, True), ("right", 5, True)])
def test_scroll_turns_the_wheel(desktop: DesktopEnv, probe: Probe, direction: str,  # noqa: F811
                                button: int, shift: bool) -> None:
    x, y = probe.point(0.5, 0.6)
    desktop.step(Scroll(direction=direction, amount=3, x=x, y=y))
    wait_until(lambda: len(presses(probe, button)) == 3, what=f"3 wheel notches {direction}")
    events = probe.events("press")
    assert [(e["b"], e["x"], e["y"]) for e in events] == [(button, x, y)] * 3
    assert all(bool(e["state"] & 0x1) == shift for e in events)


def test_type_ascii_and_unicode(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    text = "a<b> & {c} ~|\\ Grüße, 世界 ☕ naïve"
    x, y = probe.point(0.5, 0.04)  # the entry at the top
    desktop.step(Click(x=x, y=y))
    obs = desktop.step(Type(text=text))
    assert obs.action_error is None
    wait_until(lambda: any(e["text"] == text for e in probe.events("text")),
               what=f"entry text {text!r}; got {probe.events('text')[-1:]}")


def test_hotkey_and_single_key(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    desktop.step(Type(text="hello"))
    desktop.step(Key(keys=("ctrl", "a")))  # Tk entry (emacs binding): cursor to line start
    desktop.step(Key(keys=("delete",)))
    wait_until(lambda: probe.text() == "ello",
               what="first character deleted after ctrl+a, delete")
    keys = probe.events("key")
    ctrl_a = [e for e in keys if e["keysym"] == "a" and e["state"] & 0x4]
    assert ctrl_a, f"no ctrl+a key event in {keys}"
    assert any(e["keysym"] == "Delete" for e in keys)


def test_observation_reports_screen_and_active_window(desktop: DesktopEnv,  # noqa: F811
                                                      probe: Probe) -> None:
    obs = desktop.step(Wait(seconds=0))
    assert obs.app == "cua-probe"
    assert obs.screen_size == desktop.screen_size == obs.screenshot_size
    assert obs.image().size == (desktop.screen_size.width, desktop.screen_size.height)
    assert obs.image().convert("RGB").getpixel(probe.point(0.5, 0.6)) == (0xD0, 0x30, 0x10)
    assert obs.info["settled"] is True and obs.settle_s is not None
    assert obs.settle_s < desktop.config.settle_timeout_s


def test_inapplicable_and_out_of_screen_actions_are_reported(desktop: DesktopEnv,  # noqa: F811
                                                             probe: Probe) -> None:
    obs = desktop.step(Swipe(start_x=1, start_y=1, end_x=5, end_y=5))
    assert obs.action_error and "not available on a desktop" in obs.action_error
    obs = desktop.step(Click(x=desktop.screen_size.width + 5, y=3))
    assert obs.action_error and "outside the screen" in obs.action_error
    assert not probe.events("press")


def test_reset_kills_started_apps_and_gives_a_fresh_home(desktop: DesktopEnv,  # noqa: F811
                                                         probe: Probe) -> None:
    child = desktop.spawn(["sh", "-c", "sleep 300 & sleep 300"])
    old_home = desktop.home_dir
    (old_home / "left-over.txt").write_text("x")
    desktop.reset(plain_task())
    assert probe.process.poll() is not None and child.poll() is not None
    assert not old_home.exists() and not any(desktop.home_dir.iterdir())
    assert desktop.find_windows("^cua-probe$") == []


def test_terminate_is_recorded_for_evaluators(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    desktop.notify_terminal(Terminate(status="failure"))
    assert desktop.evaluate() == 1.0  # plain_task is 'infeasible': FAIL scores 1


def test_click_focuses_and_raises_the_window_under_it(desktop: DesktopEnv,  # noqa: F811
                                                      probe: Probe) -> None:
    desktop.spawn(["xterm", "-geometry", "40x10+760+300"])
    xterm = desktop.wait_for_window("^xterm$")
    wait_until(lambda: desktop.active_window_title() == "xterm", what="xterm focused")
    x, y = probe.point(0.5, 0.04)
    assert desktop.step(Click(x=x, y=y)).app == "cua-probe"
    desktop.step(Type(text="to the probe"))
    wait_until(lambda: probe.text() == "to the probe",
               what="text typed into the clicked window")
    wx, wy, width, height = desktop.window_geometry(xterm)
    assert desktop.step(Click(x=wx + width // 2, y=wy + height // 2)).app == "xterm"


def test_open_app_launches_a_known_app(desktop: DesktopEnv, probe: Probe) -> None:  # noqa: F811
    assert desktop.step(OpenApp(name="Terminal")).action_error is None
    desktop.wait_for_window("^xterm$")
    obs = desktop.step(OpenApp(name="Photoshop"))
    assert obs.action_error and "unknown app 'Photoshop'" in obs.action_error


def test_every_named_key_has_a_keycode(desktop: DesktopEnv) -> None:  # noqa: F811
    from pyautogui import _pyautogui_x11

    from actions.models import NAMED_KEYS
    from environments.desktop import pyautogui_key

    missing = [k for k in sorted(NAMED_KEYS)
               if not _pyautogui_x11.keyboardMapping.get(pyautogui_key(k))]
    assert missing == []
