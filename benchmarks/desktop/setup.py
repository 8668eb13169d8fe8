"""OSWorld setup steps (`config` and `evaluator.postconfig`) on our desktop.

Each step is `{"type": NAME, "parameters": {...}}` and runs `SETUP_STEPS[NAME](env, **parameters)`,
with OSWorld's parameter names. Steps that would need the network or a VM service
(download, chrome_open_tabs, googledrive, ...) are not supported here: a task using them
raises UnsupportedTaskError naming the step.

Parameters are resolved first (benchmarks.desktop.validate.resolve: OSWorld's
placeholders, /home/user mapped to the episode's home); the whole task was validated
before the first step (OSWorldTaskRunner.setup). `execute` keeps OSWorld's semantics: a
non-zero exit is logged, not a setup failure; `until` reruns the command every 0.3 s
until its condition holds (bounded by `until_timeout_s`, where OSWorld would retry
forever); `stdout`/`stderr` files land in the cache folder that `cache_file` reads. A
command's `python`/`python3` is this interpreter, which has pyautogui, as the VM's has.
`activate_window` on a missing window is logged, as OSWorld's server answers 404 and its
SetupController logs it.

Unlike OSWorld, `launch` and `open` do not return immediately and leave the task to
`sleep`: they poll until the app's window is mapped (bounded by `timeout_s`).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.desktop.registry import SETUP_STEPS
from benchmarks.desktop.taskfile import SetupStep, UnsupportedTaskError
from benchmarks.desktop.validate import resolve
from environments.desktop import DesktopEnv

logger = logging.getLogger(__name__)


class SetupFailed(RuntimeError):
    """A setup step ran and failed (command exit code, window never appeared)."""


def cache_dir(env: DesktopEnv) -> Path:
    """The episode's cache folder (OSWorld's cache_dir: setup outputs, fetched files)."""
    path = env.home_dir.parent / f"{env.home_dir.name}-cache"
    path.mkdir(exist_ok=True)
    return path


def _argv(env: DesktopEnv, command: str | Sequence[str], shell: bool) -> str | list[str]:
    if isinstance(command, str):
        return command if shell else shlex.split(command)
    argv = [str(env.expand_path(a)) if a.startswith("~") else a for a in command]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def _until_met(until: dict, result: Any) -> bool:
    return ("returncode" in until and result.returncode == until["returncode"]
            or "stdout" in until and until["stdout"] in result.stdout
            or "stderr" in until and until["stderr"] in result.stderr)


def _visible_windows(env: DesktopEnv) -> set[int]:
    return set(env.find_windows("."))


def _wait_new_window(env: DesktopEnv, before: set[int], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = [w for w in _visible_windows(env) - before if env.window_title(w)]
        if new:
            return
        time.sleep(0.03)
    logger.warning("%s: no new window within %.1f s", what, timeout_s)


def launch(env: DesktopEnv, command: str | list[str], shell: bool = False,
           timeout_s: float = 10.0, **_: Any) -> None:
    """Start an app (not waited for); return once it shows a new window or timeout_s passes."""
    before = _visible_windows(env)
    env.spawn(_argv(env, command, shell), shell=shell)
    _wait_new_window(env, before, timeout_s, f"launch {command!r}")


def execute(env: DesktopEnv, command: str | list[str], shell: bool = False,
            stdout: str = "", stderr: str = "", until: dict | None = None,
            timeout_s: float = 60.0, until_timeout_s: float = 60.0, **_: Any) -> None:
    """Run a command to completion (OSWorld's `execute`, see the module docstring)."""
    deadline = time.monotonic() + until_timeout_s
    while True:
        result = env.run(_argv(env, command, shell), shell=shell, timeout_s=timeout_s)
        if not until or _until_met(until, result):
            break
        if time.monotonic() >= deadline:
            raise SetupFailed(f"setup command {command!r}: 'until' {until} not met within "
                              f"{until_timeout_s:.0f} s")
        time.sleep(0.3)  # OSWorld's retry cadence
    for name, text in ((stdout, result.stdout), (stderr, result.stderr)):
        if name:
            (cache_dir(env) / name).write_text(text)
    if result.returncode != 0:
        logger.warning("setup command %r exited with %d (not a failure, as in OSWorld): %s",
                       command, result.returncode, result.stderr.strip()[-300:])


def sleep(env: DesktopEnv, seconds: float, **_: Any) -> None:
    """The task asks for time to pass (official tasks use it after launch)."""
    time.sleep(float(seconds))


def open_file(env: DesktopEnv, path: str, timeout_s: float = 10.0, **_: Any) -> None:
    """Open a file in its default app (xdg-open, else the text editor) and wait for its window."""
    target = env.expand_path(path)
    if not target.exists():
        raise SetupFailed(f"setup 'open': {target} does not exist")
    opener = ["xdg-open"] if shutil.which("xdg-open") else ["mousepad"]
    before = _visible_windows(env)
    env.spawn([*opener, str(target)])
    _wait_new_window(env, before, timeout_s, f"open {path!r}")


def _match_windows(env: DesktopEnv, window_name: str, strict: bool, by_class: bool) -> list[int]:
    import re

    flag = "--class" if by_class else "--name"
    pattern = f"^{re.escape(window_name)}$" if strict else re.escape(window_name)
    out = env._x(["xdotool", "search", "--onlyvisible", flag, pattern], check=False)
    return [int(w) for w in out.split()]


def activate_window(env: DesktopEnv, window_name: str, strict: bool = False,
                    by_class: bool = False, **_: Any) -> None:
    """Raise and focus the window whose title (or WM_CLASS) contains/equals window_name."""
    windows = _match_windows(env, window_name, strict, by_class)
    if not windows:
        logger.warning("setup 'activate_window': no window named %r", window_name)
        return
    env.activate_window(windows[-1])


def close_window(env: DesktopEnv, window_name: str, strict: bool = False,
                 by_class: bool = False, **_: Any) -> None:
    """Ask the window to close (WM_DELETE_WINDOW through the window manager)."""
    for window in _match_windows(env, window_name, strict, by_class):
        env.close_window(window)


SETUP_STEPS.update({
    "launch": launch,
    "execute": execute,
    "command": execute,
    "sleep": sleep,
    "open": open_file,
    "activate_window": activate_window,
    "close_window": close_window,
})


def run_setup(env: DesktopEnv, steps: Sequence[SetupStep]) -> None:
    """Run OSWorld setup steps in order; raise UnsupportedTaskError / SetupFailed."""
    for i, step in enumerate(steps):
        fn = SETUP_STEPS.get(step.type)
        if fn is None:
            raise UnsupportedTaskError(
                f"setup step {step.type!r} is not supported here (supported: "
                f"{', '.join(sorted(SETUP_STEPS))})"
            )
        parameters = resolve(step.parameters, env.screen_size.width, env.screen_size.height,
                             env.home_dir)
        logger.debug("setup step %d: %s %s", i + 1, step.type, parameters)
        try:
            fn(env, **parameters)
        except TypeError as exc:
            raise SetupFailed(f"setup step {step.type!r}: bad parameters {step.parameters}: {exc}") from exc
