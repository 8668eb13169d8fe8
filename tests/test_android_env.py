"""AndroidEnvironment against the real adb server and the virtual device: every mobile
action is checked by its effect on the device (app data read back through adb)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from actions.contracts import Environment
from actions.models import (
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Type,
    Wait,
)
from actions.observation import Observation, Size
from benchmarks.android.expert import find, parse_tree
from benchmarks.android.tasks import Find, content_insert, content_query
from environments.android import AndroidEnvironment
from tests.conftest_android import *  # noqa: F401,F403
from tests.conftest_android import ADB, adb_cli, android_task


def center(obs: Observation, **target: str) -> tuple[int, int]:
    node = find(parse_tree(obs.a11y_tree or ""), Find(**target))
    assert node is not None, f"{target} not on screen ({obs.app})"
    return node.center


def on_screen(obs: Observation, **target: str) -> bool:
    return find(parse_tree(obs.a11y_tree or ""), Find(**target)) is not None


def open_clean(env: AndroidEnvironment, app: str, package: str) -> Observation:
    env.shell(f"pm clear {package}")
    return env.reset(android_task(start_app=app))


def tasks(env: AndroidEnvironment) -> list[dict[str, str]]:
    return content_query(env, "com.vdev.tasks", "tasks", ("title", "done"))


def add_task_by_typing(env: AndroidEnvironment, text: str) -> Observation:
    obs = open_clean(env, "Tasks", "com.vdev.tasks")
    x, y = center(obs, resource_id="new_task")
    obs = env.step(Click(x=x, y=y))
    assert 'focused="true"' in (obs.a11y_tree or "")
    obs = env.step(Type(text=text))
    assert obs.action_error is None, obs.action_error
    return env.step(SystemButton(button="enter"))


# ---------------------------------------------------------------- device and observation

def test_device_is_seen_by_the_real_adb_server(adb_port, virtual_device, android_env):
    listing = adb_cli(adb_port, "devices", "-l")
    assert f"{virtual_device.address}\tdevice" in listing.replace("        ", "\t") or (
        virtual_device.address in listing and " device " in listing)
    assert isinstance(android_env, Environment)
    assert android_env.screen_size == Size(width=720, height=1600)
    assert android_env.density_dpi == 320
    assert android_env.getprop("ro.product.model") == "VirtualPhone"


def test_reset_observation_has_screenshot_tree_and_app(android_env):
    obs = android_env.reset(android_task("look"))
    assert obs.instruction == "look"
    assert obs.app == "com.vdev.launcher"
    assert obs.screen_size == Size(width=720, height=1600)
    assert (obs.screenshot_size.width, obs.screenshot_size.height) == obs.image().size
    assert obs.image().size == (720, 1600)
    assert obs.info["settled"] is True and obs.settle_s is not None
    assert obs.settle_s < android_env.config.settle_timeout_s
    assert on_screen(obs, desc="Contacts") and 'package="com.vdev.launcher"' in obs.a11y_tree


def test_display_size_override_changes_input_space_and_screenshot(android_env):
    android_env.shell("wm size 540x1200")
    try:
        assert "Override size: 540x1200" in android_env.shell("wm size")
        obs = android_env.reset(android_task())
        assert obs.screen_size == Size(width=540, height=1200)
        assert obs.image().size == (540, 1200)
        x, y = center(obs, desc="Notes")
        assert x < 540 and y < 1200
        assert android_env.step(Click(x=x, y=y)).app == "com.vdev.notes"
    finally:
        android_env.shell("wm size reset")
    obs = android_env.reset(android_task())
    assert obs.screen_size == Size(width=720, height=1600) and obs.image().size == (720, 1600)


def test_screenshot_comes_from_exec_out_screencap(adb_port, virtual_device, android_env):
    android_env.reset(android_task())
    ours = android_env.screenshot_png()
    theirs = adb_cli(adb_port, "-s", virtual_device.address, "exec-out", "screencap", "-p",
                     binary=True)
    assert ours.startswith(b"\x89PNG") and ours == theirs


def test_shell_v2_exit_status_and_sync_push_pull(adb_port, virtual_device, tmp_path: Path):
    serial = virtual_device.address
    failing = subprocess.run([ADB, "-P", str(adb_port), "-s", serial, "shell", "false"],
                             capture_output=True, timeout=30)
    assert failing.returncode == 1
    ok = subprocess.run([ADB, "-P", str(adb_port), "-s", serial, "shell", "echo", "a b"],
                        capture_output=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == b"a b\n"
    source = tmp_path / "blob.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    adb_cli(adb_port, "-s", serial, "push", str(source), "/sdcard/blob.bin")
    assert "blob.bin" in adb_cli(adb_port, "-s", serial, "shell", "ls", "/sdcard")
    adb_cli(adb_port, "-s", serial, "pull", "/sdcard/blob.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- actions

def test_tap_on_launcher_icon_opens_the_app(android_env):
    obs = android_env.reset(android_task())
    x, y = center(obs, desc="Tasks")
    obs = android_env.step(Click(x=x, y=y))
    assert obs.action_error is None
    assert obs.app == "com.vdev.tasks" and on_screen(obs, resource_id="new_task")


def test_open_app_by_name_and_unknown_name(android_env):
    android_env.reset(android_task())
    obs = android_env.step(OpenApp(name="Notes"))
    assert obs.app == "com.vdev.notes" and obs.action_error is None
    obs = android_env.step(OpenApp(name="clock"))
    assert obs.app == "com.vdev.clock"
    # The launch fallback public tools use: monkey with the launcher category.
    android_env.shell("monkey -p com.vdev.tasks -c android.intent.category.LAUNCHER 1")
    assert android_env.foreground_app() == "com.vdev.tasks"
    obs = android_env.step(OpenApp(name="Flight Simulator"))
    assert obs.app == "com.vdev.tasks"
    assert obs.action_error and "no installed app matches" in obs.action_error


def test_type_spaces_quotes_and_non_ascii_through_the_ime(android_env):
    text = "Café 'crème' \"brûlée\" & 100%s ✓ 日本"
    add_task_by_typing(android_env, text)
    assert [row["title"] for row in tasks(android_env)] == [text]
    assert android_env.adb_keyboard is True


def test_type_without_ime_uses_input_text_and_refuses_non_ascii(android_env):
    android_env.shell("pm uninstall com.android.adbkeyboard")
    try:
        text = "it's \"quoted\" a&b; 50%s (ok) $HOME"
        add_task_by_typing(android_env, text)
        assert android_env.adb_keyboard is False
        assert [row["title"] for row in tasks(android_env)] == [text]
        obs = android_env.step(Type(text="naïve"))
        assert obs.action_error and "ADB keyboard" in obs.action_error
        assert "'ï'" in obs.action_error
    finally:
        android_env.shell("cmd package install-existing com.android.adbkeyboard")
    android_env.reset(android_task())
    assert android_env.adb_keyboard is True


def test_enter_and_backspace_keys(android_env):
    obs = open_clean(android_env, "Tasks", "com.vdev.tasks")
    x, y = center(obs, resource_id="new_task")
    android_env.step(Click(x=x, y=y))
    android_env.step(Type(text="abcd"))
    obs = android_env.step(Key(keys=("backspace",)))
    assert 'text="abc"' in obs.a11y_tree
    obs = android_env.step(Key(keys=("enter",)))
    assert [row["title"] for row in tasks(android_env)] == ["abc"]
    # A combination goes through `input keycombination`: select all, then delete.
    android_env.step(Type(text="scratch"))
    obs = android_env.step(Key(keys=("ctrl", "a")))
    assert obs.action_error is None
    obs = android_env.step(Key(keys=("backspace",)))
    assert find(parse_tree(obs.a11y_tree), Find(resource_id="new_task")).text == "New task"


def test_long_press_opens_the_context_dialog_and_back_closes_it(android_env):
    android_env.shell("pm clear com.vdev.contacts")
    content_insert(android_env, "com.vdev.contacts", "contacts", name="Ada Lovelace",
                   phone="555-1815", email="", starred=0)
    obs = android_env.reset(android_task(start_app="Contacts"))
    x, y = center(obs, text="Ada Lovelace")
    obs = android_env.step(LongPress(x=x, y=y, duration_s=0.8))
    assert on_screen(obs, resource_id="confirm_delete")
    assert not on_screen(obs, resource_id="detail_phone")  # the click was swallowed
    obs = android_env.step(SystemButton(button="back"))
    assert not on_screen(obs, resource_id="confirm_delete") and obs.app == "com.vdev.contacts"
    # A right click is a touch screen's context click: a long press.
    obs = android_env.step(Click(x=x, y=y, button="right"))
    assert on_screen(obs, resource_id="confirm_delete")
    obs = android_env.step(SystemButton(button="back"))
    # A short tap on the same row opens the contact instead.
    obs = android_env.step(Click(x=x, y=y))
    assert on_screen(obs, resource_id="detail_phone", text="555-1815")
    obs = android_env.step(SystemButton(button="back"))
    assert on_screen(obs, text="Ada Lovelace") and obs.app == "com.vdev.contacts"
    obs = android_env.step(SystemButton(button="back"))
    assert obs.app == "com.vdev.launcher"


def test_home_and_menu_buttons(android_env):
    """Menu is the recent-apps button (KEYCODE_APP_SWITCH, the cookbook's "application
    background menu"): twice brings back the app it left."""
    android_env.reset(android_task(start_app="Settings"))
    obs = android_env.step(OpenApp(name="Contacts"))
    assert obs.app == "com.vdev.contacts"
    obs = android_env.step(SystemButton(button="menu"))
    assert obs.action_error is None and obs.app == "com.vdev.settings"
    obs = android_env.step(SystemButton(button="menu"))
    assert obs.action_error is None and obs.app == "com.vdev.contacts"
    obs = android_env.step(SystemButton(button="home"))
    assert obs.app == "com.vdev.launcher"


def test_mobile_key_space_runs_as_key_events(android_env):
    android_env.reset(android_task(start_app="Settings"))
    for name in ("volume_up", "volume_down", "power", "camera", "clear"):
        obs = android_env.step(Key(keys=(name,)))
        assert obs.action_error is None, name
    assert obs.app == "com.vdev.settings"  # no visible effect on the virtual phone


def test_swipe_left_deletes_a_task(android_env):
    android_env.shell("pm clear com.vdev.tasks")
    for title in ("Keep me", "Swipe me"):
        content_insert(android_env, "com.vdev.tasks", "tasks", title=title, done=0)
    obs = android_env.reset(android_task(start_app="Tasks"))
    node = find(parse_tree(obs.a11y_tree), Find(text="Swipe me"))
    left, _, right, _ = node.bounds
    obs = android_env.step(Swipe(start_x=right - 10, start_y=node.center[1], end_x=left + 10,
                                 end_y=node.center[1], duration_s=0.3))
    assert obs.action_error is None
    assert [row["title"] for row in tasks(android_env)] == ["Keep me"]
    assert not on_screen(obs, text="Swipe me")


def test_scroll_and_swipe_move_the_settings_list(android_env):
    android_env.shell("pm clear com.vdev.settings")
    obs = android_env.reset(android_task(start_app="Settings"))
    wifi_y = center(obs, desc="Wi-Fi")[1]
    assert not on_screen(obs, desc="Auto-rotate screen")  # below the fold
    obs = android_env.step(Scroll(direction="down", amount=5))
    assert obs.action_error is None
    assert not on_screen(obs, desc="Wi-Fi") or center(obs, desc="Wi-Fi")[1] < wifi_y - 100
    rotate_y = center(obs, desc="Auto-rotate screen")[1]
    # A finger moving down drags the content down: back towards the top.
    obs = android_env.step(Swipe(start_x=360, start_y=500, end_x=360, end_y=1300,
                                 duration_s=0.4))
    assert center(obs, desc="Wi-Fi")[1] == wifi_y
    assert not on_screen(obs, desc="Auto-rotate screen") or (
        center(obs, desc="Auto-rotate screen")[1] > rotate_y)
    obs = android_env.step(Drag(start_x=360, start_y=1300, end_x=360, end_y=700))
    assert not on_screen(obs, desc="Wi-Fi") or center(obs, desc="Wi-Fi")[1] < wifi_y
    # The tap lands on the switch it sees after scrolling.
    obs = android_env.step(Scroll(direction="down", amount=10))
    x, y = center(obs, desc="Auto-rotate screen")
    android_env.step(Click(x=x, y=y))
    assert android_env.shell("settings get system accelerometer_rotation") == "0"


def test_wait_waits_then_observes(android_env):
    android_env.reset(android_task())
    started = time.perf_counter()
    obs = android_env.step(Wait(seconds=0.3))
    assert time.perf_counter() - started >= 0.3
    assert obs.app == "com.vdev.launcher" and obs.action_error is None


def test_actions_a_phone_cannot_do_are_refused(android_env):
    android_env.reset(android_task())
    obs = android_env.step(MouseMove(x=10, y=10))
    assert obs.action_error and "not available on Android" in obs.action_error
    obs = android_env.step(Click(x=720, y=10))
    assert obs.action_error and "outside" in obs.action_error


@pytest.mark.parametrize("amount", [1, 2])
def test_scroll_distance_grows_with_amount(android_env, amount):
    android_env.shell("pm clear com.vdev.settings")
    obs = android_env.reset(android_task(start_app="Settings"))
    before = center(obs, text="Battery")[1]
    obs = android_env.step(Scroll(direction="down", amount=amount))
    moved = before - center(obs, text="Battery")[1]
    expected = 1600 * android_env.config.scroll_fraction_per_notch * amount
    assert expected * 0.6 <= moved <= expected * 1.1


def test_parsers_for_real_device_output():
    from environments.android import _command_error, _parse_focus

    pixel = ("  mCurrentFocus=Window{8c1f2a u0 com.android.settings/"
             "com.android.settings.Settings$WifiSettingsActivity}\n"
             "  mFocusedApp=ActivityRecord{51e7 u0 com.android.settings/.Settings t31}")
    assert _parse_focus(pixel) == "com.android.settings"
    # While a transition runs mCurrentFocus is null; the focused app still says it.
    assert _parse_focus("  mCurrentFocus=null\n  mFocusedApp=ActivityRecord{51e7 u0 "
                        "com.google.android.deskclock/com.android.deskclock.DeskClock t5}"
                        ) == "com.google.android.deskclock"
    assert _parse_focus("") is None
    assert _command_error("") is None
    assert _command_error("Error: Activity class {x/y} does not exist.")
    assert _command_error("Exception occurred while executing 'text':\njava.lang.NullPointer")
