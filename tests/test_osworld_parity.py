"""OSWorld runner parity.

Reference facts come from OSWorld as kept in the fork ljxpython/OSWorldUse, at its
initial snapshot of upstream, commit f6cee715783b2b2c6f38d460a6dbab90495d238a:
- desktop_env/actions.py KEYBOARD_KEYS (PythonController.execute_action raises for a
  PRESS / KEY_DOWN / KEY_UP / HOTKEY key not in it, after key.lower());
- desktop_env/providers/__init__.py create_vm_manager_and_provider: the providers;
- desktop_env/providers/docker/provider.py: without /dev/kvm it sets KVM=N and warns;
- lib_run_single.py run_single_example: time.sleep(60) after reset, time.sleep(20)
  before evaluate, traj.jsonl fields, result.txt = f"{result}\\n", recording.mp4;
- run.py: sleep_after_execution default 0.0; a crashed example gets {"Error": ...} in
  traj.jsonl and no result.txt; show_result.py averages result.txt only.

Tests marked parity check our code against those facts. The end-to-end tests run
against the stand-in `desktop_env` package in tests/fake_osworld (its "VM" is our own
Xvfb desktop): they prove plumbing, not OSWorld's own behaviour.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import pytest
from conftest_engine import run_episode
from typer.testing import CliRunner

from actions.exporters import to_pyautogui
from actions.models import MOBILE_KEYS, NAMED_KEYS, Key
from agent.cli.main import app
from benchmarks.desktop import DesktopExpert
from benchmarks.osworld import (
    OFFICIAL_EVALUATE_WAIT_S,
    OFFICIAL_RESET_WAIT_S,
    OFFICIAL_SLEEP_AFTER_EXECUTION_S,
    VM_PROVIDERS,
    OSWorldEnvironment,
    ScreenshotUnavailable,
    warn_without_kvm,
)
from benchmarks.osworld_actions import UnsupportedActionError, to_computer_13
from benchmarks.osworld_report import domain_summary
from tests.conftest_osworld import fake_desktop_env, osworld_task  # noqa: F401

OSWORLD_KEYBOARD_KEYS = [
    '\t', '\n', '\r', ' ', '!', '"', '#', '$', '%', '&', "'", '(', ')', '*', '+', ',', '-',
    '.', '/', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '@', '[', '\\', ']', '^', '_', '`', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k',
    'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '{', '|', '}',
    '~', 'accept', 'add', 'alt', 'altleft', 'altright', 'apps', 'backspace', 'browserback',
    'browserfavorites', 'browserforward', 'browserhome', 'browserrefresh', 'browsersearch',
    'browserstop', 'capslock', 'clear', 'convert', 'ctrl', 'ctrlleft', 'ctrlright', 'decimal',
    'del', 'delete', 'divide', 'down', 'end', 'enter', 'esc', 'escape', 'execute', 'f1', 'f10',
    'f11', 'f12', 'f13', 'f14', 'f15', 'f16', 'f17', 'f18', 'f19', 'f2', 'f20', 'f21', 'f22',
    'f23', 'f24', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9', 'final', 'fn', 'hanguel', 'hangul',
    'hanja', 'help', 'home', 'insert', 'junja', 'kana', 'kanji', 'launchapp1', 'launchapp2',
    'launchmail', 'launchmediaselect', 'left', 'modechange', 'multiply', 'nexttrack',
    'nonconvert', 'num0', 'num1', 'num2', 'num3', 'num4', 'num5', 'num6', 'num7', 'num8',
    'num9', 'numlock', 'pagedown', 'pageup', 'pause', 'pgdn', 'pgup', 'playpause',
    'prevtrack', 'print', 'printscreen', 'prntscrn', 'prtsc', 'prtscr', 'return', 'right',
    'scrolllock', 'select', 'separator', 'shift', 'shiftleft', 'shiftright', 'sleep', 'stop',
    'subtract', 'tab', 'up', 'volumedown', 'volumemute', 'volumeup', 'win', 'winleft',
    'winright', 'yen', 'command', 'option', 'optionleft', 'optionright']
OSWORLD_PROVIDERS = {"vmware", "virtualbox", "aws", "azure", "docker", "aliyun", "volcengine"}
OSWORLD_TRAJ_FIELDS = {"step_num", "action_timestamp", "action", "response", "reward", "done",
                       "info", "screenshot_file"}

def test_every_canonical_key_is_in_osworlds_computer_13_key_list() -> None:
    """Parity: every canonical key name, and every printable character a Key can hold,
    becomes a name OSWorld's PythonController accepts (or is refused up front)."""
    keys = set(OSWORLD_KEYBOARD_KEYS)
    for name in sorted(NAMED_KEYS) + list(string.ascii_lowercase + string.digits
                                          + string.punctuation):
        try:
            sent = to_computer_13(Key(keys=(name,)))
        except UnsupportedActionError as exc:
            assert name in ("'", "\\") and "pyautogui.press" in str(exc)
            continue
        assert sent[0]["parameters"]["key"].lower() in keys, name
    for mobile in sorted(MOBILE_KEYS):  # Android keys: refused, never sent to the VM
        with pytest.raises(UnsupportedActionError, match="mobile key space"):
            to_computer_13(Key(keys=(mobile,)))
        with pytest.raises(ValueError, match="mobile key space"):
            to_pyautogui(Key(keys=(mobile,)))
    combo = to_computer_13(Key(keys=("ctrl", "space")))[0]
    assert combo == {"action_type": "HOTKEY", "parameters": {"keys": ["ctrl", " "]}}


def test_providers_are_osworlds_factory(caplog: pytest.LogCaptureFixture,
                                        tmp_path: Path) -> None:
    """Parity: the provider list; docker without /dev/kvm warns instead of refusing."""
    assert set(VM_PROVIDERS) == OSWORLD_PROVIDERS
    with caplog.at_level(logging.WARNING, logger="benchmarks.osworld"):
        assert warn_without_kvm(str(tmp_path / "no-kvm"))
    assert "KVM=N" in caplog.text
    (tmp_path / "kvm").touch()
    assert not warn_without_kvm(str(tmp_path / "kvm"))


def test_official_protocol_constants() -> None:
    """Parity: lib_run_single.py's waits and run.py's pause."""
    assert (OFFICIAL_RESET_WAIT_S, OFFICIAL_EVALUATE_WAIT_S,
            OFFICIAL_SLEEP_AFTER_EXECUTION_S) == (60.0, 20.0, 0.0)


class FailingPolicy:
    name = "failing"

    def act(self, states):
        raise ConnectionError("model server down")

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_official_run_writes_osworlds_layout_and_a_lost_screenshot_crashes(
        fake_desktop_env: None, tmp_path: Path) -> None:  # noqa: F811
    """Plumbing against the stand-in desktop_env: the official waits are asked for in
    OSWorld's order, the result tree is OSWorld's, a None screenshot ends the episode
    with a clear error and leaves the task unscored, and both layouts report."""
    waits: list[float] = []
    env = OSWorldEnvironment(provider="vmware", screen_width=1280, screen_height=720,
                             result_dir=tmp_path / "osworld", model_name="m",
                             sleep=waits.append)
    try:
        expert = DesktopExpert(env.env.desk)
        task = osworld_task("create-hello-file")
        result = run_episode(env, expert, task, platform="desktop")
        assert (result.success, result.reward, result.error) == (True, 1.0, None)
        assert waits == [60.0, 20.0]  # after reset, before evaluate
        example = tmp_path / "osworld" / "pyautogui" / "screenshot" / "m" / task.config[
            "domain"] / task.config["osworld"]["id"]
        assert (example / "result.txt").read_text() == "1.0\n"
        lines = [json.loads(x) for x in (example / "traj.jsonl").read_text().splitlines()]
        assert lines and all(set(line) == OSWORLD_TRAJ_FIELDS for line in lines)
        assert all((example / line["screenshot_file"]).is_file() for line in lines)
        assert [line["step_num"] for line in lines] == sorted(line["step_num"] for line in lines)
        assert (example / "recording.mp4").is_file()

        crash = osworld_task("count-log-lines")
        env.env.controller.get_screenshot = lambda: None  # the VM server stops answering
        failed = run_episode(env, expert, crash, platform="desktop")
        assert failed.error is not None and "no screenshot" in failed.error
        assert failed.terminated_by == "error" and not failed.success
        crash_dir = example.parent.parent / crash.config["domain"] / crash.config["osworld"]["id"]
        assert not (crash_dir / "result.txt").exists()
        assert "Error" in json.loads((crash_dir / "traj.jsonl").read_text().splitlines()[-1])
        with pytest.raises(ScreenshotUnavailable):
            env.reset(crash)
        del env.env.controller.get_screenshot  # the VM answers again; the policy fails
        broken = osworld_task("sort-names")
        failed = run_episode(env, FailingPolicy(), broken, platform="desktop")
        assert failed.error is not None and "model server down" in failed.error
    finally:
        env.close()
    broken_dir = example.parent.parent / broken.config["domain"] / broken.config["osworld"]["id"]
    assert not (broken_dir / "result.txt").exists()
    assert "Error" in json.loads((broken_dir / "traj.jsonl").read_text().splitlines()[-1])
    rows = {row.domain: row for row in domain_summary(tmp_path / "osworld")}
    assert (rows["overall"].episodes, rows["overall"].crashed) == (1, 2)
    assert rows["overall"].success_rate_pct == 100.0


def test_report_reads_osworlds_result_tree(tmp_path: Path) -> None:
    """Parity with show_result.py's averaging: result.txt scores averaged per domain
    (a partial score counts as its value, not as a success); a folder without
    result.txt is crashed and left out."""
    root = tmp_path / "results" / "pyautogui" / "screenshot" / "some-model"
    for domain, example, score in [("os", "a", "1.0"), ("os", "b", "0.5"), ("chrome", "c", "0")]:
        (root / domain / example).mkdir(parents=True)
        (root / domain / example / "result.txt").write_text(f"{score}\n")
        (root / domain / example / "traj.jsonl").write_text("{}\n")
    (root / "os" / "crashed").mkdir()
    (root / "os" / "crashed" / "traj.jsonl").write_text('{"Error": "Time limit exceeded"}\n')
    rows = {row.domain: row for row in domain_summary(tmp_path / "results")}
    assert (rows["os"].episodes, rows["os"].crashed, rows["os"].success_rate_pct,
            rows["os"].full_success_pct) == (2, 1, 75.0, 50.0)
    assert rows["overall"].success_rate_pct == 50.0 and rows["overall"].crashed == 1
    out = CliRunner().invoke(app, ["osworld", "report", str(tmp_path / "results")])
    assert out.exit_code == 0, out.output
    assert "75.00" in out.output and "crashed" in out.output
    empty = CliRunner().invoke(app, ["osworld", "report", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "OSWorld result tree" in empty.output


def test_protocol_is_an_option_recorded_and_reported(tmp_path: Path) -> None:
    """Plumbing: --protocol exists on both commands (official by default), becomes a suite
    option (so the manifest records it) and the report's title says it."""
    from agent.cli.osworld import osworld_suite_options
    from trajectories.record import RunManifest

    for command in (["eval", "--help"], ["osworld", "run", "--help"]):
        help_text = CliRunner().invoke(app, command, terminal_width=200).output
        assert "--protocol" in help_text
    options = osworld_suite_options(tmp_path, "fast", "/models/Qwen3-VL-8B/", "openai")
    assert options == {"protocol": "fast", "result_dir": str(tmp_path / "osworld"),
                       "model_name": "Qwen3-VL-8B"}
    manifest = RunManifest(created_at=0, updated_at=0, versions={}, config={
        "suite": "osworld", "suite_options": options})
    (tmp_path / "manifest.json").write_text(manifest.model_dump_json())
    (tmp_path / "results.jsonl").write_text("")
    out = CliRunner().invoke(app, ["osworld", "report", str(tmp_path)], terminal_width=200)
    assert out.exit_code == 0 and "protocol fast" in out.output, out.output
