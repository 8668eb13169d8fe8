"""A human in the loop: `cua run --confirm` driven through stdin (approve, edit, skip, stop),
Ctrl-C pausing an episode, and which actions --confirm-sensitive asks about.

Plumbing tests against real Chromium and our scripted chat server (a stand-in for a served
model); the answers are typed into the real `cua` process's stdin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from actions.models import Click, Key, Navigate, OpenApp, Type
from agent.human import USER_ACTED, USER_REFUSAL, sensitive_reason
from tests.conftest_faults import FakeChatServer
from tests.conftest_loop import wait_for
from tests.conftest_run import *  # noqa: F401,F403
from tests.conftest_run import CUA, ROOT, computer, run_cua, served

PAGE = ("data:text/html,<title>form</title><input id=i style='position:absolute;left:0;"
        "top:0;width:400px;height:50px'><button style='position:absolute;left:600px;"
        "top:300px;width:80px;height:40px' onclick=\"document.title='pressed'\">Go</button>")
FILLED = "() => document.getElementById('i').value === 'bonjour'"


def steps_of(run: Path) -> list[dict]:
    episode = next((run / "episodes").iterdir())
    return [json.loads(line) for line in (episode / "steps.jsonl").read_text().splitlines()]


def interventions(step: dict) -> list[dict]:
    return [e["observation"]["info"]["intervention"] for e in step["executions"]
            if e.get("observation") and "intervention" in e["observation"]["info"]]


@pytest.mark.slow
def test_confirm_approve_edit_skip_stop(chat: FakeChatServer, tmp_path: Path) -> None:
    chat.script([
        "Focus the field.\n" + computer("left_click", coordinate=[78, 35]),
        "Type.\n" + computer("type", text="hello"),
        "Press Go.\n" + computer("left_click", coordinate=[500, 444]),
        "Again.\n" + computer("left_click", coordinate=[500, 444]),
        "Never reached.\n" + computer("terminate", status="success"),
    ])
    out = tmp_path / "run"
    done = run_cua(["run", "--url", PAGE, "--task", "Fill in bonjour", *served(chat),
                    "--out", str(out), "--confirm", "--success-js", FILLED,
                    # a profile whose prompt carries the loop's feedback (the cookbook's
                    # computer-use prompt has no place for it)
                    "--prompt-profile", "qwen-cua"],
                   stdin="a\ne\nbonjour\ns\nq\n")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = steps_of(out)
    kinds = [[i["kind"] for i in interventions(s)] for s in steps]
    assert kinds == [["approve"], ["edit"], ["skip"], ["stop"]]
    edit = interventions(steps[1])[0]
    assert edit["original"] == "hello" and edit["text"] == "bonjour"
    # the skipped click was not run (the button would have changed the title) and the
    # policy was told so, as a refusal
    assert steps[2]["executions"][0]["observation"]["action_error"] == USER_REFUSAL
    assert USER_REFUSAL in steps[2]["feedback"]  # what the loop tells the policy
    assert USER_REFUSAL in "\n".join(chat.texts_seen[3])
    result = json.loads((out / "results.jsonl").read_text())
    assert result["terminated_by"] == "done" and result["success"] is True  # typed text checked
    assert "user: edited the text to \"bonjour\"" in done.stdout
    assert "[a]pprove, [s]kip, [e]dit text, [q] stop?" in done.stderr
    assert "at (100, 25) of the 1280x720 screen" in done.stderr
    assert (out / "confirm" / "confirm-001.png").exists()  # the point marked on a screenshot


@pytest.mark.slow
def test_ctrl_c_pauses_and_resume_goes_on(chat: FakeChatServer, tmp_path: Path) -> None:
    chat.script([
        "Focus.\n" + computer("left_click", coordinate=[78, 35]),
        "Type.\n" + computer("type", text="hello"),
        "Done.\n" + computer("terminate", status="success"),
    ])
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [*CUA, "run", "--url", PAGE, "--task", "t", *served(chat), "--out", str(out),
         "--confirm", "--prompt-profile", "qwen-cua"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT)
    errors: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in iter(lambda: process.stderr.read(1), ""):
            errors.append(line)

    threading.Thread(target=drain, daemon=True).start()
    seen = lambda: "".join(errors)  # noqa: E731
    try:
        assert process.stdin is not None
        wait_for(lambda: "[q] stop?" in seen(), 120, "the first confirmation prompt")
        process.send_signal(signal.SIGINT)  # Ctrl-C while the prompt waits
        wait_for(lambda: "[paused" in seen(), 30, "the pause notice")
        process.stdin.write("a\n")
        process.stdin.flush()
        wait_for(lambda: "[r]esume or [e]nd" in seen(), 60, "the pause prompt")
        process.stdin.write("r\na\na\n")  # resume; then approve the type and the terminate
        process.stdin.flush()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, seen()
    steps = steps_of(out)
    kinds = [[i["kind"] for i in interventions(s)] for s in steps]
    assert kinds[:2] == [["approve"], ["resume"]], kinds
    assert steps[1]["executions"][0]["observation"]["action_error"] == USER_ACTED
    assert USER_ACTED in "\n".join(chat.texts_seen[2])


def test_sensitive_actions() -> None:
    """What --confirm-sensitive asks about (the cases the issue names)."""
    here = "https://shop.example/cart"
    assert sensitive_reason(Type(text="pw"), current_url=here, focused_password=True)
    assert sensitive_reason(Type(text="pw"), current_url=here, focused_password=False) is None
    assert sensitive_reason(Navigate(url="https://bank.example/"), current_url=here,
                            focused_password=None)
    assert sensitive_reason(Navigate(url="https://shop.example/pay"), current_url=here,
                            focused_password=None) is None
    assert sensitive_reason(OpenApp(name="Settings"), current_url=None, focused_password=None)
    for keys in (("alt", "f4"), ("ctrl", "w"), ("ctrl", "q"), ("delete",),
                 ("shift", "delete")):
        assert sensitive_reason(Key(keys=keys), current_url=None, focused_password=None), keys
    for keys in (("ctrl", "a"), ("w",), ("enter",)):
        assert sensitive_reason(Key(keys=keys), current_url=None,
                                focused_password=None) is None, keys
    assert sensitive_reason(Click(x=1, y=2), current_url=here, focused_password=None) is None
