"""Whole-task checks before anything runs, and OSWorld's placeholders and paths.

`task_problems(task)` lists everything that keeps an OSWorld task file from running
here, so a task is refused with one line *before* its first setup step:
- setup steps, getters and metrics that are not implemented, and metric options the
  metric does not take;
- placeholders other than OSWorld's (`{SCREEN_WIDTH}`, `{SCREEN_HEIGHT}`,
  `{SCREEN_WIDTH_HALF}`, `{SCREEN_HEIGHT_HALF}`, `{CLIENT_PASSWORD}`);
- commands that change the host: privileged programs (`sudo`, `su`, `pkexec`), package
  managers (`apt`, `dpkg`, `snap`, `pip install`, ...), service and user managers
  (`systemctl`, `service`, `useradd`, ...), and writes to absolute paths outside the
  episode's home (OSWorld's `/home/user`, mapped to it);
- programs the task starts that are not installed.

The command checks read shell text word by word (best effort: they see the words of a
`bash -c` script, not what a `python -c` program does). A task they pass runs its setup
in the episode's own home with the apps' environment (environments.desktop).

`resolve(value, ...)` substitutes the placeholders as OSWorld's SetupController does and
maps `/home/user` to the episode's home, in every string of a step's parameters or a
getter's config.
"""

from __future__ import annotations

import inspect
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.desktop.registry import METRICS
from benchmarks.desktop.taskfile import OSWorldTask

OSWORLD_HOME = "/home/user"
PLACEHOLDERS = ("SCREEN_WIDTH_HALF", "SCREEN_HEIGHT_HALF", "SCREEN_WIDTH", "SCREEN_HEIGHT",
                "CLIENT_PASSWORD")
# OSWorld's DesktopEnv: client_password "password" (or "osworld-public-evaluation" on
# AWS). No command that would use it runs here (sudo is refused), but it is substituted.
DEFAULT_CLIENT_PASSWORD = "password"

PRIVILEGED = {"sudo", "su", "pkexec", "doas"}
PACKAGE_MANAGERS = {"apt", "apt-get", "aptitude", "dpkg", "snap", "yum", "dnf", "rpm",
                    "pacman", "zypper", "flatpak", "gdebi", "brew"}
SYSTEM_MANAGERS = {"systemctl", "service", "init", "reboot", "shutdown", "poweroff",
                   "halt", "useradd", "userdel", "usermod", "adduser", "deluser", "groupadd",
                   "passwd", "chpasswd", "mount", "umount", "timedatectl", "hostnamectl",
                   "update-alternatives", "modprobe", "loginctl"}
WRITERS = {"mkdir", "touch", "cp", "mv", "rm", "rmdir", "chmod", "chown", "ln", "tee", "dd",
           "install", "truncate", "rsync", "unzip", "tar"}
# Words before a command's program (skipped, with a wrapper's numeric arguments) and shell
# builtins (no program to look for).
SHELL_PREFIXES = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
                  "case", "esac", "function", "!", "{", "}", "export", "local", "declare",
                  "time", "timeout", "nohup", "env", "xargs", "exec", "command"}
SHELL_BUILTINS = {"[", "[[", "]]", "cd", "echo", "printf", "test", "true", "false", "exit",
                  "return", "source", ".", "eval", "set", "unset", "read", "shift", "wait",
                  "sleep", "in", "let", "type", "alias", "pwd", "trap", "break", "continue"}
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "\n", "$(", "`"}
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
_PLAIN_WORD = re.compile(r"^[\w./+-]+$")
COMMAND_STEPS = ("launch", "execute", "command", "execute_with_verification")
COMMAND_GETTERS = ("vm_command_line", "vm_command_error")


def resolve(value: Any, screen_width: int, screen_height: int, home: Path,
            client_password: str = DEFAULT_CLIENT_PASSWORD) -> Any:
    """`value` with OSWorld's placeholders substituted and /home/user mapped to `home`,
    in every string (lists and dicts walked)."""
    if isinstance(value, str):
        text = value
        for name, replacement in (("SCREEN_WIDTH_HALF", str(screen_width // 2)),
                                  ("SCREEN_HEIGHT_HALF", str(screen_height // 2)),
                                  ("SCREEN_WIDTH", str(screen_width)),
                                  ("SCREEN_HEIGHT", str(screen_height)),
                                  ("CLIENT_PASSWORD", client_password)):
            text = text.replace("{" + name + "}", replacement)
        return re.sub(rf"{re.escape(OSWORLD_HOME)}(?=/|\b|$)", str(home), text)
    if isinstance(value, list):
        return [resolve(v, screen_width, screen_height, home, client_password) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, screen_width, screen_height, home, client_password)
                for k, v in value.items()}
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _commands(task: OSWorldTask) -> Iterator[tuple[str, str | list[str], bool]]:
    """(where, command, shell) of every command the task runs."""
    for where, steps in (("setup", task.config), ("postconfig", task.evaluator.postconfig)):
        for step in steps:
            command = step.parameters.get("command")
            if step.type in COMMAND_STEPS and command:
                yield f"{where} {step.type}", command, bool(step.parameters.get("shell"))
    for _, result, expected, _ in task.evaluator.metrics():
        for getter in (result, expected):
            if getter and getter.get("type") in COMMAND_GETTERS and getter.get("command"):
                command = getter["command"]
                shell = bool(getter.get("shell")) or isinstance(command, str)
                yield f"getter {getter['type']}", command, shell


def _words(command: str) -> list[str]:
    lexer = shlex.shlex(command.replace("\n", " ; "), posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: fall back to whitespace words
        return command.split()


def _segments(words: list[str]) -> Iterator[list[str]]:
    segment: list[str] = []
    for word in words:
        if word in SEPARATORS or word.startswith("$("):
            if segment:
                yield segment
            segment = [word[2:]] if word.startswith("$(") and len(word) > 2 else []
        else:
            segment.append(word)
    if segment:
        yield segment


def _outside_home(path: str) -> bool:
    return (path.startswith("/") and path != "/dev/null"
            and not (path == OSWORLD_HOME or path.startswith(OSWORLD_HOME + "/")))


def _program_of(segment: list[str]) -> tuple[str | None, list[str]]:
    """The program a simple command runs, and its arguments (assignments, keywords and
    wrappers like `timeout 10` skipped)."""
    rest = list(segment)
    while rest and ("=" in rest[0].split("/")[0] or rest[0] in SHELL_PREFIXES
                    or rest[0].startswith("-") or rest[0].isdigit()):
        rest = rest[1:]
    if not rest or rest[0] in SHELL_BUILTINS or not _PLAIN_WORD.match(rest[0]):
        return None, rest[1:]
    return rest[0], rest[1:]


def command_problems(command: str | list[str], shell: bool,
                     which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """What makes one command unsafe or impossible here (empty: fine)."""
    if isinstance(command, list):
        argv = [str(a) for a in command]
        if len(argv) >= 3 and Path(argv[0]).name in ("bash", "sh") and argv[1] == "-c":
            return command_problems(argv[2], True, which) + command_problems(argv[:1], False,
                                                                             which)
        words = _words(" ".join(shlex.quote(a) for a in argv)) if shell else argv
        segments = list(_segments(words)) if shell else [argv]
    else:
        words = _words(command)
        segments = list(_segments(words))
    problems: list[str] = []
    for word in words:
        name = Path(word).name
        if name in PRIVILEGED:
            problems.append(f"runs {name!r} (privileged)")
        elif name in PACKAGE_MANAGERS:
            problems.append(f"runs the package manager {name!r}")
        elif name in SYSTEM_MANAGERS:
            problems.append(f"runs the system manager {name!r}")
    for index, word in enumerate(words[:-1]):
        if Path(word).name in ("pip", "pip3") and words[index + 1] == "install":
            problems.append("runs 'pip install'")
        if word in (">", ">>") and _outside_home(words[index + 1]):
            problems.append(f"writes {words[index + 1]!r} outside the episode's home")
    for segment in segments:
        program, args = _program_of(segment)
        if program is None:
            continue
        name = Path(program).name
        if name in WRITERS:
            problems += [f"{name} writes {arg!r} outside the episode's home"
                         for arg in args if _outside_home(arg)]
        if name not in PRIVILEGED | PACKAGE_MANAGERS | SYSTEM_MANAGERS and which(program) is None \
                and not program.startswith(("./", OSWORLD_HOME)) and "/" not in program[1:]:
            problems.append(f"needs the program {program!r}, which is not installed")
    return problems


def _metric_option_problems(name: str, options: dict[str, Any]) -> list[str]:
    metric = METRICS.get(name)
    if metric is None or not options:
        return []
    parameters = inspect.signature(metric).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    accepted = set(list(parameters)[2:]) if len(parameters) > 2 else set(list(parameters)[1:])
    return [f"metric {name!r} option {option!r}" for option in options
            if option not in accepted]


def task_problems(task: OSWorldTask,
                  which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """Everything that keeps `task` from running here, sorted (empty: it runs)."""
    problems = list(task.unsupported())
    for name, _, _, options in task.evaluator.metrics():
        problems += _metric_option_problems(name, options)
    everything = [step.parameters for step in task.config + task.evaluator.postconfig]
    everything += [getter for _, result, expected, _ in task.evaluator.metrics()
                   for getter in (result, expected) if getter]
    for text in _strings(everything):
        problems += [f"placeholder {{{name}}}" for name in _PLACEHOLDER.findall(text)
                     if name not in PLACEHOLDERS]
    for where, command, shell in _commands(task):
        problems += [f"{where} {problem}" for problem in command_problems(command, shell, which)]
    return sorted(set(problems))


__all__ = ["DEFAULT_CLIENT_PASSWORD", "OSWORLD_HOME", "PLACEHOLDERS", "command_problems",
           "resolve", "task_problems"]
