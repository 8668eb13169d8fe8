"""Real OSWorld task files on the local desktop suite (benchmarks/desktop).

Test data: the 24 task specifications of OSWorld's `os` domain, recorded as facts in
tests/golden/osworld-os-tasks.json (source: xlang-ai/OSWorld as kept in ljxpython/OSWorldUse
at f6cee715783b2b2c6f38d460a6dbab90495d238a, evaluation_examples/examples/os/; the header
names it) and written out per task, in OSWorld's folder layout, into a temporary folder.

Each task is either refused before any setup step runs (one line naming what it needs,
and never a privileged or system-changing command on the host), or it runs on our own
Xvfb desktop: a no-op agent scores 0, and where the solution is a command or the answer
"infeasible", the solved state scores 1. This runs the real task files against our
implementation of OSWorld's setup steps, getters and metrics (not against OSWorld's VM).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest_engine import run_episode

from actions.contracts import PolicyOutput, Task
from actions.models import Terminate
from benchmarks.desktop import DesktopSuite, UnsupportedTaskError, load_task
from benchmarks.desktop import evaluators as evaluators_module
from benchmarks.desktop.validate import command_problems, resolve, task_problems

GOLDEN = Path(__file__).parent / "golden" / "osworld-os-tasks.json"


@pytest.fixture(scope="module")
def os_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden's tasks as OSWorld's `examples/os/<id>.json` files."""
    folder = tmp_path_factory.mktemp("osworld-examples") / "os"
    folder.mkdir()
    for task_id, task in json.loads(GOLDEN.read_text(encoding="utf-8"))["tasks"].items():
        (folder / f"{task_id}.json").write_text(json.dumps(task), encoding="utf-8")
    return folder

# id prefix -> a word of the refusal (the first thing that keeps it from running here)
REFUSED = {
    "13584542": "vm_terminal_output", "23393935": "download", "28cc3b7e": "pulseaudio",
    "37887e8c": "download", "4127319a": "download", "4d117223": "download",
    "5812b315": "sudo", "5c1075ca": "download", "5ced85fc": "download",
    "5ea617a3": "download", "6f56bf42": "download", "a462a795": "sudo",
    "b6781586": "is_utc_0", "e0df059f": "sudo", "ec4e3f68": "check_gnome_favorite_apps",
}
# id prefix -> the command that solves it ("FAIL": the task is infeasible; None: the
# solution would change the host, e.g. installing Spotify, so only the no-op runs)
RUNS = {
    "3ce045a0": "gsettings set org.gnome.desktop.interface text-scaling-factor 1.5",
    "4783cc41": "FAIL",
    "94d95f96": None,
    "a4d98375": "gsettings set org.gnome.desktop.screensaver lock-enabled true",
    "b3d4a89c": "FAIL",
    "bedcedc4": "gsettings set org.gnome.desktop.session idle-delay 0",
    "c288e301": "FAIL",
    "f9be0997": "gsettings set org.gnome.desktop.notifications show-banners false",
    "fe41f596": "FAIL",
}


def os_tasks(os_dir: Path) -> dict[str, Path]:
    return {path.name[:8]: path for path in sorted(os_dir.glob("*.json"))}


def test_every_os_task_is_either_refused_with_its_reason_or_runnable(os_dir: Path) -> None:
    tasks = os_tasks(os_dir)
    assert len(tasks) == 24 and set(tasks) == set(REFUSED) | set(RUNS)
    for prefix, path in tasks.items():
        problems = task_problems(load_task(path))
        if prefix in REFUSED:
            assert any(REFUSED[prefix] in p for p in problems), (prefix, problems)
        else:
            assert problems == [], (prefix, problems)


@pytest.mark.parametrize("command,shell,problem", [
    ("echo {CLIENT_PASSWORD} | sudo -S apt install -y spotify", True, "'sudo'"),
    ("apt-get install -y expect", True, "package manager 'apt-get'"),
    (["bash", "-c", "systemctl restart ssh"], False, "system manager 'systemctl'"),
    ("pip install requests", True, "'pip install'"),
    ("echo x > /etc/hosts", True, "'/etc/hosts' outside the episode's home"),
    ("mkdir -p /opt/x && touch /home/user/ok", True, "'/opt/x' outside"),
    (["code", "--new-window"], False, "program 'code', which is not installed"),
])
def test_host_changing_or_impossible_commands_are_named(command, shell, problem) -> None:
    problems = command_problems(command, shell, which=lambda name: None if name == "code"
                                else f"/usr/bin/{name}")
    assert any(problem in p for p in problems), problems


def test_harmless_commands_pass() -> None:
    which = lambda name: f"/usr/bin/{name}"  # noqa: E731
    for command, shell in [("mkdir -p /home/user/Desktop/a && echo ok > /dev/null", True),
                           ("[ -d ~/Desktop/x ] && echo yes || echo no", True),
                           (["python", "-c", "import pyautogui; pyautogui.click(1, 2)"], False),
                           ("TEXT=$(timeout 10 gsettings get a b 2>/dev/null | head -1)", True)]:
        assert command_problems(command, shell, which) == [], command


def test_placeholders_and_home_are_resolved(os_dir: Path) -> None:
    home = Path("/tmp/episode-home")
    step = {"command": ["python", "-c", "click({SCREEN_WIDTH_HALF}, {SCREEN_HEIGHT_HALF})"],
            "path": "/home/user/Desktop/a.txt", "x": "{SCREEN_WIDTH}x{SCREEN_HEIGHT}",
            "pw": "{CLIENT_PASSWORD}", "other": "/home/username"}
    assert resolve(step, 1280, 720, home) == {
        "command": ["python", "-c", "click(640, 360)"],
        "path": "/tmp/episode-home/Desktop/a.txt", "x": "1280x720", "pw": "password",
        "other": "/home/username"}
    bad = load_task(os_tasks(os_dir)["a4d98375"]).model_copy(deep=True)
    bad.config[0].parameters["command"] = ["echo", "{SCREEN_DEPTH}"]
    assert "placeholder {SCREEN_DEPTH}" in task_problems(bad)


class Say:
    """A policy that answers every step with one action (a no-op agent: DONE at once)."""

    name = "say"

    def __init__(self, action) -> None:
        self.action = action

    def act(self, states):
        return [PolicyOutput(raw_text="", actions=[self.action]) for _ in states]

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_real_os_tasks_refused_before_any_step_or_scored(
        monkeypatch: pytest.MonkeyPatch, os_dir: Path) -> None:
    suite = DesktopSuite(tasks_dir=os_dir.parent)
    ran_setup: list[str] = []
    real_run_setup = evaluators_module.run_setup

    def spy(env, steps):
        ran_setup.append(env.task.task_id if env.task else "?")
        return real_run_setup(env, steps)

    monkeypatch.setattr(evaluators_module, "run_setup", spy)
    by_prefix = {task_id[:8]: task_id for task_id in suite.list_tasks()}
    env = suite.make_environment()
    try:
        for prefix in REFUSED:
            task = suite.make_task(by_prefix[prefix])
            ran_setup.clear()
            with pytest.raises(UnsupportedTaskError, match="refused before any step") as info:
                env.reset(task)
            assert "\n" not in str(info.value) and ran_setup == [], prefix
        noop = Say(Terminate(status="success"))
        for prefix, solution in RUNS.items():
            task: Task = suite.make_task(by_prefix[prefix])
            result = run_episode(env, noop, task, platform="desktop")
            assert (result.error, result.reward) == (None, 0.0), (prefix, result.error)
            if solution == "FAIL":
                solved = run_episode(env, Say(Terminate(status="failure")), task,
                                     platform="desktop")
                assert solved.reward == 1.0 and solved.success, prefix
            elif solution is not None:
                env.reset(task)
                done = env.run(shlex.split(solution))
                assert done.returncode == 0, done.stderr
                assert env.evaluate() == 1.0, prefix
    finally:
        env.close()


class RunRecorder:
    """The part of DesktopEnv that `execute` uses: run() answering from a script."""

    def __init__(self, home: Path, answers: list[tuple[int, str]]) -> None:
        self.home_dir = home
        self.answers = list(answers)
        self.commands: list = []

    def run(self, argv, shell=False, timeout_s=30.0):
        import subprocess

        self.commands.append(argv)
        code, out = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return subprocess.CompletedProcess(argv, code, out, "boom" if code else "")


def test_execute_keeps_osworlds_semantics(tmp_path: Path, monkeypatch) -> None:
    """Parity with OSWorld's SetupController._execute_setup (same commit as the data):
    a non-zero exit is not a setup failure; `until` reruns the command until the
    returncode/stdout/stderr condition holds; stdout/stderr go to files in the cache."""
    import sys

    from benchmarks.desktop import setup as setup_module

    monkeypatch.setattr(setup_module.time, "sleep", lambda s: None)
    home = tmp_path / "home-1"
    home.mkdir()
    env = RunRecorder(home, [(1, "")])
    setup_module.execute(env, ["false"])  # logged, not raised
    env = RunRecorder(home, [(0, "starting"), (0, "starting"), (0, "ready\n")])
    setup_module.execute(env, "probe", shell=True, until={"stdout": "ready"}, stdout="out.txt")
    assert len(env.commands) == 3
    assert (tmp_path / "home-1-cache" / "out.txt").read_text() == "ready\n"
    env = RunRecorder(home, [(0, "never")])
    with pytest.raises(setup_module.SetupFailed, match="until"):
        setup_module.execute(env, "probe", shell=True, until={"returncode": 3},
                             until_timeout_s=0)
    env = RunRecorder(home, [(0, "")])
    setup_module.execute(env, ["python", "-c", "pass"])
    assert env.commands[0][0] == sys.executable  # the "VM's" python has pyautogui
