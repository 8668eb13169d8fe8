"""Our OSWorld adapter against the REAL `desktop-env==1.0.2` package (see
tests/conftest_real_osworld.py for what is real and what stands in: the VM is a loopback
HTTP server, the hypervisor a loopback provider, `desktop_env.evaluators` and `pydrive`
small stand-ins).

Reference facts (the behaviour these tests hold our `--protocol official` to):
- desktop-env 1.0.2 (PyPI wheel) desktop_env/desktop_env.py `DesktopEnv.step`: WAIT
  sleeps `pause`, then every step sleeps `pause` again; FAIL / DONE set done; `evaluate`
  scores an "infeasible" task 1 only when the last action was FAIL, and any other task
  0 when it was FAIL.
- mm_agents/qwen3vl_agent.py `parse_response` (the same file in the 1.0.2 wheel and in
  karakuri-ai/OSWorld-JP @ 3301bf9fd54cef911c6788543fba9da99bd4bfcf): terminate -> "DONE"
  whatever its status; wait -> "WAIT"; scroll -> f"pyautogui.scroll({pixels})" (no
  coordinate, no rounding, no clamp); left_click_drag -> f"pyautogui.dragTo({x}, {y},
  duration={duration})" with duration 0.5 (from the cursor); no branch for
  triple_click, hscroll or answer (no code: nothing is executed).
- lib_run_single.py `run_single_example` (karakuri-ai/OSWorld-JP @
  d936d4e64cc3d3ce50f0b6c179f5f8aaaeee9c5d): `while not done and step_idx < max_steps`,
  each predict call a step whether or not it gave actions (unparseable output does not
  end the episode); one traj.jsonl line per action sent to env.step, DONE included, with
  `"step_num": step_idx + 1` (step_idx counts predict calls: `step_idx += 1` after each
  call's actions) and `"response": response` (the text `agent.predict` returned);
  env.step(action, args.sleep_after_execution) with run_multienv_qwen3vl.py's default 0.0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest_engine import run_episode

from actions.contracts import EpisodeState, PolicyOutput
from actions.dialects import CoordinateConverter
from actions.models import Answer, Click, Scroll, Terminate, Wait
from actions.observation import Size
from actions.parsing import parse_tool_calls
from benchmarks.osworld import OSWorldEnvironment, OSWorldSuite
from policies.prompting import last_pointer
from tests.conftest_real_osworld import loopback_vm, real_desktop_env  # noqa: F401

INFEASIBLE = {"id": "infeasible-1", "instruction": "Install the moon.", "config": [],
              "evaluator": {"func": "infeasible"}}
ECHO_OK = {"id": "echo-1", "instruction": "Say ok.", "config": [],
           "evaluator": {"func": "exact_match",
                         "result": {"type": "vm_command_line", "command": "echo ok",
                                    "shell": True},
                         "expected": {"type": "rule", "rules": {"expected": "ok\n"}}}}


def osworld_checkout(root: Path, *specs: dict[str, Any]) -> Path:
    """A minimal OSWorld checkout: test_nogdrive.json and examples/os/<id>.json."""
    examples = root / "evaluation_examples" / "examples" / "os"
    examples.mkdir(parents=True)
    for spec in specs:
        (examples / f"{spec['id']}.json").write_text(json.dumps(spec))
    (root / "evaluation_examples" / "test_nogdrive.json").write_text(
        json.dumps({"os": [s["id"] for s in specs]}))
    return root


def make_env(tmp_path: Path, protocol: str = "official", **options: Any) -> OSWorldEnvironment:
    sleeps: list[float] = []
    env = OSWorldEnvironment(provider="docker", protocol=protocol, sleep=sleeps.append,
                             result_dir=tmp_path / "results", model_name="m",
                             settle_timeout_s=0.5, settle_poll_s=0.05, settle_quiet_s=0.1,
                             settle_first_change_s=0.1, **options)
    env.official_sleeps = sleeps  # type: ignore[attr-defined]
    return env


def traj(tmp_path: Path, example: str) -> list[dict[str, Any]]:
    path = tmp_path / "results" / "pyautogui" / "screenshot" / "m" / "os" / example / "traj.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("protocol", "sent", "score"), [("official", "DONE", 0.0),
                                                         ("fast", "FAIL", 1.0)])
def test_terminate_failure_is_done_under_official(real_desktop_env, monkeypatch, tmp_path,  # noqa: F811
                                                  protocol, sent, score) -> None:
    """Parity (real DesktopEnv.evaluate): the Qwen3-VL runner sends DONE for every
    terminate, so an infeasible task refused with status failure scores 0 there; the fast
    protocol keeps FAIL (and scores it 1). The terminal step is a traj.jsonl line."""
    suite = OSWorldSuite(osworld_checkout(tmp_path / "osw", INFEASIBLE), protocol=protocol)
    with loopback_vm(real_desktop_env, monkeypatch) as vm:
        env = make_env(tmp_path, protocol)
        env.reset(suite.make_task("os/infeasible-1"))
        env.notify_terminal(Terminate(status="failure"))
        assert env.env.action_history == [sent]
        assert env.evaluate() == score
        env.close()
        assert vm.compile_errors == []
    lines = traj(tmp_path, "infeasible-1")
    assert [(line["action"], line["done"], line["info"]) for line in lines] == [
        (sent, True, {"done": True} if sent == "DONE" else {"fail": True})]


@pytest.mark.parametrize(("protocol", "sleeps"), [("official", [0, 0]), ("fast", [1.5, 1.5])])
def test_wait_is_wait_with_the_runners_pause(real_desktop_env, monkeypatch, tmp_path,  # noqa: F811
                                             protocol, sleeps) -> None:
    """Parity (real DesktopEnv.step, which sleeps `pause` twice for WAIT): official sends
    WAIT with the runner's pause 0; fast makes a Wait(3) last 3 s in all, not 6."""
    slept: list[float] = []
    suite = OSWorldSuite(osworld_checkout(tmp_path / "osw", ECHO_OK), protocol=protocol)
    with loopback_vm(real_desktop_env, monkeypatch):
        env = make_env(tmp_path, protocol)
        env.reset(suite.make_task("os/echo-1"))
        monkeypatch.setattr(real_desktop_env.time, "sleep", slept.append)
        env.step(Wait(seconds=3))
        monkeypatch.undo()  # sleep back (and the factory patch, no longer needed)
        assert slept == sleeps and env.env.action_history == ["WAIT"]
        env.close()


def test_actions_without_reference_code_scroll_and_drag(real_desktop_env, monkeypatch,  # noqa: F811
                                                         tmp_path) -> None:
    """Parity: under official, triple_click, hscroll and answer send nothing (no traj
    line, no VM request); scroll is pyautogui.scroll(pixels) at the cursor, its
    coordinate ignored; a drag from the cursor is dragTo(x, y, duration=0.5). Every
    program that reached the VM compiled and ran."""
    suite = OSWorldSuite(osworld_checkout(tmp_path / "osw", ECHO_OK))
    with loopback_vm(real_desktop_env, monkeypatch) as vm:
        vm.command_outputs["echo ok"] = "ok\n"
        env = make_env(tmp_path)
        obs = env.reset(suite.make_task("os/echo-1"))
        assert obs.pointer == (960, 540)  # asked of the VM once, after reset
        vm.calls.clear()
        executes = sum(r == "POST /execute" for r in vm.requests)
        for action in (Click(x=5, y=5, clicks=3), Scroll(direction="right", amount=2),
                       Answer(text="x")):
            step = env.step(action)
            assert step.info["not_executed"] and step.action_error is None
        assert sum(r == "POST /execute" for r in vm.requests) == executes
        env.step(Scroll(direction="down", amount=7, x=100, y=100))
        env.step(Scroll(direction="down", amount=3, pixels=-2.5))  # as the model wrote it
        from actions.models import Drag

        env.step(Drag(start_x=960, start_y=540, end_x=300, end_y=200))
        assert vm.calls == [("scroll", (-7,), {}), ("scroll", (-2.5,), {}),
                            ("dragTo", (300, 200), {"duration": 0.5})]
        assert env.evaluate() == 1.0  # the package's own vm_command_line getter ran
        env.close()
        assert vm.compile_errors == [] and vm.programs
    assert [line["action"] for line in traj(tmp_path, "echo-1")] == [
        "pyautogui.scroll(-7)", "pyautogui.scroll(-2.5)",
        "pyautogui.dragTo(300, 200, duration=0.5)"]


class TextPolicy:
    """Answers with fixed model texts, parsed as the policy parses them (qwen3 grid, the
    cursor from the observation, else from the history: policies/prompting.py)."""

    name = "text"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        outputs = []
        for state in states:
            text = self.texts[min(state.step_index, len(self.texts) - 1)]
            obs = state.observation
            pointer = obs.pointer if obs.pointer is not None else last_pointer(state.history)
            parsed = parse_tool_calls(text, dialect="qwen3", screen_size=obs.screen_size,
                                      pointer=pointer)
            outputs.append(PolicyOutput(raw_text=text, actions=parsed.actions,
                                        parse_errors=parsed.errors, latency_s=0.0))
        return outputs

    def close(self) -> None:
        pass


def call(**arguments: Any) -> str:
    return ("Action: x\n<tool_call>\n" + json.dumps({"name": "computer_use",
                                                      "arguments": arguments})
            + "\n</tool_call>")


def test_an_official_episode_steps_on_as_the_runner_does(real_desktop_env, monkeypatch,  # noqa: F811
                                                         tmp_path) -> None:
    """Parity through the engine: four unparseable outputs and an answer do not end the
    episode; a left_click_drag with only its target drags from the VM's cursor; the
    terminate ends it with DONE; traj.jsonl has the drag and the DONE line, numbered by
    predict call (6 and 7: the unparseable calls and the answer took 1-5) with the
    model's text as `response`."""
    suite = OSWorldSuite(osworld_checkout(tmp_path / "osw", ECHO_OK), max_steps=10)
    texts = ["<tool_call>\n{broken\n</tool_call>"] * 4 + [call(action="answer", text="ok"),
                                         call(action="left_click_drag", coordinate=[250, 250]),
                                         call(action="terminate", status="failure")]
    with loopback_vm(real_desktop_env, monkeypatch) as vm:
        vm.command_outputs["echo ok"] = "ok\n"
        env = make_env(tmp_path)
        result = run_episode(env, TextPolicy(texts), suite.make_task("os/echo-1"),
                             platform="desktop")
        env.close()
        assert vm.compile_errors == []
    assert (result.terminated_by, result.steps, result.parse_errors) == ("terminate", 7, 4)
    assert env.env.action_history[-1] == "DONE" and result.reward == 1.0
    x, y, _ = CoordinateConverter("qwen3", Size(width=1920, height=1080)).to_screen(250, 250)
    lines = traj(tmp_path, "echo-1")
    assert [(line["step_num"], line["action"], line["response"]) for line in lines] == [
        (6, f"pyautogui.dragTo({x}, {y}, duration=0.5)", texts[5]), (7, "DONE", texts[6])]
    folder = tmp_path / "results" / "pyautogui" / "screenshot" / "m" / "os" / "echo-1"
    assert [line["screenshot_file"].split("_")[1] for line in lines] == ["6", "7"]
    assert all((folder / line["screenshot_file"]).is_file() for line in lines)
