"""`cua run` on Android (the virtual phone through the real adb server) and the desktop (own
Xvfb), end to end with a served policy: a loopback chat-completions server answering a
scripted sequence of tool calls. The live stream (text and --json) is checked against what
the scripted agent did, and the checks (--success-shell) against the device's state.

Plumbing tests (our CLI, environments and stand-ins), not parity: the scripted server
stands in for vLLM / SGLang, the virtual phone for a real device.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest_android import *  # noqa: F401,F403
from tests.conftest_faults import FakeChatServer
from tests.conftest_run import *  # noqa: F401,F403
from tests.conftest_run import computer, mobile, run_cua, served

# The virtual phone is 720x1600 touch pixels; Qwen3-VL coordinates are on a 0-1000 grid.
NOTES_SCRIPT = [
    "I open the Notes app.\n" + mobile("open", text="Notes"),
    "I tap the new-note button.\n" + mobile("click", coordinate=[861, 933]),
    "I tap the title field.\n" + mobile("click", coordinate=[500, 118]),
    "I type the title.\n" + mobile("type", text="Milk"),
    "I save the note.\n" + mobile("click", coordinate=[149, 408]),
    "Done.\n" + mobile("terminate", status="success"),
]


@pytest.mark.slow
def test_android_on_the_virtual_phone_with_a_check(chat: FakeChatServer, adb_port: int,
                                                   tmp_path: Path) -> None:
    chat.script(NOTES_SCRIPT)
    out = tmp_path / "run"
    done = run_cua(["run", "--env", "android", "--env-option", "virtual=true",
                    "--task", "Add a note titled Milk", *served(chat), "--out", str(out),
                    "--success-shell", "content query --uri content://com.vdev.notes/notes",
                    "--success-output", "title=Milk"], adb=adb_port)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    # the live stream: each step's thought, action in words (touch pixels), in order
    for expected in ("step 1", 'open app "Notes"', 'type "Milk"', "terminate (success)",
                     "step 6", "I tap the new-note button."):
        assert expected in text, f"{expected!r} missing from the stream:\n{text}"
    # touch pixels of the grid points (the profile scales by 1000 or 999: +-1 pixel)
    for pattern in (r"click \(62[01], 149[34]\)", r"click \(36[01], 18[89]\)",
                    r"click \(10[78], 65[34]\)"):
        assert re.search(pattern, text), f"{pattern!r} missing from the stream:\n{text}"
    assert text.index('open app "Notes"') < text.index('type "Milk"') < text.index("terminate")
    assert "success (verified by the check)" in text
    result = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert result["success"] is True and result["steps"] == 6
    # the policy was shown the mobile_use tool under the Android suites' prompt profile
    assert "mobile_use" in "\n".join(chat.texts_seen[0])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["policy_options"]["prompt_profile"] == "qwen3-mobile"


@pytest.mark.slow
def test_android_json_stream_and_an_unverified_outcome(chat: FakeChatServer,
                                                       adb_port: int,
                                                       tmp_path: Path) -> None:
    chat.script(["Opening it.\n" + mobile("open", text="Contacts"),
                 "That is all.\n" + mobile("terminate", status="success")])
    out = tmp_path / "run"
    done = run_cua(["run", "--env", "android", "--env-option", "virtual=true", "--json",
                    "--task", "Open the contacts", *served(chat), "--out", str(out)],
                   adb=adb_port)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "step", "step", "result"]
    first = events[1]
    assert first["actions"][0]["type"] == "open_app" and first["actions"][0]["name"] == "Contacts"
    assert first["thought"] == "Opening it." and first["policy_s"] >= 0
    assert first["screen"] == "com.vdev.contacts"
    assert events[-1]["agent_status"] == "success" and events[-1]["success"] is False
    # no check: the summary (stderr in --json mode) says the outcome is only reported
    assert "the agent reported success" in done.stderr
    assert "not verified" in done.stderr


@pytest.mark.slow
def test_desktop_on_its_own_xvfb(chat: FakeChatServer, tmp_path: Path) -> None:
    chat.script([
        "I type the command.\n" + computer("type", text="echo finished > ~/flag.txt"),
        "Run it.\n" + computer("key", keys=["enter"]),
        "Check it landed.\n" + computer("left_click", coordinate=[500, 500]),
        "Done.\n" + computer("terminate", status="success"),
    ])
    out = tmp_path / "run"
    done = run_cua(["run", "--env", "desktop", "--app", "terminal", "--task",
                    "Write finished into ~/flag.txt", *served(chat), "--out", str(out),
                    "--env-option", "screen_size=800x600",
                    "--success-shell", "cat ~/flag.txt", "--success-output", "^finished$"])
    assert done.returncode == 0, done.stdout + done.stderr
    for expected in ('type "echo finished > ~/flag.txt"', "key enter", "click (400, 300)",
                     "terminate (success)", "success (verified by the check)"):
        assert expected in done.stdout, f"{expected!r} missing:\n{done.stdout}"
    assert "computer_use" in "\n".join(chat.texts_seen[0])


def test_bad_combinations_fail_with_a_message(tmp_path: Path) -> None:
    cases = [
        (["--env", "phone"], "is not one of web, android, desktop"),
        (["--env", "android", "--url", "http://x"], "--url do(es) not apply to --env android"),
        (["--env", "web"], "--env web needs --url"),
        (["--env", "desktop", "--success-shell", "true"], "go together"),
        (["--env", "android", "--quiet", "--json"], "exclude each other"),
        (["--env", "desktop", "--success-shell", "true", "--success-output", "(["],
         "not a regular expression"),
    ]
    from typer.testing import CliRunner

    from agent.cli.main import app

    for args, message in cases:
        done = CliRunner().invoke(app, ["run", "--task", "t", "--policy", "openai", "--out",
                                        str(tmp_path / "never"), *args])
        assert done.exit_code == 2, (args, done.output)
        assert message in " ".join(done.output.split()), (args, done.output)
    assert not (tmp_path / "never").exists()
