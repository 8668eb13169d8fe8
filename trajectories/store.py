"""Crash-safe storage of runs and episodes (writer), and the reader other tools use.

Guarantees, for a process killed at any instant (``kill -9``):

- every line of ``results.jsonl`` and ``steps.jsonl`` is valid JSON, except possibly a
  torn last line, which readers drop and report (and `RunWriter` cuts off before it
  appends again);
- ``manifest.json``, ``episode.json``, ``result.json`` and screenshots are written to a
  temporary file and renamed into place, so they exist whole or not at all;
- appends and the small JSON files are flushed with ``os.fsync`` (configurable), so the
  loss on power failure is also bounded to the step in flight. Screenshots are not
  fsynced by default (``fsync_screenshots``): that would cost two more disk flushes per
  step (~8 ms each on this machine's disk) and a kill -9 cannot tear them anyway.

`RunWriter` owns a run directory; `EpisodeWriter` (from `RunWriter.start_episode`) is the
recorder the agent loop calls. `RunDir` reads a run (used by exporters and the viewer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from actions.observation import Observation
from trajectories.record import (
    EpisodeRecord,
    EpisodeResult,
    ObservationMeta,
    RunManifest,
    StepRecord,
    screenshot_sha256,
    to_json_text,
)

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
SCREENSHOTS = "screenshots"
EPISODES = "episodes"
EPISODE_FILE = "episode.json"
STEPS_FILE = "steps.jsonl"
RESULT_FILE = "result.json"

_VERSIONED_PACKAGES = ("qwen-cua", "torch", "transformers", "playwright", "miniwob", "pydantic")

M = TypeVar("M", bound=BaseModel)


class TrajectoryStoreError(RuntimeError):
    """Base of the storage errors."""


class RunConfigMismatch(TrajectoryStoreError):
    """The run directory holds a run with a different config than the one requested."""


class NotARunDirectory(TrajectoryStoreError):
    """The path exists but is not a run directory (no manifest.json)."""


class CorruptRecordError(TrajectoryStoreError):
    """A record file is damaged somewhere other than a torn last line."""


# ---------------------------------------------------------------------------- low level


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: Path, data: bytes, *, fsync: bool = True, content_addressed: bool = False
) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete.

    The temporary file has a name of its own (mkstemp), so any number of writers in any
    number of threads and processes can write the same path at once; the last rename
    wins whole. `content_addressed`: the name is a hash of the bytes, so a file that is
    already there (written by another writer meanwhile) is success and is left as it is.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        if content_addressed:
            try:
                os.link(tmp, path)  # fails, rather than replaces, when a writer got there first
            except FileExistsError:
                pass
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full disk or an error must not leave temporary files behind
        raise
    if fsync:
        _fsync_dir(path.parent)


def append_line(path: Path, line: str, *, fsync: bool = True) -> None:
    """Append one JSON line with a single write(2) on an O_APPEND descriptor, then fsync.

    One write call means a killed process leaves the line whole or (at worst, on a
    short write) torn at the end of the file, never interleaved.
    """
    if "\n" in line:
        raise ValueError("a JSONL record must not contain a newline")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size_before = os.fstat(fd).st_size
        try:
            _write_all(fd, (line + "\n").encode("utf-8"))
        except OSError:
            # A full disk (ENOSPC, EFBIG) can take part of the line: cut it off again so
            # the file still ends with a whole line.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size_before)
            raise
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def repair_torn_tail(path: Path) -> bool:
    """Cut a torn last line (bytes after the last newline) off `path`; True if it did."""
    if not path.exists():
        return False
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return False
        # Scan back for the last newline in chunks (lines can be long).
        pos, cut = size, 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                cut = pos + idx + 1
                break
        if cut == size:
            return False
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    logger.warning("cut a torn last line (%d bytes) off %s", size - cut, path)
    return True


def read_jsonl(path: Path, model: type[M], problems: list[str] | None = None) -> list[M]:
    """Read a JSONL file of `model` records.

    A last line without its newline is torn (the writer died mid-append): it is dropped
    and reported in `problems`. Any other bad line raises CorruptRecordError.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    parts = data.split(b"\n")
    tail = parts.pop()  # b"" when the file ends with a newline
    if tail:
        message = f"{path}: dropped a torn last line ({len(tail)} bytes)"
        logger.warning(message)
        if problems is not None:
            problems.append(message)
    records: list[M] = []
    for number, raw in enumerate(parts, start=1):
        if not raw.strip():
            continue
        try:
            records.append(model.model_validate_json(raw))
        except ValidationError as exc:
            raise CorruptRecordError(
                f"{path}:{number}: not a valid {model.__name__} record: {exc.errors()[0]['msg']}"
            ) from exc
    return records


def package_versions() -> dict[str, str | None]:
    """Versions of Python and the packages a run's behaviour depends on (None = absent)."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ---------------------------------------------------------------------------- recorder


class EpisodeRecorder(Protocol):
    """What the agent loop calls to record one episode (see `EpisodeWriter`)."""

    def observation(self, obs: Observation) -> ObservationMeta: ...

    def start(self, record: EpisodeRecord) -> None: ...

    def step(self, record: StepRecord) -> None: ...

    def finish(self, result: EpisodeResult) -> None: ...


class NullRecorder:
    """Records nothing; still computes observation metadata (the loop uses the hashes)."""

    def observation(self, obs: Observation) -> ObservationMeta:
        return ObservationMeta.from_observation(obs)

    def start(self, record: EpisodeRecord) -> None:
        pass

    def step(self, record: StepRecord) -> None:
        pass

    def finish(self, result: EpisodeResult) -> None:
        pass


class EpisodeWriter:
    """Writes one episode's directory; made by `RunWriter.start_episode`."""

    def __init__(self, run: RunWriter, episode_id: str) -> None:
        self.run = run
        self.episode_id = episode_id
        self.path = run.path / EPISODES / episode_id
        self._started = False

    def observation(self, obs: Observation) -> ObservationMeta:
        sha = self.run.save_screenshot(obs.screenshot_png)
        return ObservationMeta.from_observation(obs, sha256=sha, keep_a11y=self.run.keep_a11y)

    def start(self, record: EpisodeRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.path / EPISODE_FILE, to_json_text(record, indent=2).encode(),
            fsync=self.run.fsync,
        )
        self._started = True

    def step(self, record: StepRecord) -> None:
        if not self._started:
            raise TrajectoryStoreError(f"episode {self.episode_id}: step() before start()")
        append_line(self.path / STEPS_FILE, to_json_text(record), fsync=self.run.fsync)

    def finish(self, result: EpisodeResult) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.path / RESULT_FILE, to_json_text(result, indent=2).encode(),
            fsync=self.run.fsync,
        )
        self.run.append_result(result)


class RunWriter:
    """Owns a run directory: creates or reopens it, and appends finished episodes.

    `fsync`: flush records to disk after each append (power-loss safety; a kill -9 is
    survived either way). `fsync_screenshots`: the same for screenshot files.
    `keep_a11y`: also store each observation's accessibility tree in the step records.

    Opening an existing run checks that its manifest's config equals `config`
    (RunConfigMismatch otherwise) and cuts a torn last line off results.jsonl.
    `resume_keys`: compare only these top-level keys of the config (the rest, e.g. which
    tasks or how many workers, may change between invocations); the manifest then stores
    the latest config. None: the whole config must be equal.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: dict[str, Any],
        *,
        invocation: dict[str, Any] | None = None,
        fsync: bool = True,
        fsync_screenshots: bool = False,
        keep_a11y: bool = False,
        resume_keys: tuple[str, ...] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.fsync_screenshots = fsync_screenshots
        self.keep_a11y = keep_a11y
        self._known_screenshots: set[str] = set()
        now = time.time()
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            manifest = RunManifest.model_validate_json(manifest_path.read_bytes())
            wanted = RunManifest(created_at=now, updated_at=now, config=config, versions={}).config
            old = manifest.config
            if resume_keys is not None:
                old = {k: old.get(k) for k in resume_keys}
                wanted = {k: wanted.get(k) for k in resume_keys}
            if old != wanted:
                raise RunConfigMismatch(_describe_mismatch(self.path, old, wanted))
            if resume_keys is not None:
                manifest.config = config
            manifest.updated_at = now
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise NotARunDirectory(
                    f"{self.path} exists, is not empty and has no {MANIFEST}: choose a new "
                    "--out directory (refusing to write a run into it)"
                )
            manifest = RunManifest(
                created_at=now, updated_at=now, config=config, versions=package_versions()
            )
        if invocation is not None:
            manifest.invocations.append({"at": now, **invocation})
        (self.path / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (self.path / EPISODES).mkdir(exist_ok=True)
        atomic_write_bytes(manifest_path, to_json_text(manifest, indent=2).encode(),
                           fsync=fsync)
        self.manifest = manifest
        repair_torn_tail(self.path / RESULTS)

    # -- episodes

    def finished_results(self) -> list[EpisodeResult]:
        return read_jsonl(self.path / RESULTS, EpisodeResult)

    def finished_keys(self) -> set[str]:
        return {r.key for r in self.finished_results()}

    def discard_episode(self, episode_id: str) -> bool:
        """Delete a partial episode directory (from a killed run); True if there was one."""
        path = self.path / EPISODES / episode_id
        if path.exists():
            shutil.rmtree(path)
            logger.info("deleted partial episode %s before running it again", episode_id)
            return True
        return False

    def start_episode(self, episode_id: str) -> EpisodeWriter:
        return EpisodeWriter(self, episode_id)

    def append_result(self, result: EpisodeResult) -> None:
        append_line(self.path / RESULTS, to_json_text(result), fsync=self.fsync)

    def save_screenshot(self, png: bytes) -> str:
        """Store PNG bytes once under their SHA-256; returns the hash."""
        sha = screenshot_sha256(png)
        if sha in self._known_screenshots:
            return sha
        path = self.path / SCREENSHOTS / f"{sha}.png"
        if not path.exists():
            atomic_write_bytes(path, png, fsync=self.fsync_screenshots, content_addressed=True)
        self._known_screenshots.add(sha)
        return sha


def _describe_mismatch(path: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = [f"  {k}: existing={a!r} requested={b!r}" for k, a, b in _differences(old, new)]
    return (f"{path} holds a run with a different config; resuming would mix the two:\n"
            + "\n".join(diffs) + "\nUse a new --out directory, or the same options as before.")


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of each leaf that differs between two configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [(prefix.rstrip("."), old, new)]


# ---------------------------------------------------------------------------- reader


class RunDir:
    """Read access to a run directory (for exporters, the viewer, analysis).

    Torn last lines are dropped and described in `problems`; nothing is written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / MANIFEST).exists():
            raise NotARunDirectory(f"{self.path} has no {MANIFEST}: not a qwen-cua run directory")
        self.problems: list[str] = []

    def manifest(self) -> RunManifest:
        return RunManifest.model_validate_json((self.path / MANIFEST).read_bytes())

    def results(self) -> list[EpisodeResult]:
        """Finished episodes, in the order they finished (one per line of results.jsonl)."""
        return read_jsonl(self.path / RESULTS, EpisodeResult, self.problems)

    def episode_ids(self) -> list[str]:
        """Ids of all episode directories with an episode.json (finished or not), sorted."""
        root = self.path / EPISODES
        if not root.exists():
            return []
        return sorted(p.name for p in root.iterdir() if (p / EPISODE_FILE).exists())

    def episodes(self) -> list[EpisodeRecord]:
        """The episode.json of every episode directory, sorted by episode id."""
        return [self.episode(eid) for eid in self.episode_ids()]

    def episode(self, episode_id: str) -> EpisodeRecord:
        return EpisodeRecord.model_validate_json(
            (self._episode_path(episode_id) / EPISODE_FILE).read_bytes())

    def result(self, episode_id: str) -> EpisodeResult | None:
        """The episode's result.json, or None when it did not finish."""
        path = self._episode_path(episode_id) / RESULT_FILE
        return EpisodeResult.model_validate_json(path.read_bytes()) if path.exists() else None

    def steps(self, episode_id: str) -> list[StepRecord]:
        return read_jsonl(self._episode_path(episode_id) / STEPS_FILE, StepRecord, self.problems)

    def iter_steps(self) -> Iterator[tuple[EpisodeRecord, StepRecord]]:
        for record in self.episodes():
            for step in self.steps(record.episode_id):
                yield record, step

    def screenshot_path(self, sha256: str) -> Path:
        if not all(c in "0123456789abcdef" for c in sha256) or len(sha256) != 64:
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.path / SCREENSHOTS / f"{sha256}.png"

    def screenshot(self, sha256: str) -> bytes:
        """The PNG bytes of a stored screenshot."""
        return self.screenshot_path(sha256).read_bytes()

    def _episode_path(self, episode_id: str) -> Path:
        if "/" in episode_id or episode_id in {"", ".", ".."}:
            raise ValueError(f"not an episode id: {episode_id!r}")
        return self.path / EPISODES / episode_id


class WrappedRunWriter:
    """A run writer whose episode recorders are wrapped by `wrap_recorder` (redaction, a
    live step stream); everything else is the inner writer's."""

    def __init__(self, inner: Any, wrap_recorder: Callable[[Any], Any]) -> None:
        self.inner = inner
        self.wrap_recorder = wrap_recorder

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "wrap_recorder"):  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def start_episode(self, episode_id: str) -> Any:
        return self.wrap_recorder(self.inner.start_episode(episode_id))


__all__ = [
    "CorruptRecordError", "EpisodeRecorder", "EpisodeWriter", "NotARunDirectory",
    "NullRecorder", "RunConfigMismatch", "RunDir", "RunWriter", "TrajectoryStoreError", "WrappedRunWriter",
    "append_line", "atomic_write_bytes", "package_versions", "read_jsonl", "repair_torn_tail",
]
