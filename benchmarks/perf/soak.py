"""Chaos soak: many episodes through `cua eval` while seeded faults hit every moving part,
then the runs are resumed until they finish, then every run directory is audited.

Three `cua eval` runs go side by side over 4 worker processes in all (their public surface
only: the CLI, its --workers and its resume of an existing --out, and the run directory):

- ``miniwob-oracle``: MiniWoB++ tasks solved by the scripted oracle (2 workers);
- ``miniwob-tiny``: MiniWoB++ tasks played by the tiny Qwen3-VL (random weights, built
  offline) behind ``policies/chat_server.py`` through ``--policy openai`` (1 worker);
- ``android-oracle``: tasks of the local Android suite on the virtual phone, through a
  private adb server on a free port (never 5037) (1 worker).

A fault injector (``random.Random(seed)``) fires faults at seeded points of the soak's
progress (fractions of the episodes finished), so the same seed gives the same schedule on
a fast or a slow machine. Kinds:

========================  ===================================================================
kill_browser              SIGKILL a Chromium main process under one of the runs (a MiniWoB
                          browser, shared by up to `contexts_per_browser` environments, or
                          the virtual phone's renderer)
kill_context              SIGKILL one renderer process of a MiniWoB browser (one
                          environment's context: only its episode may end)
kill_worker               SIGKILL one worker process of one run
kill_run                  SIGKILL a whole `cua eval` process group (the run is resumed)
kill_adb                  SIGKILL the private adb server
kill_policy_server        SIGKILL the chat server; it is started again on the same port
server_500                the chat server answers the next requests with HTTP 500
server_hang               the chat server holds every answer past the client's timeout for a
                          while
disk_full                 (once) fill the file system holding the runs (a small tmpfs) until
                          ENOSPC, hold it full, then free it
========================  ===================================================================

Four runs: the three above and ``miniwob-dense``, MiniWoB solved by the oracle on 32
environments in one process (one shared Chromium per `contexts_per_browser` contexts),
where the browser and context kills land.

A run whose `cua eval` was killed or failed (non-zero exit: killed, stopped after
consecutive errors, failed on a full disk) before every episode of it is in results.jsonl
is started again on the same --out, which resumes it, at most `--max-starts` times; the
table counts these resumes. A run that exits 0 is finished, whatever it recorded. Episodes
that ended in an error stay finished (no --retry-errors): they are counted by error kind,
apart from lost ones.

Audit, per run, independent of the restarts: every planned episode key is in results.jsonl
exactly once (lost = planned keys without a result line; duplicated), every line of
results.jsonl and of each finished episode's steps.jsonl parses, every JSON file parses,
every stored screenshot decodes and hashes to its name, every screenshot a finished step
names exists (corrupt files). Every scheduled fault must have fired: the report names each
that did not (skipped, or not reached before the runs ended). Exit status 1 if anything is
lost, duplicated or corrupt, a run gave up, or a scheduled fault did not fire.

    python -m benchmarks.perf.soak                  # >= 200 episodes (about 10-20 min on 2 cores)
    python -m benchmarks.perf.soak --scale 0.12     # the ~2-minute version tests/test_soak.py runs

The disk_full fault needs a tmpfs mount (root). Where mounting is not permitted, the runs
live in an ordinary temporary directory and the fault is not scheduled (the report says
so, with the reason).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from PIL import Image
from rich.console import Console
from rich.table import Table

from trajectories.store import RunDir

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]  # benchmarks/perf/soak.py -> the checkout
FAULT_KINDS = ("kill_browser", "kill_context", "kill_worker", "kill_run", "kill_adb",
               "kill_policy_server", "server_500", "server_hang", "disk_full")
POLICY_TIMEOUT_S = 8.0  # the openai client's per-request timeout in the soak
HANG_S = 12.0  # how long server_hang holds answers (longer than POLICY_TIMEOUT_S)
DISK_FULL_S = 6.0  # how long the disk stays full
POLICY_SERVER_DOWN_S = 3.0  # how long the killed chat server stays down
MAX_STARTS_PER_RUN = 30  # a run still unfinished after this many starts is given up
RESTART_BACKOFF_S = (1.0, 10.0)  # wait before restarting a run: doubles per start without
# progress (a run that cannot start while the chat server reloads), up to the second value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the runs


@dataclass
class Stream:
    """One `cua eval` run of the soak: what it runs and where it records."""

    name: str
    suite: str
    tasks: list[str]
    episodes: int  # seeds 0..episodes-1 per task
    workers: int
    out: Path
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    starts: int = 0
    log: Path | None = None
    restart_at: float = 0.0  # monotonic time of the next start (0: not scheduled yet)
    lines_at_start: int = 0
    idle_starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    gave_up: bool = False  # still unfinished after max_starts starts: its missing keys are lost

    @property
    def finished(self) -> bool:
        """Nothing more to run: every key recorded, or its last start exited 0 (then
        whatever it did not record is lost), or it was given up."""
        if self.alive():
            return False
        return self.gave_up or self.complete() or (
            self.process is not None and self.process.returncode == 0)

    @property
    def expected_keys(self) -> set[str]:
        return {f"{self.suite}/{task}/{seed}" for task in self.tasks
                for seed in range(self.episodes)}

    def command(self) -> list[str]:
        return [sys.executable, "-c", "from agent.cli.main import main; main()", "eval", self.suite,
                "--tasks",
                ",".join(self.tasks), "--episodes", str(self.episodes), "--workers",
                str(self.workers), "--out", str(self.out), *self.extra]

    def finished_keys(self) -> list[str]:
        """Keys of the lines of results.jsonl (a torn last line is not finished)."""
        if not (self.out / "manifest.json").exists():
            return []
        return [r.key for r in RunDir(self.out).results()]

    def finished_lines(self) -> int:
        path = self.out / "results.jsonl"
        try:
            return path.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def complete(self) -> bool:
        return self.expected_keys <= set(self.finished_keys())

    def start(self, logs: Path) -> None:
        self.starts += 1
        self.restart_at = 0.0
        self.lines_at_start = self.finished_lines()
        self.log = logs / f"{self.name}.log"
        with self.log.open("ab") as log:
            log.write(f"\n===== start {self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            # own process group: kill_run takes the run down with its workers and browsers
            self.process = subprocess.Popen(
                self.command(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "120"})

    def note_exit(self) -> None:
        """The run's process ended unfinished: restart it after a back-off that doubles
        while its starts make no progress."""
        lines = self.finished_lines()
        self.idle_starts = 0 if lines > self.lines_at_start else self.idle_starts + 1
        low, high = RESTART_BACKOFF_S
        self.restart_at = time.monotonic() + min(high, low * 2 ** self.idle_starts)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)


# --------------------------------------------------------------------------- services


class ChatServerProcess:
    """policies/chat_server.py serving the tiny model on a fixed loopback port."""

    def __init__(self, model_dir: Path, logs: Path) -> None:
        self.model_dir = model_dir
        self.port = free_port()
        self.log = logs / "chat_server.log"
        self.process: subprocess.Popen | None = None
        self.started: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the server unless one of ours is running (two overlapping kill faults
        schedule two restarts: the second must not start a rival on the same port)."""
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                return
            log = self.log.open("ab")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "policies.chat_server", str(self.model_dir), "--port",
                 str(self.port), "--served-model-name", "tiny", "--device", "cpu",
                 "--threads", "1"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True)
            self.started.append(self.process)
            log.close()
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"the chat server exited; see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the chat server did not answer in {timeout_s} s")
            time.sleep(0.2)  # polling a condition with a deadline

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """Kill every server process this object started that still runs."""
        with self._lock:
            for process in self.started:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)

    def set_faults(self, **faults: float) -> bool:
        """POST /faults (a few tries: a server busy generating on one thread answers
        late); False when it is down."""
        request = urllib.request.Request(
            self.base_url.removesuffix("/v1") + "/faults", data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        for _ in range(3):
            try:
                with urllib.request.urlopen(request, timeout=30):
                    return True
            except OSError as exc:
                logger.info("POST /faults failed: %s", exc)
        return False  # down (killed): the fault is skipped


class AdbServer:
    """A private adb server (Debian's adb) on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.adb = shutil.which("adb") or "/usr/bin/adb"

    def start(self) -> None:
        subprocess.run([self.adb, "-P", str(self.port), "start-server"], check=True,
                       capture_output=True, timeout=60,
                       env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(self.port)})

    def pids(self) -> list[int]:
        """The server daemon(s) listening on our port (`adb -L tcp:PORT fork-server ...`)."""
        found = []
        for process in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if "fork-server" in cmdline and f"tcp:{self.port}" in cmdline:
                found.append(process.pid)
        return found

    def stop(self) -> None:
        subprocess.run([self.adb, "-P", str(self.port), "kill-server"], capture_output=True,
                       timeout=60, check=False)


class Disk:
    """Where the runs live: a small tmpfs when mounting is permitted."""

    def __init__(self, root: Path, size_mb: int) -> None:
        self.path = root / "runs"
        self.path.mkdir(parents=True)
        self.mounted = False
        self.why_not: str | None = None
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                            str(self.path)], check=True, capture_output=True, timeout=30)
            self.mounted = True
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            self.why_not = (f"mount -t tmpfs failed ({detail.decode(errors='replace').strip()}"
                            f"{exc if not detail else ''}): not root, or no CAP_SYS_ADMIN")

    def fill(self) -> Path:
        """Write a filler file until the file system says ENOSPC; returns its path (the
        caller removes it). Unbuffered, so that no write is left pending at close."""
        filler = self.path / ".soak-filler"
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):  # then the last few KiB, then bytes
                try:
                    while True:
                        os.write(descriptor, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        except BaseException:
            os.close(descriptor)
            filler.unlink()
            raise
        os.close(descriptor)
        return filler

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=60,
                           check=False)
            self.mounted = False


# --------------------------------------------------------------------------- faults


def _descendants(streams: list[Stream]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    for stream in streams:
        if stream.alive():
            with contextlib.suppress(psutil.Error):
                found += psutil.Process(stream.process.pid).children(recursive=True)
    return found


def _is_browser_main(process: psutil.Process) -> bool:
    """A Chromium process whose parent is not Chromium (the browser, not a renderer)."""
    try:
        if "chrom" not in process.name().lower():
            return False
        parent = process.parent()
        return parent is None or "chrom" not in parent.name().lower()
    except psutil.Error:
        return False


def _is_renderer(process: psutil.Process) -> bool:
    """A Chromium renderer: one context's page (a context kill)."""
    try:
        return "chrom" in process.name().lower() and "--type=renderer" in process.cmdline()
    except psutil.Error:
        return False


def _is_worker(process: psutil.Process) -> bool:
    """A worker process of a run (multiprocessing spawn, or a Ray worker)."""
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "python" in process.name().lower() and (
        "spawn_main" in cmdline or "default_worker" in cmdline) and "resource_tracker" \
        not in cmdline


@dataclass
class Fault:
    at_fraction: float  # fires once this fraction of all episodes is in results.jsonl
    kind: str


def schedule(seed: int, per_kind: int, kinds: tuple[str, ...] = FAULT_KINDS) -> list[Fault]:
    """The seeded fault schedule: `per_kind` of each kind (disk_full once), at seeded
    points between 5 % and 70 % of the soak's progress (the rest shows the recovery)."""
    rng = random.Random(seed)
    faults = [Fault(rng.uniform(0.05, 0.70), kind) for kind in kinds
              for _ in range(1 if kind == "disk_full" else per_kind)]
    return sorted(faults, key=lambda f: f.at_fraction)


class FaultInjector:
    """Fires the schedule (see module docstring) from a thread; counts what it did."""

    def __init__(self, faults: list[Fault], streams: list[Stream], chat: ChatServerProcess,
                 adb: AdbServer, disk: Disk, seed: int) -> None:
        self.faults = faults
        self.streams = streams
        self.chat = chat
        self.adb = adb
        self.disk = disk
        self.rng = random.Random(seed + 1)
        self.injected: collections.Counter[str] = collections.Counter()
        self.skipped: dict[str, list[str]] = collections.defaultdict(list)
        self.log: list[str] = []
        self._stop = threading.Event()
        self._restores: list[threading.Thread] = []
        self.not_reached: list[str] = []  # faults still scheduled when the runs finished
        self.unscheduled: dict[str, str] = {}  # kinds left out of the schedule, and why
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._total = sum(len(s.expected_keys) for s in streams)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        for thread in self._restores:
            thread.join(timeout=300)

    def unfired(self) -> list[str]:
        """Every scheduled fault that did not fire, and why (empty: all fired)."""
        out = [f"{kind}: {reason}" for kind, reasons in sorted(self.skipped.items())
               for reason in reasons]
        return out + [f"{kind}: not reached before the runs ended" for kind in self.not_reached]

    def _progress(self) -> float:
        return sum(min(s.finished_lines(), len(s.expected_keys)) for s in self.streams) \
            / self._total

    def _run(self) -> None:
        pending = list(self.faults)
        while pending and not self._stop.is_set():
            if self._progress() >= pending[0].at_fraction:
                fault = pending.pop(0)
                try:
                    done = self._fire(fault.kind)
                except Exception as exc:  # noqa: BLE001 - report, keep injecting
                    done = f"failed: {type(exc).__name__}: {exc}"
                    self.skipped[fault.kind].append(done)
                else:
                    if done.startswith("skipped"):
                        self.skipped[fault.kind].append(done)
                    else:
                        self.injected[fault.kind] += 1
                elapsed_s = time.monotonic() - self._started
                self.log.append(f"+{elapsed_s:.0f} s (scheduled at {fault.at_fraction:.0%} "
                                f"done): {fault.kind}: {done}")
                logger.info("fault %s: %s", fault.kind, done)
            else:
                self._stop.wait(0.25)  # polling the runs' progress
        self.not_reached = [fault.kind for fault in pending]

    def _fire(self, kind: str) -> str:
        if kind == "kill_browser":
            return self._kill(self._targets(_is_browser_main), "browser")
        if kind == "kill_context":
            web = [s for s in self.streams if s.suite == "miniwob"]
            return self._kill(self._targets(_is_renderer, web), "renderer")
        if kind == "kill_worker":
            return self._kill(self._targets(_is_worker), "worker")
        if kind == "kill_run":
            running = [s for s in self.streams if s.alive()]
            if not running:
                return "skipped: no run is running"
            stream = self.rng.choice(running)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stream.process.pid, signal.SIGKILL)
            return f"killed the process group of {stream.name} (pid {stream.process.pid})"
        if kind == "kill_adb":
            deadline = time.monotonic() + 20  # a killed server is restarted by the next reset
            while not (pids := self.adb.pids()) and time.monotonic() < deadline \
                    and not self._stop.is_set():
                self._stop.wait(0.25)  # polling for the adb server to be back
            if not pids:
                return "skipped: no adb server running"
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return f"killed the adb server on port {self.adb.port} (pid {pids})"
        if kind == "kill_policy_server":
            self.chat.kill()
            self._later(POLICY_SERVER_DOWN_S, self.chat.start)
            return f"killed the chat server; restarted after {POLICY_SERVER_DOWN_S:g} s"
        if kind in ("server_500", "server_hang"):
            self._wait_for_chat_server()
        if kind == "server_500":
            count = self.rng.randint(2, 6)
            if not self.chat.set_faults(fail_next=count):
                return "skipped: the chat server did not take it (down, or busy past 3 tries)"
            return f"the next {count} chat requests answer HTTP 500"
        if kind == "server_hang":
            if not self.chat.set_faults(delay_s=HANG_S + 10):
                return "skipped: the chat server did not take it (down, or busy past 3 tries)"
            self._later(HANG_S, lambda: self.chat.set_faults(delay_s=0))
            return f"answers held {HANG_S + 10:g} s (client timeout {POLICY_TIMEOUT_S:g} s) " \
                   f"for {HANG_S:g} s"
        if kind == "disk_full":
            if not self.disk.mounted:
                return f"skipped: {self.disk.why_not}"
            filler = self.disk.fill()
            free = shutil.disk_usage(self.disk.path).free
            self._later(DISK_FULL_S, filler.unlink)
            return f"filled the runs' tmpfs ({free} bytes left) for {DISK_FULL_S:g} s"
        raise ValueError(f"unknown fault kind {kind!r}")

    def _wait_for_chat_server(self, timeout_s: float = 120.0) -> None:
        """A server fault needs a server: wait while a killed one is restarting."""
        deadline = time.monotonic() + timeout_s
        while not self.chat.answers() and time.monotonic() < deadline \
                and not self._stop.is_set():
            self._stop.wait(0.25)  # polling the restart

    def _later(self, delay_s: float, restore: Callable[[], object]) -> None:
        """Undo a fault after `delay_s` (on its own thread, so that faults can overlap);
        `stop` waits for every pending restore."""
        def run() -> None:
            self._stop.wait(delay_s)  # the outage lasts this long (or until the soak ends)
            restore()

        thread = threading.Thread(target=run, name="fault-restore", daemon=True)
        self._restores.append(thread)
        thread.start()

    def _targets(self, predicate: Callable[[psutil.Process], bool],
                 streams: list[Stream] | None = None) -> list[psutil.Process]:
        """Processes under the runs (all, or `streams`) matching `predicate`, waiting up to
        20 s for one to exist (a run may be between episodes or restarting)."""
        deadline = time.monotonic() + 20
        while True:
            found = [p for p in _descendants(streams or self.streams) if predicate(p)]
            if found or time.monotonic() > deadline or self._stop.is_set():
                return found
            self._stop.wait(0.25)  # polling for a target

    def _kill(self, processes: list[psutil.Process], what: str) -> str:
        if not processes:
            return f"skipped: no {what} process running"
        victim = self.rng.choice(processes)
        try:
            name = victim.name()
            victim.kill()
        except psutil.Error as exc:
            return f"skipped: the {what} went away first ({exc})"
        return f"killed {what} {name} pid {victim.pid}"


# --------------------------------------------------------------------------- audit


@dataclass
class Audit:
    """What the run directories hold once every run finished."""

    episodes: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    errors_by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    successes: int = 0
    abandoned_attempts: int = 0  # episode directories without a result (a resumed run
    # reruns an unfinished episode in its own directory, so 0 once every run finished)
    leftover_temp_files: int = 0


def _json_ok(path: Path, audit: Audit) -> None:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        audit.corrupt.append(f"{path}: {exc}")


def audit_run(stream: Stream, audit: Audit) -> None:
    if not (stream.out / "manifest.json").exists():  # the run never got going
        audit.lost += sorted(stream.expected_keys)
        return
    run = RunDir(stream.out)
    results = run.results()
    keys = collections.Counter(r.key for r in results)
    audit.episodes += len(results)
    audit.lost += sorted(stream.expected_keys - set(keys))
    audit.duplicated += sorted(k for k, n in keys.items() if n > 1)
    audit.corrupt += [f"{stream.out}/results.jsonl: {p}" for p in run.problems]
    run.problems.clear()
    _json_ok(stream.out / "manifest.json", audit)
    finished = {r.episode_id: r for r in results}
    for result in results:
        audit.successes += result.success
        if result.error:
            audit.errors_by_kind[result.error.split(":")[0]] += 1
    stored = {}
    for path in sorted((stream.out / "screenshots").glob("*.png")):
        data = path.read_bytes()
        stored[path.stem] = True
        if hashlib.sha256(data).hexdigest() != path.stem:
            audit.corrupt.append(f"{path}: content does not hash to its name")
            continue
        try:
            Image.open(io.BytesIO(data)).load()
        except Exception as exc:  # noqa: BLE001 - any decode failure is corruption
            audit.corrupt.append(f"{path}: {exc}")
    audit.leftover_temp_files += sum(1 for p in stream.out.rglob("*") if p.is_file()
                                     and p.name.startswith(".") and ".tmp" in p.name)
    for episode_id in run.episode_ids():
        folder = stream.out / "episodes" / episode_id
        _json_ok(folder / "episode.json", audit)
        if episode_id not in finished:
            audit.abandoned_attempts += 1
            continue
        _json_ok(folder / "result.json", audit)
        steps = run.steps(episode_id)
        audit.corrupt += [f"{folder}/steps.jsonl: {p}" for p in run.problems]
        run.problems.clear()
        if len(steps) != finished[episode_id].steps and not finished[episode_id].error:
            audit.corrupt.append(f"{folder}: {len(steps)} steps recorded, result says "
                                 f"{finished[episode_id].steps}")
        for step in steps:
            if step.observation.screenshot_sha256 not in stored:
                audit.corrupt.append(f"{folder}: step {step.index} names a missing screenshot")


# --------------------------------------------------------------------------- main


def build_streams(root: Path, scale: float, chat: ChatServerProcess, adb: AdbServer,
                  dense_envs: int = 32) -> list[Stream]:
    def count(n: int) -> int:
        return max(1, round(n * scale))

    miniwob_tasks = ["click-test", "click-button", "click-checkboxes", "enter-text",
                     "focus-text", "click-link", "login-user", "click-tab"]
    android_tasks = ["ContactsFavorite", "SettingsToggle", "ClockDisableAlarm"]
    return [
        Stream("miniwob-oracle", "miniwob", miniwob_tasks, count(17), 2, root / "miniwob-oracle"),
        Stream("miniwob-tiny", "miniwob", miniwob_tasks[:4], count(10), 1, root / "miniwob-tiny",
               ["--policy", "openai", "--base-url", chat.base_url, "--model", "tiny",
                "--max-steps", "2", "--policy-option", f"timeout_s={POLICY_TIMEOUT_S}",
                "--policy-option", "max_retries=1",
                "--policy-option", "max_new_tokens=24"]),
        Stream("android-oracle", "android", android_tasks, count(8), 1, root / "android-oracle",
               ["--suite-option", f"adb_port={adb.port}"]),
        Stream("miniwob-dense", "miniwob", miniwob_tasks[:4], count(max(dense_envs, 40)), 0,
               root / "miniwob-dense", ["--num-envs", str(dense_envs)]),
    ]


@contextlib.contextmanager
def soak_services(root: Path, disk_mb: int, model_dir: Path | None, console: Console
                  ) -> Iterator[tuple[ChatServerProcess, AdbServer, Disk]]:
    from policies.tiny import build_tiny_qwen3vl

    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if model_dir is None:
        console.print("building the tiny Qwen3-VL (offline, random weights) ...")
        model_dir = build_tiny_qwen3vl(root / "tiny-qwen3vl")
    chat = ChatServerProcess(model_dir, logs)
    adb = AdbServer()
    disk = Disk(root, disk_mb)
    try:
        chat.start()
        adb.start()
        yield chat, adb, disk
    finally:
        chat.kill()
        adb.stop()
        disk.unmount()


def supervise(streams: list[Stream], logs: Path, max_starts: int = MAX_STARTS_PER_RUN) -> None:
    """Start the runs and restart (resume) each one that was killed or failed, at most
    `max_starts` starts each, until every run is finished (see Stream.finished)."""
    for stream in streams:
        if stream.process is None:
            stream.start(logs)
    while not all(stream.finished for stream in streams):
        for stream in streams:
            if stream.alive() or stream.finished:
                continue
            if stream.restart_at == 0.0:  # just exited: back off, then resume
                stream.exit_codes.append(stream.process.returncode)
                if stream.starts >= max_starts:
                    stream.gave_up = True
                    continue
                stream.note_exit()
            elif time.monotonic() >= stream.restart_at:
                stream.start(logs)  # resumes: --out exists
        time.sleep(0.5)  # polling the runs
    for stream in streams:  # the exit of the last start
        if stream.process is not None and len(stream.exit_codes) < stream.starts:
            stream.exit_codes.append(stream.process.returncode)


def soak(root: Path, *, scale: float, seed: int, per_kind: int, disk_mb: int,
         model_dir: Path | None, console: Console, max_starts: int = MAX_STARTS_PER_RUN,
         dense_envs: int = 32) -> tuple[Audit, FaultInjector, list[Stream], float]:
    """Run the soak under `root`; returns the audit, the injector, the runs, seconds."""
    started = time.monotonic()
    with soak_services(root, disk_mb, model_dir, console) as (chat, adb, disk):
        streams = build_streams(disk.path, scale, chat, adb, dense_envs)
        total = sum(len(s.expected_keys) for s in streams)
        console.print(f"{total} episodes in {len(streams)} runs over "
                      f"{sum(s.workers for s in streams)} workers; runs on "
                      f"{'a ' + str(disk_mb) + ' MB tmpfs' if disk.mounted else disk.path}")
        kinds = FAULT_KINDS if disk.mounted else tuple(k for k in FAULT_KINDS
                                                       if k != "disk_full")
        injector = FaultInjector(schedule(seed, per_kind, kinds), streams, chat, adb, disk,
                                 seed)
        if not disk.mounted:
            injector.unscheduled["disk_full"] = disk.why_not or "no tmpfs"
        logs = root / "logs"
        try:
            for stream in streams:
                stream.start(logs)
            injector.start()
            supervise(streams, logs, max_starts)
        finally:
            injector.stop()
            for stream in streams:
                stream.stop()
        audit = Audit()
        for stream in streams:
            audit_run(stream, audit)
        # copy nothing out: the tmpfs goes away with the soak
    return audit, injector, streams, time.monotonic() - started


def report(console: Console, audit: Audit, injector: FaultInjector, streams: list[Stream],
           seconds: float) -> None:
    table = Table(title="chaos soak", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("episodes", str(audit.episodes))
    table.add_row("  succeeded", str(audit.successes))
    for stream in streams:
        where = (f"{stream.workers} worker{'s' if stream.workers > 1 else ''}"
                 if stream.workers else " ".join(stream.extra))
        table.add_row(f"  {stream.name} ({where})", str(len(stream.expected_keys)))
    table.add_row("faults scheduled / fired", f"{len(injector.faults)} / "
                  f"{sum(injector.injected.values())}")
    for kind in FAULT_KINDS:
        skipped = injector.skipped.get(kind, [])
        if kind in injector.unscheduled:
            table.add_row(f"  {kind}", "not scheduled")
            continue
        table.add_row(f"  {kind}", f"{injector.injected[kind]}"
                      + (f" ({len(skipped)} skipped)" if skipped else ""))
    table.add_row("scheduled faults that did not fire", str(len(injector.unfired())))
    table.add_row("episodes ended in error", str(sum(audit.errors_by_kind.values())))
    for kind, n in sorted(audit.errors_by_kind.items()):
        table.add_row(f"  {kind}", str(n))
    table.add_row("lost", str(len(audit.lost)))
    table.add_row("duplicated", str(len(audit.duplicated)))
    table.add_row("corrupt files", str(len(audit.corrupt)))
    table.add_row("resumes", str(sum(s.starts - 1 for s in streams)))
    table.add_row("runs given up", ", ".join(s.name for s in streams if s.gave_up) or "0")
    table.add_row("episode directories without a result", str(audit.abandoned_attempts))
    table.add_row("leftover temporary files", str(audit.leftover_temp_files))
    table.add_row("wall time", f"{seconds:.0f} s")
    console.print(table)
    for line in injector.unfired():
        console.print(f"[red]did not fire: {line}[/]")
    for kind, why in injector.unscheduled.items():
        console.print(f"not scheduled: {kind}: {why}")
    for problem in (audit.lost + audit.duplicated + audit.corrupt)[:20]:
        console.print(f"[red]{problem}[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="episodes relative to the full soak (1.0: 200 episodes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    parser.add_argument("--faults-per-kind", type=int, default=3,
                        help="faults of each kind (disk_full: always once)")
    parser.add_argument("--disk-mb", type=int, default=256, help="size of the runs' tmpfs")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work here and keep the logs (default: a temporary directory); "
                        "the runs themselves live on the tmpfs and go with it")
    parser.add_argument("--max-starts", type=int, default=MAX_STARTS_PER_RUN,
                        help="starts per run before its missing episodes count as lost")
    parser.add_argument("--dense-envs", type=int, default=32,
                        help="environments of the miniwob-dense run (one process)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a tiny Qwen3-VL folder to serve (default: build one, ~1 min)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console(width=110)
    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="cua-soak-")))
        audit, injector, streams, seconds = soak(
            root, scale=args.scale, seed=args.seed, per_kind=args.faults_per_kind,
            disk_mb=args.disk_mb, model_dir=args.model_dir, console=console,
            max_starts=args.max_starts, dense_envs=args.dense_envs)
        report(console, audit, injector, streams, seconds)
        for line in injector.log:
            console.print(f"  {line}", style="dim")
    return 1 if failed(audit, injector, streams) else 0


def failed(audit: Audit, injector: FaultInjector, streams: list[Stream]) -> bool:
    """Whether the soak failed: anything lost, duplicated or corrupt, a run given up, or
    a scheduled fault that did not fire."""
    return bool(audit.lost or audit.duplicated or audit.corrupt or injector.unfired()
                or any(s.gave_up for s in streams))


if __name__ == "__main__":
    raise SystemExit(main())
