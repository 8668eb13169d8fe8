"""Free-form tasks (`cua run`): one instruction on a phone, the desktop or a web page, with an
optional check of the outcome.

Without a check, `evaluate()` is 0.0 and the outcome is only what the agent reported
(`terminate` status or `answer`): `outcome_of` says so rather than calling it a success.
With one, the reward is the check's verdict:

- `expected_answer`: the agent's `answer` equals it (case-insensitive; every platform);
- `success_js` (web): evaluated on the page, as the web environment does;
- a `ShellCheck` (Android: a command run through `adb shell` on the device; desktop: a
  command run on this machine with the environment's DISPLAY and HOME): success when its
  output matches a regular expression.

The environments are the ones the suites use, wrapped (gymnasium style) rather than
given flags: `FreeFormAndroid` wraps an AndroidEnvironment (and stops the virtual phone it
owns at close), `FreeFormDesktopRunner` is the desktop's task runner.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actions.contracts import Task
from actions.models import Action
from actions.observation import Observation
from trajectories.record import EpisodeResult

logger = logging.getLogger(__name__)


class ShellCheck(BaseModel):
    """A shell command whose output decides success: `output_pattern` is searched for
    (Python regular expression) in what the command prints (stdout and stderr)."""

    model_config = ConfigDict(frozen=True)

    command: str = Field(..., min_length=1)
    output_pattern: str = Field(..., min_length=1)
    timeout_s: float = Field(30.0, gt=0)

    @field_validator("output_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"--success-output {pattern!r} is not a regular expression: "
                             f"{exc}") from exc
        return pattern

    def verdict(self, output: str) -> float:
        return float(re.search(self.output_pattern, output) is not None)


def check_from_task(task: Task) -> ShellCheck | None:
    data = task.config.get("success_shell")
    return ShellCheck.model_validate(data) if data else None


def answer_reward(task: Task, answer: str | None) -> float | None:
    """1.0/0.0 against `task.config['expected_answer']`, None when the task has none."""
    expected = task.config.get("expected_answer")
    if expected is None:
        return None
    return float((answer or "").strip().lower() == str(expected).strip().lower())


def is_verified(config: dict[str, Any]) -> bool:
    """Whether a task config holds a check (else the outcome is the agent's own report)."""
    return any(config.get(k) for k in ("expected_answer", "success_js", "success_shell"))


def outcome_of(result: EpisodeResult, verified: bool) -> str:
    """The outcome in words, saying whether a check verified it."""
    if result.error:
        return f"error: {result.error}"
    if verified:
        return "success (verified by the check)" if result.success else \
            "failure (the check did not pass)"
    reported = {"terminate": f"the agent reported {result.agent_status or 'the end'}",
                "answer": f"the agent answered {result.answer!r}"}.get(
        result.terminated_by or "", f"ended by {result.terminated_by} without a report")
    return f"{reported} — not verified: no check was given"


class FreeFormAndroid:
    """An AndroidEnvironment for a free-form task: `task.config['start_app']` opens an app
    first (the environment's own reset does), `evaluate` runs the check.

    `device_process`: a virtual phone this wrapper owns (stopped at close), or None.
    """

    def __init__(self, env: Any, device_process: Any = None) -> None:
        self.env = env
        self.device_process = device_process
        self.task: Task | None = None

    @property
    def unwrapped(self) -> Any:
        return self.env

    def __getattr__(self, name: str) -> Any:
        if name in ("env", "device_process", "task"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, task: Task) -> Observation:
        self.task = task
        return self.env.reset(task)

    def step(self, action: Action) -> Observation:
        return self.env.step(action)

    def notify_terminal(self, action: Action) -> None:
        self.env.notify_terminal(action)

    def evaluate(self) -> float:
        if self.task is None:
            raise RuntimeError("call reset(task) before evaluate()")
        check = check_from_task(self.task)
        if check is not None:
            output = self.env.shell(check.command, timeout_s=check.timeout_s)
            logger.info("check %r printed %r", check.command, output[-500:])
            return check.verdict(output)
        return answer_reward(self.task, self.env.last_answer) or 0.0

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            if self.device_process is not None:
                self.device_process.stop()


class FreeFormDesktopRunner:
    """The desktop's task runner for a free-form task: `setup` starts `config['start_app']`
    (a name of DesktopConfig.launch_commands), `evaluate` runs the check on this machine
    with the display's environment (DISPLAY, the episode's HOME)."""

    window_timeout_s: float = 15.0

    def setup(self, env: Any, task: Task) -> None:
        """Start the app and wait until its window shows, then give it the focus."""
        app = task.config.get("start_app")
        if not app:
            return
        command = env.config.launch_commands.get(str(app).strip().lower())
        if command is None:
            raise ValueError(f"--app {app!r} is not a known desktop app; known: "
                             f"{', '.join(sorted(env.config.launch_commands))} (add one with "
                             "--env-option launch_commands='{\"name\": [\"cmd\"]}')")
        before = set(env.find_windows("."))
        env.spawn(command)
        deadline = time.monotonic() + self.window_timeout_s
        while time.monotonic() < deadline:
            new = [w for w in env.find_windows(".") if w not in before]
            if new:
                env.activate_window(new[-1])
                return
            time.sleep(0.05)  # polling the X server for the window, bounded by the deadline
        raise RuntimeError(f"--app {app!r} showed no window within {self.window_timeout_s} s")

    def evaluate(self, env: Any, task: Task) -> float:
        check = check_from_task(task)
        if check is not None:
            done = subprocess.run(check.command, shell=True, capture_output=True, text=True,
                                  env=env.app_environment(), cwd=env.home_dir,
                                  timeout=check.timeout_s, check=False)
            logger.info("check %r exited %d", check.command, done.returncode)
            return check.verdict(done.stdout + done.stderr)
        last = env.actions_taken[-1] if env.actions_taken else None
        return answer_reward(task, getattr(last, "text", None) if last is not None
                             and last.type == "answer" else None) or 0.0


__all__ = ["FreeFormAndroid", "FreeFormDesktopRunner", "ShellCheck", "answer_reward",
           "check_from_task", "is_verified", "outcome_of"]
