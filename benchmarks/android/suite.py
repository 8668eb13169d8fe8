"""The `android` suite: AndroidWorld-style tasks on the virtual device, run through the
real adb server and `environments.android.AndroidEnvironment`.

`AndroidTaskEnvironment` wraps an AndroidEnvironment (gymnasium-style: a wrapper, not a
flag): `reset` sets the device up for the task (`initialize`, through adb), `evaluate`
runs the task's `is_successful` against the device (through adb), the next `reset` or
`close` runs `tear_down`.

Scoring follows AndroidWorld's runner (android_world/suite_utils.py `_run_task`): the
task's score counts only when the agent signalled completion (a `terminate` or an
`answer`, AndroidWorld's `status` / `answer`), else it is 0; the step budget is
10 x the task's complexity (`tasks.step_budget`).
"""

from __future__ import annotations

import logging
from typing import Any

from actions.contracts import EnvironmentCrashed, Task
from actions.models import Action, Answer, Terminate
from actions.observation import Observation
from benchmarks.android.tasks import TASK_TYPES, AndroidTask, instantiate
from environments.android import AndroidConfig, AndroidEnvironment

logger = logging.getLogger(__name__)


class AndroidTaskEnvironment:
    """An AndroidEnvironment that runs benchmarks/android task templates.

    `device_process`, when given, is a virtual device this environment owns: it is
    stopped at `close`.
    """

    def __init__(self, env: AndroidEnvironment, device_process: Any = None) -> None:
        self.env = env
        self.device_process = device_process
        self.template: AndroidTask | None = None
        self.agent_signalled_done = False

    def reset(self, task: Task) -> Observation:
        self._tear_down()
        template = instantiate(task.config.get("template", task.task_id), task.seed,
                               task.config.get("params"))
        self.env.prepare(task)
        template.initialize(self.env)
        self.env.shell("input keyevent 3")
        self.template = template
        self.agent_signalled_done = False
        return self.env.observe(instruction=template.goal)

    def step(self, action: Action) -> Observation:
        if isinstance(action, Answer | Terminate):
            self.agent_signalled_done = True
        return self.env.step(action)

    def notify_terminal(self, action: Action) -> None:
        self.agent_signalled_done = True
        self.env.notify_terminal(action)

    def evaluate(self) -> float:
        """The task's score if the agent signalled completion, else 0 (AndroidWorld)."""
        if self.template is None:
            raise RuntimeError("call reset(task) before evaluate()")
        if not self.agent_signalled_done:
            return 0.0
        return float(self.template.is_successful(self.env, self.env.last_answer))

    def _tear_down(self) -> None:
        if self.template is not None:
            try:
                self.template.tear_down(self.env)
            except EnvironmentCrashed as exc:
                logger.warning("tear_down of %s failed: %s", self.template.name, exc)
            self.template = None

    def close(self) -> None:
        try:
            self._tear_down()
            self.env.close()
        finally:
            if self.device_process is not None:
                self.device_process.stop()


class AndroidSuite:
    """Tasks of benchmarks/android.tasks on a virtual device.

    Options: `serial` of an already connected virtual device (default: start one per
    environment and `adb connect` it), `adb_port` of the adb server, other
    AndroidConfig fields.
    """

    name = "android"
    platform = "mobile"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def list_tasks(self) -> list[str]:
        return sorted(TASK_TYPES)

    def make_task(self, task_id: str, seed: int, **overrides: Any) -> Task:
        template = instantiate(task_id, seed)
        fields: dict[str, Any] = {
            "suite": self.name, "task_id": task_id, "seed": seed,
            "instruction": template.goal, "max_steps": template.max_steps,
            "config": {"template": task_id, "params": template.params},
        }
        fields.update(overrides)
        return Task(**fields)

    def make_environment(self, **options: Any) -> AndroidTaskEnvironment:
        merged = {**self.options, **options}
        process = None
        if merged.get("serial") is None:
            from benchmarks.android.virtual_device import VirtualDeviceProcess

            process = VirtualDeviceProcess()
            merged["serial"] = process.address
        config_fields = {k: v for k, v in merged.items() if k in AndroidConfig.model_fields}
        try:
            env = AndroidEnvironment(AndroidConfig(**config_fields))
        except BaseException:
            if process is not None:
                process.stop()
            raise
        return AndroidTaskEnvironment(env, device_process=process)

    def make_expert(self, env: Any = None):
        from benchmarks.android.expert import AndroidExpert

        return AndroidExpert()


__all__ = ["AndroidSuite", "AndroidTaskEnvironment"]
