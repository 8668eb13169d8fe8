"""The OSWorld adapter: official OSWorld tasks, our policy, our trajectory format.

`OSWorldSuite(osworld_dir=..., provider=...)` lists the tasks of an OSWorld checkout
(`evaluation_examples/test_nogdrive.json`, the Qwen3-VL runner's list, by default ->
`examples/<domain>/<id>.json`; task ids here are
`<domain>/<id>`, so results group by domain). `make_environment()` wraps
`desktop_env.desktop_env.DesktopEnv` (the OSWorld package, with a VM provider: docker,
vmware, virtualbox, aws, ...) in our Environment protocol; each canonical action is sent
as OSWorld `pyautogui` code (actions.exporters.to_pyautogui) or as `computer_13` dicts
(`to_computer_13`). Nothing of OSWorld is needed to list tasks; running them needs the
package and a provider, and `check_available()` says exactly what is missing.

Protocol (`protocol=`): `official` does what OSWorld's `lib_run_single.py` does — waits
60 s after reset before the first screenshot, 20 s before evaluating, and sleeps
`sleep_after_execution` (run.py's default 0.0) after each action — so scores compare
with published tables; `fast` replaces those waits with our settle detection (the
screenshot polled until two in a row are identical, bounded). Under `official`, in the
pyautogui space, actions execute as OSWorld's Qwen3-VL runner executes them
(`encode_qwen3vl_official`: terminate is DONE, wait is WAIT with pause 0, no code for
triple_click / hscroll / answer, ...), unparseable output does not end an episode and
`answer` does not end it either (docs/benchmark-parity.md lists each difference).

Beside our record, each task's OSWorld result directory is written as `lib_run_single.py`
writes it (`result.txt`, `traj.jsonl`, `step_N_<time>.png`, `recording.mp4` when the
provider records), under `<result_dir>/<action_space>/screenshot/<model>/<domain>/<id>/`,
so OSWorld's own `show_result.py` reads it. An episode that crashes gets an `{"Error":
...}` line and no `result.txt`, as in OSWorld's run.py; such episodes are left out of the
score and counted as crashed (`--retry-errors` runs them again; under `official` they
always run again, as the runner's get_unfinished does).

`domain_summary(path)` turns a run's results.jsonl, or an OSWorld result tree, into
OSWorld's per-domain table (score = mean of the scores, x 100, as show_result.py
computes it; success = a full score), crashed episodes counted apart.
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from actions.contracts import EnvironmentCrashed, Task
from actions.models import (
    Action,
    Scroll,
    Wait,
)
from actions.observation import Observation, Size
from benchmarks.base import SuiteUnavailable
from benchmarks.osworld_actions import (
    ACTION_SPACES,
    UnsupportedActionError,
    encode,
    encode_qwen3vl_official,
)
from environments._settle import AmbientMemory, QuietWindow, SettleResult, settle_screenshots

logger = logging.getLogger(__name__)

# Exactly the providers OSWorld's factory builds (desktop_env/providers/__init__.py
# `create_vm_manager_and_provider`; pinned in tests/test_osworld_parity.py).
VM_PROVIDERS = ("vmware", "virtualbox", "aws", "azure", "docker", "aliyun", "volcengine")
PROTOCOLS = ("official", "fast")
Protocol = Literal["official", "fast"]
# lib_run_single.py's waits and run.py's default pause after each action.
OFFICIAL_RESET_WAIT_S = 60.0
OFFICIAL_EVALUATE_WAIT_S = 20.0
OFFICIAL_SLEEP_AFTER_EXECUTION_S = 0.0
_LOCAL_TOOLS = {"docker": "docker", "vmware": "vmrun", "virtualbox": "VBoxManage"}
# run_multienv_qwen3vl.py's task list: every task but the 8 that need Google Drive
# credentials (test_all.json has 369, this one 361).
DEFAULT_TEST_FILE = "evaluation_examples/test_nogdrive.json"
# run_multienv_qwen3vl.py's DesktopEnv settings: --region us-east-1, enable_proxy=True,
# snapshot "init_state" (on aws: the AMI of IMAGE_ID_MAP[region][screen_size]).
DEFAULT_REGION = "us-east-1"
DEFAULT_SNAPSHOT = "init_state"
# desktop_env/providers/aws/manager.py raises at import without these.
AWS_REQUIRED_ENV = ("AWS_REGION", "AWS_SUBNET_ID", "AWS_SECURITY_GROUP_ID")


class OSWorldUnavailable(SuiteUnavailable):
    """OSWorld cannot run here: the package, the checkout or the VM provider is missing."""


class ScreenshotUnavailable(EnvironmentCrashed):
    """OSWorld's controller returned no screenshot (None after its own retries)."""


# ----------------------------------------------------------------------------- availability
def check_available(provider: str, osworld_dir: str | Path | None = None,
                    test_file: str = DEFAULT_TEST_FILE) -> None:
    """Raise OSWorldUnavailable naming what is missing to run OSWorld with `provider`."""
    if provider not in VM_PROVIDERS:
        raise OSWorldUnavailable(
            f"unknown provider {provider!r}; OSWorld providers: {', '.join(VM_PROVIDERS)}")
    if importlib.util.find_spec("desktop_env") is None:
        raise OSWorldUnavailable(
            "the OSWorld package 'desktop_env' is not installed: clone OSWorld and run "
            "`pip install -e <osworld-dir>` (or `pip install desktop-env`) in this venv")
    if osworld_dir is not None:
        OSWorldTasks(osworld_dir, test_file)  # raises if the checkout has no task files
    if provider == "aws":
        check_aws_settings()
    tool = _LOCAL_TOOLS.get(provider)
    if tool and shutil.which(tool) is None:
        raise OSWorldUnavailable(
            f"provider {provider!r} needs {tool!r} on PATH, and it is not installed")
    if provider == "docker":
        probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            raise OSWorldUnavailable(
                f"docker is installed but its daemon is not reachable: {probe.stderr.strip()[:300]}")
        warn_without_kvm()


def check_aws_settings(environ: dict[str, str] | None = None) -> None:
    """Raise OSWorldUnavailable, in one line, for what OSWorld's aws provider needs and
    lacks, before any VM starts: boto3, and the variables its manager module demands at
    import (AWS_REGION, AWS_SUBNET_ID, AWS_SECURITY_GROUP_ID)."""
    import os

    environ = os.environ if environ is None else environ
    missing = [name for name in AWS_REQUIRED_ENV if not environ.get(name)]
    if missing:
        raise OSWorldUnavailable(
            f"--provider aws needs {', '.join(missing)} set (OSWorld's aws manager "
            "refuses to load without them)")
    if importlib.util.find_spec("boto3") is None:
        raise OSWorldUnavailable("--provider aws needs boto3: pip install boto3")


def aws_snapshot(region: str, screen_size: tuple[int, int]) -> str:
    """The AMI id run_multienv_qwen3vl.py passes as snapshot_name on aws:
    IMAGE_ID_MAP[region] for the screen size, else its 1920x1080 image."""
    from desktop_env.providers.aws.manager import IMAGE_ID_MAP  # the OSWorld package

    if region not in IMAGE_ID_MAP:
        raise OSWorldUnavailable(
            f"--region {region!r} has no OSWorld image; regions: {', '.join(IMAGE_ID_MAP)}")
    images = IMAGE_ID_MAP[region]
    return images.get(screen_size, images[(1920, 1080)])


def warn_without_kvm(kvm_device: str = "/dev/kvm") -> bool:
    """Warn (and return True) when the docker provider will run its VM without KVM, as
    OSWorld's DockerProvider itself then does (KVM=N: it works, much slower)."""
    if Path(kvm_device).exists():
        return False
    logger.warning("%s not found: OSWorld's docker provider runs its VM without hardware "
                   "acceleration (KVM=N); it works, much slower", kvm_device)
    return True


# ----------------------------------------------------------------------------- tasks
class OSWorldTasks:
    """The task files of an OSWorld checkout."""

    def __init__(self, osworld_dir: str | Path, test_file: str = DEFAULT_TEST_FILE) -> None:
        self.root = Path(osworld_dir)
        self.examples = self.root / "evaluation_examples" / "examples"
        index = self.root / test_file
        if not index.is_file():
            raise OSWorldUnavailable(
                f"{index} not found: --osworld-dir must be an OSWorld checkout (with "
                f"{test_file}; an older checkout without it: --test-file "
                "evaluation_examples/test_all.json)")
        meta: dict[str, list[str]] = json.loads(index.read_text())
        self.ids = sorted(f"{domain}/{tid}" for domain, tids in meta.items() for tid in tids)

    def load(self, task_id: str) -> dict[str, Any]:
        domain, _, tid = task_id.partition("/")
        path = self.examples / domain / f"{tid}.json"
        if not path.is_file():
            raise KeyError(f"OSWorld task file {path} not found")
        return json.loads(path.read_text())


class OSWorldSuite:
    """Suite protocol for official OSWorld tasks (platform 'desktop'; no scripted expert).

    `protocol` is `official` or `fast` (see the module docstring); `result_dir`, when
    given, receives OSWorld's per-task result directories for `model_name`.
    """

    name = "osworld"
    platform = "desktop"

    def __init__(self, osworld_dir: str | Path | None = None, provider: str = "docker",
                 domain: str = "all", test_file: str = DEFAULT_TEST_FILE,
                 max_steps: int = 15, protocol: Protocol = "official",
                 result_dir: str | Path | None = None, model_name: str = "qwen-cua") -> None:
        if osworld_dir is None:
            raise OSWorldUnavailable(
                "the osworld suite needs osworld_dir (cua osworld run --osworld-dir PATH, or "
                "cua eval osworld --osworld-dir PATH --provider NAME)")
        if protocol not in PROTOCOLS:
            raise OSWorldUnavailable(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")
        self.tasks = OSWorldTasks(osworld_dir, test_file)
        self.provider = provider
        self.domain = domain
        self.max_steps = max_steps
        self.protocol = protocol
        self.result_dir = result_dir
        self.model_name = model_name

    def list_tasks(self) -> list[str]:
        if self.domain == "all":
            return list(self.tasks.ids)
        return [t for t in self.tasks.ids if t.split("/", 1)[0] == self.domain]

    def make_task(self, task_id: str, seed: int = 0, **overrides: Any) -> Task:
        spec = self.tasks.load(task_id)
        fields: dict[str, Any] = {
            "suite": self.name, "task_id": task_id, "seed": seed,
            "instruction": spec.get("instruction", ""), "max_steps": self.max_steps,
            "config": {"osworld": spec, "domain": task_id.split("/", 1)[0]},
        }
        if self.protocol == "official":
            # lib_run_single.py: an output with no action is a step like any other (the
            # episode goes on to max_steps), and the Qwen3-VL runner ends only at
            # terminate's DONE (answer writes no code there).
            fields["config"].update(max_parse_failures=None, terminal_actions=["terminate"])
        fields.update(overrides)
        return Task(**fields)

    def make_environment(self, **options: Any) -> OSWorldEnvironment:
        options.setdefault("provider", self.provider)
        options.setdefault("protocol", self.protocol)
        options.setdefault("model_name", self.model_name)
        if self.result_dir is not None:
            options.setdefault("result_dir", self.result_dir)
        check_available(options["provider"])
        return OSWorldEnvironment(**options)

    def make_expert(self, env: Any) -> Any:
        raise NotImplementedError("OSWorld tasks have no scripted expert; pick a model policy")


# ----------------------------------------------------------------------------- environment
class OSWorldResultWriter:
    """One task's OSWorld result directory, written as lib_run_single.py / run.py do.

    `traj.jsonl` gets one line per action sent to DesktopEnv.step, the terminal DONE/FAIL
    included, with the screenshot after it as `step_<n>_<timestamp>.png`: `step_num`
    numbers the predict call the action came from and `response` is that call's model
    text, as lib_run_single.py writes them (the engine tells the environment through
    `notify_output`; without it, step_num counts the steps sent and response is None);
    `result.txt` the score; a crash an `{"Error": ...}` line and no result.txt.
    """

    def __init__(self, example_dir: Path) -> None:
        self.dir = example_dir
        self.finished = False  # result.txt or an Error line written
        if self.dir.exists():  # a rerun starts clean, as run.py's get_unfinished does
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def _append(self, line: dict[str, Any]) -> None:
        with open(self.dir / "traj.jsonl", "a", encoding="utf-8") as traj:
            traj.write(json.dumps(line) + "\n")

    def step(self, step_num: int, action: Any, reward: float, done: bool, info: Any,
             screenshot: bytes, response: str | None = None) -> None:
        timestamp = datetime.datetime.now().strftime("%Y%m%d@%H%M%S%f")
        name = f"step_{step_num}_{timestamp}.png"
        (self.dir / name).write_bytes(screenshot)
        self._append({"step_num": step_num, "action_timestamp": timestamp, "action": action,
                      "response": response, "reward": reward, "done": done, "info": info,
                      "screenshot_file": name})

    def error(self, message: str) -> None:
        self._append({"Error": message})
        self.finished = True

    def result(self, score: float) -> None:
        (self.dir / "result.txt").write_text(f"{score}\n", encoding="utf-8")
        self.finished = True

    def close_unscored(self) -> None:
        """An episode that ended without evaluation (the policy or the run failed, not
        the VM) is marked crashed, as run.py marks any exception."""
        if not self.finished:
            self.error("the episode ended in an error before evaluation "
                       "(see the qwen-cua episode record)")


class OSWorldEnvironment:
    """Our Environment protocol over OSWorld's DesktopEnv (a VM).

    `protocol='official'` waits as lib_run_single.py does (`reset_wait_s` after reset,
    `evaluate_wait_s` before evaluate, `sleep_after_execution_s` as each step's pause);
    `protocol='fast'` passes pause=0 and polls the VM's screenshot every `settle_poll_s`
    until nothing outside ambient cells (a clock, a blinking cursor) has changed for
    `settle_quiet_s` — or, when nothing changed at all, for `settle_first_change_s` —
    bounded by `settle_timeout_s` (environments._settle's pixel rule, the one the desktop
    and Android environments use), after reset, each step and before evaluate. `sleep`
    performs the official waits.
    """

    platform = "desktop"

    def __init__(self, provider: str = "docker", path_to_vm: str | None = None,
                 action_space: str = "pyautogui", headless: bool = True,
                 screen_width: int = 1920, screen_height: int = 1080,
                 protocol: Protocol = "official",
                 reset_wait_s: float = OFFICIAL_RESET_WAIT_S,
                 evaluate_wait_s: float = OFFICIAL_EVALUATE_WAIT_S,
                 sleep_after_execution_s: float = OFFICIAL_SLEEP_AFTER_EXECUTION_S,
                 settle_timeout_s: float = 5.0, settle_poll_s: float = 0.3,
                 settle_quiet_s: float = 0.6, settle_first_change_s: float = 1.0,
                 result_dir: str | Path | None = None, model_name: str = "qwen-cua",
                 sleep: Callable[[float], None] = time.sleep,
                 region: str = DEFAULT_REGION, snapshot_name: str | None = None,
                 enable_proxy: bool = True, client_password: str = "",
                 **desktop_env_options: Any) -> None:
        if action_space not in ACTION_SPACES:
            raise ValueError(f"action_space must be one of {ACTION_SPACES}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        from desktop_env.desktop_env import DesktopEnv  # the OSWorld package

        self.action_space = action_space
        self.protocol = protocol
        self.reset_wait_s = reset_wait_s
        self.evaluate_wait_s = evaluate_wait_s
        self.sleep_after_execution_s = sleep_after_execution_s
        self.settle_timeout_s = settle_timeout_s
        self.settle_poll_s = settle_poll_s
        self.settle_quiet_s = settle_quiet_s
        self.settle_first_change_s = settle_first_change_s
        self._ambient: AmbientMemory | None = None  # cells seen changing on their own
        self.result_dir = Path(result_dir) if result_dir is not None else None
        self.model_name = model_name
        self.sleep = sleep
        self.writer: OSWorldResultWriter | None = None
        self._step_num = 0
        self._response: str | None = None  # the current predict call's text (notify_output)
        self._counting = True  # no notify_output this episode: count the steps sent
        self._recording = False
        self._pointer: tuple[int, int] | None = None
        self._last_screenshot: bytes | None = None
        if provider == "aws":
            check_aws_settings()
        if snapshot_name is None:
            snapshot_name = (aws_snapshot(region, (screen_width, screen_height))
                             if provider == "aws" else DEFAULT_SNAPSHOT)
        self.env = DesktopEnv(
            provider_name=provider, path_to_vm=path_to_vm, action_space=action_space,
            headless=headless, screen_size=(screen_width, screen_height),
            require_a11y_tree=False, region=region, snapshot_name=snapshot_name,
            enable_proxy=enable_proxy, client_password=client_password,
            **desktop_env_options,
        )

    def _screenshot(self, shot: bytes | None = None) -> bytes:
        shot = shot if shot is not None else self.env.controller.get_screenshot()
        if shot is None:
            message = ("OSWorld returned no screenshot (controller.get_screenshot() gave "
                       "None after its retries): the VM's server is not answering; this "
                       "episode ends here")
            if self.writer is not None:
                self.writer.error(message)
            raise ScreenshotUnavailable(message)
        return shot

    def _query_pointer(self) -> tuple[int, int] | None:
        """Where the VM's cursor is, asked once per episode (after reset) through the VM
        server's /run_python; None when it does not say. Later positions are tracked
        from the actions sent (actions.parsing.pointer_after)."""
        run = getattr(self.env.controller, "run_python_script", None)
        if not callable(run):
            return None
        try:
            reply = run("import pyautogui; print(tuple(pyautogui.position()))") or {}
        except Exception as exc:  # noqa: BLE001 - the pointer is an extra, not the episode
            logger.warning("the VM did not say where its cursor is: %s", exc)
            return None
        import re

        found = re.search(r"(-?\d+)\D+(-?\d+)", str(reply.get("output") or ""))
        return (int(found.group(1)), int(found.group(2))) if found else None

    def _observation(self, screenshot: bytes, **fields: Any) -> Observation:
        from PIL import Image

        self._last_screenshot = screenshot
        fields.setdefault("pointer", self._pointer)

        image = Image.open(io.BytesIO(screenshot))
        if image.format != "PNG":
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            screenshot = buf.getvalue()
        size = Size(width=image.width, height=image.height)
        return Observation(screenshot_png=screenshot, screen_size=size, screenshot_size=size,
                           **fields)

    def _settled(self, first: bytes | None = None) -> SettleResult:
        """The VM's screen once settled (see the class docstring); `first`: a screenshot
        OSWorld already returned, the first frame."""
        window = QuietWindow(quiet_s=self.settle_quiet_s,
                             first_change_s=self.settle_first_change_s,
                             poll_s=self.settle_poll_s)
        if self._ambient is None:
            self._ambient = AmbientMemory()
        return settle_screenshots(self._screenshot, window, self.settle_timeout_s,
                                  memory=self._ambient, first_png=self._screenshot(first))

    def _example_dir(self, task: Task) -> Path | None:
        if self.result_dir is None:
            return None
        domain, _, example_id = task.task_id.rpartition("/")
        domain = task.config.get("domain") or domain or "-"
        example_id = task.config["osworld"].get("id", example_id)
        return (self.result_dir / self.action_space / "screenshot" / self.model_name
                / domain / example_id)

    def reset(self, task: Task) -> Observation:
        spec = task.config.get("osworld")
        if spec is None:
            raise ValueError(f"task {task.key} carries no OSWorld task (config['osworld'])")
        example_dir = self._example_dir(task)
        if self.writer is not None:
            self.writer.close_unscored()
        self.writer = OSWorldResultWriter(example_dir) if example_dir is not None else None
        self._step_num, self._response, self._counting = 0, None, True
        try:
            obs = self.env.reset(task_config=spec)
            if self.protocol == "official":
                self.sleep(self.reset_wait_s)  # "Wait for the environment to be ready"
                shot, settle_s, report = self._screenshot(), 0.0, None
            else:
                self._ambient = None  # a new screen: nothing is known to be ambient yet
                settled = self._settled(obs.get("screenshot"))
                shot, settle_s, report = settled.screenshot_png, settled.settle_s, settled.report()
        except Exception as exc:
            self._crashed(exc)
            raise
        self._start_recording()
        self._pointer = self._query_pointer()
        return self._observation(shot, instruction=task.instruction or None,
                                 settle_s=settle_s, settle=report)

    def _crashed(self, exc: Exception) -> None:
        if self.writer is not None and not isinstance(exc, ScreenshotUnavailable):
            self.writer.error(f"{type(exc).__name__}: {exc}")

    def _start_recording(self) -> None:
        start = getattr(self.env.controller, "start_recording", None)
        if self.writer is None or not callable(start):
            return
        try:
            start()
            self._recording = True
        except Exception as exc:  # noqa: BLE001 - a recording is an extra, not the episode
            logger.warning("the provider did not start a recording: %s", exc)

    def _end_recording(self) -> None:
        if not self._recording or self.writer is None:
            return
        self._recording = False
        try:
            self.env.controller.end_recording(str(self.writer.dir / "recording.mp4"))
        except Exception as exc:  # noqa: BLE001
            logger.warning("the provider's recording could not be saved: %s", exc)

    @property
    def _qwen3vl_official(self) -> bool:
        """The official protocol in the pyautogui space executes as OSWorld's Qwen3-VL
        runner does (encode_qwen3vl_official)."""
        return self.protocol == "official" and self.action_space == "pyautogui"

    def _payloads(self, action: Action) -> list[Any]:
        if self._qwen3vl_official:
            return encode_qwen3vl_official(action, self._pointer)
        return encode(action, self.action_space)

    def notify_output(self, step_index: int, raw_text: str) -> None:
        """The engine's word that predict call `step_index` (from 0) answered `raw_text`,
        before its actions: its traj.jsonl lines carry `step_index + 1` and the text, as
        lib_run_single.py's `step_idx + 1` and `response` (a call without actions, or
        with only actions the reference writes no code for, still takes its number)."""
        self._step_num, self._response, self._counting = step_index + 1, raw_text, False

    def _next_step_num(self) -> int:
        if self._counting:
            self._step_num += 1
        return self._step_num

    def step(self, action: Action) -> Observation:
        from actions.parsing import pointer_after

        start = time.monotonic()
        try:
            payloads = self._payloads(action)
        except UnsupportedActionError as exc:
            settled = self._settled()
            return self._observation(settled.screenshot_png, action_error=str(exc),
                                     settle_s=settled.settle_s, settle=settled.report())
        official = self.protocol == "official"
        if not payloads:
            # The reference writes no code for it: nothing is sent, the screen is as it was.
            shot = self._last_screenshot or self._screenshot()
            return self._observation(shot, execute_s=0.0, settle_s=0.0,
                                     info={"osworld_action": [], "not_executed": True})
        step_num = self._next_step_num()
        done, obs = False, None
        if not isinstance(action, Scroll) or not self._qwen3vl_official:
            self._pointer = pointer_after(action, self._pointer)
        try:
            for payload in payloads:
                # OSWorld's step sleeps `pause` after every action, and WAIT sleeps it
                # once more. The official protocol passes sleep_after_execution_s (the
                # runner's 0.0, so its WAIT does not wait at all); the fast one makes a
                # Wait last its seconds (half before, half after) and settles otherwise.
                if official:
                    pause = self.sleep_after_execution_s
                elif isinstance(action, Wait):
                    pause = action.seconds / 2
                else:
                    pause = 0
                obs, reward, done, info = self.env.step(payload, pause)
                shot = self._screenshot(obs.get("screenshot") if obs else None)
                if self.writer is not None:
                    self.writer.step(step_num, payload, reward, bool(done), info, shot,
                                     self._response)
            execute_s = time.monotonic() - start
            if official:
                shot, settle_s = self._screenshot(obs["screenshot"] if obs else None), 0.0
                report = None
            else:
                settled = self._settled(obs["screenshot"] if obs else None)
                shot, settle_s, report = settled.screenshot_png, settled.settle_s, settled.report()
        except Exception as exc:
            self._crashed(exc)
            raise
        return self._observation(shot, execute_s=execute_s, settle_s=settle_s, done=bool(done),
                                 settle=report, info={"osworld_action": payloads})

    def notify_terminal(self, action: Action) -> None:
        """Tell OSWorld DONE/FAIL: its evaluator scores 'infeasible' tasks by the last FAIL.
        Under the official protocol every terminate is DONE, as the Qwen3-VL runner sends
        it; the fast protocol sends FAIL for `status: failure`. The step is written to
        traj.jsonl, as lib_run_single.py writes the DONE line."""
        payloads = self._payloads(action)
        step_num = self._next_step_num() if payloads else self._step_num
        for payload in payloads:
            obs, reward, done, info = self.env.step(payload, 0)
            if self.writer is not None:
                shot = self._screenshot(obs.get("screenshot") if obs else None)
                self.writer.step(step_num, payload, reward, bool(done), info, shot,
                                 self._response)

    def evaluate(self) -> float:
        try:
            if self.protocol == "official":
                self.sleep(self.evaluate_wait_s)  # "Wait for the environment to settle"
            else:
                self._settled()
            score = float(self.env.evaluate())
        except Exception as exc:
            self._crashed(exc)
            raise
        if self.writer is not None:
            self.writer.result(score)
        self._end_recording()
        return score

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close_unscored()
        self.env.close()
