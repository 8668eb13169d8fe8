"""Plots of a run for the report, rendered to PNG with matplotlib (no JavaScript needed).

`run_plots(runs, out_dir)` writes, for one run or several side by side (a comparison):

- ``success_by_task.png``: success rate per task (one bar per run), with episode counts;
- ``steps.png``: distribution of steps per episode;
- ``latency.png``: distribution of seconds per step (policy call and environment).

Each is returned with its alt text so the page says in words what the picture shows.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from trajectories.record import EpisodeResult, StepRecord

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


@dataclass(frozen=True)
class RunData:
    """What the plots read from one run: its name, finished results, and all steps."""

    name: str
    results: list[EpisodeResult]
    steps: list[StepRecord]


@dataclass(frozen=True)
class Plot:
    file: str
    alt: str


def _figure(width_in: float, height_in: float):
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width_in, height_in), dpi=100)
    return plt, figure, axes


def success_by_task(runs: list[RunData]) -> dict[str, list[tuple[float, int]]]:
    """task -> [(success rate, episodes) per run] (runs without the task give (0, 0))."""
    per_run: list[dict[str, list[bool]]] = []
    for run in runs:
        table: dict[str, list[bool]] = defaultdict(list)
        for result in run.results:
            table[result.task_id].append(result.success)
        per_run.append(table)
    tasks = sorted({task for table in per_run for task in table})
    return {task: [(sum(t[task]) / len(t[task]), len(t[task])) if t.get(task) else (0.0, 0)
                   for t in per_run] for task in tasks}


def run_plots(runs: list[RunData], out_dir: Path) -> list[Plot]:
    """Write the plots into `out_dir`; returns them in display order (none for no data)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Plot] = []
    names = [run.name for run in runs]
    rates = success_by_task(runs)
    if rates:
        tasks = list(rates)
        plt, figure, axes = _figure(7.5, max(2.0, 0.35 * len(tasks) * len(runs) + 1.0))
        height = 0.8 / len(runs)
        for index, name in enumerate(names):
            ys = [t + (index - (len(runs) - 1) / 2) * height for t in range(len(tasks))]
            values = [rates[task][index][0] * 100 for task in tasks]
            axes.barh(ys, values, height=height, label=name, color=COLOURS[index % 4])
            for y, task in zip(ys, tasks, strict=True):
                rate, count = rates[task][index]
                axes.text(min(rate * 100 + 1, 101), y, f"{rate:.0%} of {count}",
                          va="center", fontsize=8)
        axes.set_yticks(range(len(tasks)), tasks, fontsize=8)
        axes.invert_yaxis()
        axes.set_xlim(0, 115)
        axes.set_xlabel("success rate (%)")
        axes.set_title("Success by task")
        if len(runs) > 1:
            axes.legend(fontsize=8, loc="lower right")
        figure.tight_layout()
        figure.savefig(out_dir / "success_by_task.png")
        plt.close(figure)
        words = "; ".join(f"{task}: " + ", ".join(f"{names[i]} {r:.0%} of {n}" for i, (r, n)
                                                    in enumerate(rates[task])) for task in tasks)
        plots.append(Plot("success_by_task.png", f"Success rate by task — {words}"))

    step_counts = [[r.steps for r in run.results] for run in runs]
    if any(step_counts):
        plt, figure, axes = _figure(5.5, 3.0)
        top = max(max(c, default=0) for c in step_counts)
        bins = [b - 0.5 for b in range(0, top + 2)]
        axes.hist([c for c in step_counts], bins=bins, label=names,
                  color=list(COLOURS[:len(runs)]))
        axes.set_xlabel("steps per episode")
        axes.set_ylabel("episodes")
        axes.set_title("Steps per episode")
        if len(runs) > 1:
            axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out_dir / "steps.png")
        plt.close(figure)
        words = ", ".join(f"{names[i]} median {statistics.median(c):g}" for i, c
                          in enumerate(step_counts) if c)
        plots.append(Plot("steps.png", f"Distribution of steps per episode ({words})"))

    policy = [[s.policy_s for s in run.steps] for run in runs]
    env = [[s.env_s for s in run.steps] for run in runs]
    if any(policy):
        plt, figure, axes = _figure(5.5, 3.0)
        series, labels, colours = [], [], []
        for index, name in enumerate(names):
            for values, what, shade in ((policy[index], "policy", 0), (env[index], "env", 1)):
                if values:
                    series.append(values)
                    labels.append(f"{name} {what}" if len(runs) > 1 else what)
                    colours.append(COLOURS[(2 * index + shade) % 4])
        axes.hist(series, bins=20, label=labels, color=colours)
        axes.set_xlabel("seconds per step")
        axes.set_ylabel("steps")
        axes.set_title("Latency per step")
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out_dir / "latency.png")
        plt.close(figure)
        words = ", ".join(f"{names[i]} policy median {statistics.median(p):.2f} s"
                          for i, p in enumerate(policy) if p)
        plots.append(Plot("latency.png", f"Distribution of seconds per step ({words})"))
    return plots


__all__ = ["Plot", "RunData", "run_plots", "success_by_task"]
