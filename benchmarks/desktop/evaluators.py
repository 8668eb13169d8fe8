"""OSWorld getters and metrics on our desktop, and the task runner that uses them.

Getters take `(env, config)` and return the state to score (`get_<type>` in OSWorld;
keyed by `type` here). Metrics take `(result, expected_or_rules, **options)` and return
a float in [0, 1]. Names, parameters and semantics follow OSWorld's
`desktop_env/evaluators`, so official task files evaluate the same; the "VM" is our
desktop, so `vm_file` copies a file from the apps' HOME into a cache folder.

qwen-cua extensions (not in OSWorld): getters `vm_window_title` (title of the active
window), `vm_file_exists` (bool) and `local_file` (a file beside the task JSON); the
`threshold` option of `fuzzy_match` (score 1.0 at or above it, else 0.0).
"""

from __future__ import annotations

import difflib
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from actions.contracts import Task
from actions.models import Terminate
from benchmarks.desktop.registry import GETTERS, METRICS
from benchmarks.desktop.setup import cache_dir, run_setup
from benchmarks.desktop.taskfile import OSWorldTask, UnsupportedTaskError
from benchmarks.desktop.validate import resolve, task_problems
from environments.desktop import DesktopEnv

logger = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- getters
def get_vm_file(env: DesktopEnv, config: dict[str, Any]) -> str | list[str | None] | None:
    """Copy `path` (list with `multi`) into the cache as `dest`; return local path(s), None if absent."""
    multi = config.get("multi", False)
    paths = config["path"] if multi else [config["path"]]
    dests = config["dest"] if multi else [config.get("dest", Path(config["path"]).name)]
    gives = set(config.get("gives", [0]))
    out: list[str | None] = []
    for i, (src, dest) in enumerate(zip(paths, dests, strict=False)):
        source = env.expand_path(src)
        local = cache_dir(env) / dest
        found = source.is_file()
        if found:
            shutil.copyfile(source, local)
        if i in gives:
            out.append(str(local) if found else None)
    return out[0] if len(out) == 1 else out


def _command(env: DesktopEnv, config: dict[str, Any]):
    command = config["command"]
    shell = config.get("shell", False)
    if isinstance(command, list) and shell:
        command = " ".join(command)
    return env.run(command, shell=shell or isinstance(command, str), timeout_s=30)


def get_vm_command_line(env: DesktopEnv, config: dict[str, Any]) -> str | None:
    """Standard output of `command` (list, or string run by the shell)."""
    return _command(env, config).stdout


def get_vm_command_error(env: DesktopEnv, config: dict[str, Any]) -> str | None:
    """Standard error of `command`."""
    return _command(env, config).stderr


def get_rule(env: DesktopEnv, config: dict[str, Any]) -> Any:
    """The literal `rules` object of the config."""
    return config["rules"]


def get_vm_screen_size(env: DesktopEnv, config: dict[str, Any]) -> dict[str, int]:
    return {"width": env.screen_size.width, "height": env.screen_size.height}


def get_vm_window_title(env: DesktopEnv, config: dict[str, Any]) -> str | None:
    """(extension) Title of the active window."""
    return env.active_window_title()


def get_vm_file_exists(env: DesktopEnv, config: dict[str, Any]) -> bool:
    """(extension) Whether `path` exists (file or folder)."""
    return env.expand_path(config["path"]).exists()


def get_local_file(env: DesktopEnv, config: dict[str, Any]) -> str | None:
    """(extension) A file shipped beside the task JSON (`path` relative to it)."""
    if env.task_files_dir is None:
        raise UnsupportedTaskError("getter 'local_file' needs a task read from a folder")
    path = env.task_files_dir / config["path"]
    return str(path) if path.is_file() else None


def get_cache_file(env: DesktopEnv, config: dict[str, Any]) -> str:
    path = cache_dir(env) / config["path"]
    if not path.exists():
        raise FileNotFoundError(path)
    return str(path)


GETTERS.update({
    "vm_file": get_vm_file,
    "vm_command_line": get_vm_command_line,
    "vm_command_error": get_vm_command_error,
    "rule": get_rule,
    "vm_screen_size": get_vm_screen_size,
    "vm_window_title": get_vm_window_title,
    "vm_file_exists": get_vm_file_exists,
    "local_file": get_local_file,
    "cache_file": get_cache_file,
})


# ----------------------------------------------------------------------------- metrics
def exact_match(result: Any, rules: dict[str, Any]) -> float:
    """1.0 when result equals rules['expected'] exactly."""
    return float(result == rules["expected"])


def check_include_exclude(result: str | None, rules: dict[str, list[str]]) -> float:
    """1.0 when every 'include' string is in result and no 'exclude' string is."""
    if result is None:
        return 0.0
    include, exclude = rules.get("include", []), rules.get("exclude", [])
    return float(all(s in result for s in include) and all(s not in result for s in exclude))


def fuzzy_match(result: str | None, rules: dict[str, Any], threshold: float | None = None) -> float:
    """Similarity ratio of result and rules['expected'] in [0, 1] (difflib, close to
    rapidfuzz's fuzz.ratio/100 that OSWorld uses); with `threshold`, 1.0 or 0.0."""
    if result is None:
        return 0.0
    ratio = difflib.SequenceMatcher(a=str(result), b=str(rules["expected"])).ratio()
    return ratio if threshold is None else float(ratio >= threshold)


def is_in_list(result: Any, rules: dict[str, Any]) -> float:
    """1.0 when rules['expected'] is an element (or substring) of result."""
    return float(result is not None and rules["expected"] in result)


def match_in_list(result: Any, rules: dict[str, Any]) -> float:
    """1.0 when result is one of rules['expected']."""
    return float(result in rules["expected"])


def literal_match(result: Any, expected: Any, type: str = "str", ignore_case: bool = False) -> float:  # noqa: A002
    """String (or list of strings) equality, optionally ignoring case."""
    def norm(v: Any) -> str:
        return str(v).lower() if ignore_case else str(v)

    if type == "str":
        return float(norm(result) == norm(expected))
    if type == "list":
        if not isinstance(result, list | tuple) or not isinstance(expected, list | tuple):
            return 0.0
        return float([norm(v) for v in result] == [norm(v) for v in expected])
    raise UnsupportedTaskError(f"literal_match type {type!r} is not supported here")


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def compare_text_file(result: str | None, expected: str | None, ignore_blanks: bool = False,
                      ignore_case: bool = False) -> float:
    """1.0 when the two text files are equal (optionally ignoring whitespace / case)."""
    if result is None or expected is None:
        return 0.0
    a, b = _read(result), _read(expected)
    if ignore_blanks:
        a, b = re.sub(r"\s+", "", a), re.sub(r"\s+", "", b)
    if ignore_case:
        a, b = a.lower(), b.lower()
    return float(a == b)


def diff_text_file(result: str | None, expected: str | None) -> float:
    """Line-level similarity ratio of two text files."""
    if result is None or expected is None:
        return 0.0
    return difflib.SequenceMatcher(
        a=_read(result).splitlines(), b=_read(expected).splitlines()
    ).ratio()


def check_list(result: str | None, rules: dict[str, list[str]]) -> float:
    """1.0 when each 'expect' regex matches some line of the file and no 'unexpect' one does."""
    if result is None:
        return 0.0
    lines = _read(result).splitlines()
    expect = [re.compile(p) for p in rules.get("expect", [])]
    unexpect = [re.compile(p) for p in rules.get("unexpect", [])]
    found = all(any(p.search(line) for line in lines) for p in expect)
    clean = not any(p.search(line) for p in unexpect for line in lines)
    return float(found and clean)


METRICS.update({
    "exact_match": exact_match,
    "check_include_exclude": check_include_exclude,
    "fuzzy_match": fuzzy_match,
    "is_in_list": is_in_list,
    "match_in_list": match_in_list,
    "literal_match": literal_match,
    "compare_text_file": compare_text_file,
    "diff_text_file": diff_text_file,
    "check_list": check_list,
})


# ----------------------------------------------------------------------------- runner
def osworld_task_of(task: Task) -> OSWorldTask:
    """The OSWorld task a suite Task carries in config['osworld']."""
    if "osworld" not in task.config:
        raise ValueError(f"task {task.key} carries no OSWorld task (config['osworld'])")
    return OSWorldTask.model_validate(task.config["osworld"])


def _gave_up(env: DesktopEnv) -> bool:
    """OSWorld's FAIL: the agent's last action declared the task infeasible."""
    last = env.actions_taken[-1] if env.actions_taken else None
    return isinstance(last, Terminate) and last.status == "failure"


class OSWorldTaskRunner:
    """Runs an OSWorld task's setup on reset and its evaluator on evaluate (DesktopTaskRunner)."""

    def setup(self, env: DesktopEnv, task: Task) -> None:
        """Validate the whole task (benchmarks.desktop.validate), then run its setup; a
        task that cannot run, or would change the host, is refused before any step."""
        spec = osworld_task_of(task)
        problems = task_problems(spec)
        if problems:
            raise UnsupportedTaskError(
                f"task {spec.id} is not supported here, refused before any step: "
                f"{'; '.join(problems)}")
        task_dir = task.config.get("task_dir")
        env.task_files_dir = Path(task_dir) if task_dir else None
        run_setup(env, spec.config)

    def evaluate(self, env: DesktopEnv, task: Task) -> float:
        """Score in [0, 1] with OSWorld's rules (postconfig, infeasible, conj and/or)."""
        spec = osworld_task_of(task)
        missing = spec.unsupported()
        if missing:
            raise UnsupportedTaskError(f"task {spec.id} is not supported here: needs {', '.join(missing)}")
        run_setup(env, spec.evaluator.postconfig)
        metrics = spec.evaluator.metrics()
        if [name for name, *_ in metrics] == ["infeasible"]:
            return float(_gave_up(env))
        if _gave_up(env):
            return 0.0
        conj = spec.evaluator.conj
        scores: list[float] = []
        size, home = env.screen_size, env.home_dir
        for name, result_cfg, expected_cfg, options in metrics:
            result_cfg = resolve(result_cfg, size.width, size.height, home)
            expected_cfg = resolve(expected_cfg, size.width, size.height, home)
            try:
                result = GETTERS[result_cfg["type"]](env, result_cfg) if result_cfg else None
            except FileNotFoundError:
                logger.info("task %s: result file not found", spec.id)
                result = None
            if expected_cfg:
                score = METRICS[name](result, GETTERS[expected_cfg["type"]](env, expected_cfg), **options)
            else:
                score = METRICS[name](result, **options)
            score = float(score)
            logger.debug("task %s: metric %s -> %.3f", spec.id, name, score)
            if conj == "and" and score == 0.0:
                return 0.0
            if conj == "or" and score == 1.0:
                return 1.0
            scores.append(score)
        return sum(scores) / len(scores) if conj == "and" else max(scores)
