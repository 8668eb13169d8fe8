"""OSWorld results: per-domain tables of a qwen-cua run directory or of one run of an
OSWorld result tree, scored as OSWorld's show_result.py scores them (`cua osworld report`,
`cua eval desktop|osworld`'s domain table)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel


class DomainRow(BaseModel):
    """One row of OSWorld's per-domain table.

    `episodes` counts scored episodes; `crashed` those that ended in an error (no
    result.txt in OSWorld's layout), left out of every rate as OSWorld's show_result.py
    leaves them out. `success_rate_pct` is OSWorld's number: the mean score x 100 (what
    its show_result.py prints as "Success Rate"); `full_success_pct` the share of
    episodes with a full score (reward >= 1.0), shown beside it.
    """

    domain: str
    episodes: int
    successes: int
    crashed: int = 0
    success_rate_pct: float
    full_success_pct: float = 0.0


def _domain_of(task_id: str, suite: str) -> str:
    if "/" in task_id:
        return task_id.split("/", 1)[0]
    if suite == "desktop":
        from benchmarks.desktop import load_tasks

        tasks = load_tasks()
        if task_id in tasks:
            return tasks[task_id].domain
    return "-"


def _rows(scores: dict[str, list[float]], crashed: dict[str, int]) -> list[DomainRow]:
    def row(name: str, items: list[float], crashes: int) -> DomainRow:
        full = sum(score >= 1.0 for score in items)
        return DomainRow(
            domain=name, episodes=len(items), successes=full, crashed=crashes,
            success_rate_pct=round(100 * sum(items) / len(items), 2) if items else 0.0,
            full_success_pct=round(100 * full / len(items), 2) if items else 0.0)

    domains = sorted(set(scores) | set(crashed))
    everything = [score for items in scores.values() for score in items]
    return [row(d, scores.get(d, []), crashed.get(d, 0)) for d in domains] + [
        row("overall", everything, sum(crashed.values()))]


def _example_dirs(root: Path) -> set[Path]:
    return ({p.parent for p in root.rglob("result.txt")}
            | {p.parent for p in root.rglob("traj.jsonl")})


def osworld_runs(root: str | Path) -> dict[str, Path]:
    """The runs in an OSWorld result tree: each `<action_space>/<observation_type>/<model>`
    directory (the one show_result.py scores) holding `<domain>/<example_id>/` folders,
    keyed by its path relative to `root` ('.' when `root` is one)."""
    root = Path(root)
    runs = {example.parent.parent for example in _example_dirs(root)}
    return {(run.relative_to(root).as_posix() if run != root else "."): run
            for run in sorted(runs)}


def _show_result_score(text: str) -> float:
    """A result.txt value as show_result.py reads it: float(), else the Python literal
    (True / False)."""
    try:
        return float(text)
    except ValueError:
        return float(text.strip().lower() == "true")


def osworld_tree_scores(root: Path) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Scores and crash counts per domain of one run of an OSWorld result tree (its
    `<domain>/<example_id>/` directories below `root`): with result.txt an example is
    scored as show_result.py scores it, without it crashed (show_result.py skips it)."""
    scores: dict[str, list[float]] = {}
    crashed: dict[str, int] = {}
    for example in sorted(_example_dirs(root)):
        domain = example.parent.name
        result = example / "result.txt"
        if not result.is_file():
            crashed[domain] = crashed.get(domain, 0) + 1
            continue
        scores.setdefault(domain, []).append(_show_result_score(result.read_text().strip()))
    return scores, crashed


class MultipleRuns(ValueError):
    """An OSWorld result tree holds several runs (models or action spaces): each is
    scored on its own, never merged."""

    def __init__(self, root: Path, runs: dict[str, Path]) -> None:
        self.root, self.runs = root, runs
        super().__init__(f"{root} holds {len(runs)} runs ({', '.join(runs)}): pass one "
                         "<action_space>/<observation_type>/<model> directory")


def run_rows(root: str | Path) -> dict[str, DomainRow]:
    """One 'overall' row per run of an OSWorld result tree (see osworld_runs)."""
    return {name: _rows(*osworld_tree_scores(run))[-1]
            for name, run in osworld_runs(root).items()}


def domain_summary(path: str | Path) -> list[DomainRow]:
    """Per-domain results (last row: 'overall') of a qwen-cua run directory (also written
    to <path>/domains.json) or of one run of an OSWorld result tree (the
    <action_space>/<observation_type>/<model> directory show_result.py reads, or any
    directory above it holding that one run only: MultipleRuns otherwise)."""
    from trajectories.store import MANIFEST, RunDir

    root = Path(path)
    if not (root / MANIFEST).exists():
        if not any(root.rglob("result.txt")) and not any(root.rglob("traj.jsonl")):
            from trajectories.store import NotARunDirectory

            raise NotARunDirectory(
                f"{root} is neither a qwen-cua run directory (no {MANIFEST}) nor an OSWorld "
                "result tree (no <domain>/<example_id>/result.txt or traj.jsonl below it)")
        runs = osworld_runs(root)
        if len(runs) > 1:
            raise MultipleRuns(root, runs)
        return _rows(*osworld_tree_scores(root))
    scores: dict[str, list[float]] = {}
    crashed: dict[str, int] = {}
    for result in RunDir(root).results():
        domain = _domain_of(result.task_id, result.suite)
        if result.error is not None:
            crashed[domain] = crashed.get(domain, 0) + 1
        else:
            scores.setdefault(domain, []).append(result.reward)
    rows = _rows(scores, crashed)
    (root / "domains.json").write_text(
        json.dumps([r.model_dump() for r in rows], indent=2) + "\n")
    return rows


def run_protocol(path: str | Path) -> str | None:
    """The OSWorld protocol a run directory was run under (None: not an osworld run)."""
    from trajectories.store import RunDir

    try:
        config = RunDir(path).manifest().config
    except Exception:  # noqa: BLE001 - an OSWorld tree or an older manifest: no protocol
        return None
    options = config.get("suite_options") or {}
    if config.get("suite") != "osworld" and "protocol" not in options:
        return None
    return options.get("protocol", "official")
