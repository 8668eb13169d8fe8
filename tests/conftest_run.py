"""Helpers for the `cua run` tests: run the real `cua` in a subprocess, and a scripted
chat-completions server (tests.conftest_faults.FakeChatServer in ``script`` mode) that
stands in for vLLM / SGLang.

Import from test files: `from tests.conftest_run import *  # noqa: F401,F403`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest_faults import FakeChatServer

ROOT = Path(__file__).resolve().parents[1]
CUA = [sys.executable, "-c", "from agent.cli.main import main; main()"]


def mobile(action: str, **arguments: object) -> str:
    return ("<tool_call>\n" + json.dumps({"name": "mobile_use",
                                          "arguments": {"action": action, **arguments}})
            + "\n</tool_call>")


def computer(action: str, **arguments: object) -> str:
    return ("<tool_call>\n" + json.dumps({"name": "computer_use",
                                          "arguments": {"action": action, **arguments}})
            + "\n</tool_call>")


@pytest.fixture()
def chat() -> Iterator[FakeChatServer]:
    server = FakeChatServer(model="scripted")
    try:
        yield server
    finally:
        server.close()


def run_cua(args: list[str], *, adb: int | None = None, stdin: str = "",
            timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    if adb is not None:
        env["ANDROID_ADB_SERVER_PORT"] = str(adb)
    return subprocess.run([*CUA, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=ROOT, check=False)


def served(chat: FakeChatServer) -> list[str]:
    return ["--policy", "openai", "--base-url", chat.base_url, "--model", "scripted"]


__all__ = ["CUA", "ROOT", "chat", "computer", "mobile", "run_cua", "served"]
