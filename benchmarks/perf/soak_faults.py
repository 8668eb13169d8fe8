"""The soak's services and faults: the chat server, the private adb server, the runs' tmpfs,
and the seeded fault injector (see benchmarks/perf/soak.py for what each fault does)."""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from benchmarks.perf.soak import Stream

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]  # benchmarks/perf/ -> the checkout
FAULT_KINDS = ("kill_browser", "kill_context", "kill_worker", "kill_run", "kill_adb",
               "kill_policy_server", "server_500", "server_hang", "disk_full")
POLICY_TIMEOUT_S = 8.0  # the openai client's per-request timeout in the soak
HANG_S = 12.0  # how long server_hang holds answers (longer than POLICY_TIMEOUT_S)
DISK_FULL_S = 6.0  # how long the disk stays full
POLICY_SERVER_DOWN_S = 3.0  # how long the killed chat server stays down


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


