"""`cua actions` (list / parse / schema), run through the real typer app and as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app

RESPONSE = ('<think>The OK button is bottom right.</think>Click OK.\n<tool_call>\n'
            '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": '
            '[900, 950]}}\n</tool_call>\n<tool_call>{"name": "computer_use", "arguments": '
            '{"action": "teleport"}}</tool_call>')


def test_actions_lists_every_type() -> None:
    for args in (["actions"], ["actions", "list"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        for name in ("click", "drag", "system_button", "terminate"):
            assert name in result.output


def test_actions_parse_prints_json() -> None:
    result = CliRunner().invoke(app, ["actions", "parse", "--screen", "1000x500"], input=RESPONSE)
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)
    assert parsed["thought"] == "Click OK."
    assert parsed["think"] == "The OK button is bottom right."
    assert parsed["actions"] == [{"type": "click", "x": 900, "y": 475, "button": "left",
                                  "clicks": 1}]
    assert len(parsed["errors"]) == 1 and "teleport" in parsed["errors"][0]
    strict = CliRunner().invoke(app, ["actions", "parse", "--screen", "1000x500", "--strict"],
                                input=RESPONSE)
    assert strict.exit_code == 1


def test_actions_parse_rejects_bad_options() -> None:
    result = CliRunner().invoke(app, ["actions", "parse", "--screen", "big"], input="")
    assert result.exit_code != 0
    result = CliRunner().invoke(app, ["actions", "parse", "--screen", "10x10", "--dialect",
                                      "qwen25"], input="")
    assert result.exit_code != 0


def test_actions_schema() -> None:
    result = CliRunner().invoke(app, ["actions", "schema", "--platform", "mobile"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["function"]["name"] == "mobile_use"


def test_package_imports_and_console_entry() -> None:
    """`python -c "from actions import parse_tool_calls"` works in the project venv, and the
    module entry runs as a process."""
    subprocess.run([sys.executable, "-c", "from actions import parse_tool_calls"], check=True)
    cua = Path(sys.executable).with_name("cua")
    assert cua.exists(), "the `cua` console script is installed in the venv"
    proc = subprocess.run([str(cua), "actions", "parse", "--screen", "1000x500"], input=RESPONSE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["actions"][0]["x"] == 900
