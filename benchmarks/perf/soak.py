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
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

from benchmarks.perf.soak_faults import (  # noqa: F401 - the soak's public names
    FAULT_KINDS,
    POLICY_TIMEOUT_S,
    REPO_ROOT,
    AdbServer,
    ChatServerProcess,
    Disk,
    Fault,
    FaultInjector,
    free_port,
    schedule,
)
from trajectories.store import RunDir

logger = logging.getLogger(__name__)


MAX_STARTS_PER_RUN = 30  # a run still unfinished after this many starts is given up
RESTART_BACKOFF_S = (1.0, 10.0)  # wait before restarting a run: doubles per start without
# progress (a run that cannot start while the chat server reloads), up to the second value


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
