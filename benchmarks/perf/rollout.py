"""Rollout throughput: MiniWoB with the scripted oracle on 1, 2, 4 worker processes, the
framework's per-step overhead, and batched vs one-at-a-time inference of a tiny Qwen3-VL.

Usage::

    python -m benchmarks.perf.rollout                      # everything, a few minutes
    python -m benchmarks.perf.rollout --workers 1,2 --skip-tiny --json perf.json

Figures (all wall-clock, this machine, whatever else runs on it):

- steps/s: policy steps of all episodes divided by the span from the first reset to the
  last result (so worker and browser start-up before the first episode is excluded,
  browser launches inside the first reset are included); episodes/s likewise.
- loop overhead / step: the time between two consecutive steps of an episode not spent
  in the policy call (`policy_s`) or executing the action (`env_s`): building the state,
  recording, hashing, scheduling. Median over all steps, milliseconds.
- IPC / step (workers only): `env_s` measured in the parent minus the execute + settle
  time the environment measured in the worker: pipe round trip, pickling, reading the
  screenshot back from disk. Median, milliseconds.
- tiny Qwen3-VL: steps/s with the drivers' observations batched into one `act()` call
  versus the same workers asking the policy one state at a time (`policy_calls=serial`),
  and their ratio. Batched three ways (agent.engine.policy_service.BatchingPolicy): a batch
  waits up to 1 s for every episode that could still ask (the old lockstep broker's
  default), up to the default `batch_wait_s` (0.05 s), or not at all (`batch_wait_s=0`:
  whatever is pending when the policy is free). The tiny model (random weights) mostly writes unparsable text, so
  few actions reach the browser: this isolates inference throughput. torch runs with
  `--torch-threads` intra-op threads (default 1, see its help).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ORACLE_TASKS = ["click-button", "click-checkboxes", "enter-text", "focus-text", "login-user"]


def _step_figures(run: Path) -> dict[str, float | None]:
    """Median loop overhead and IPC per step (ms) from the run's step records."""
    from trajectories.store import RunDir

    reader = RunDir(run)
    overheads: list[float] = []
    ipc: list[float] = []
    for result in reader.results():
        steps = reader.steps(result.episode_id)
        for this, following in zip(steps, steps[1:], strict=False):
            gap = following.started_at - this.started_at
            overheads.append(gap - this.policy_s - this.env_s)
        for step in steps:
            measured = [e.observation for e in step.executions if e.observation is not None]
            inside = sum((o.execute_s or 0.0) + (o.settle_s or 0.0) for o in measured)
            if measured:
                ipc.append(step.env_s - inside)

    def median_ms(values: list[float]) -> float | None:
        return statistics.median(values) * 1000 if values else None

    return {"overhead_ms": median_ms(overheads), "ipc_ms": median_ms(ipc)}


def _run(label: str, out: Path, *, workers: int, policy: str = "oracle",
         policy_options: dict[str, Any] | None = None, backend_options: dict[str, Any] | None
         = None, tasks: list[str], episodes: int, max_steps: int | None = None) -> dict[str, Any]:
    from agent.config import EngineConfig, Limits, OutputConfig, PolicyOptions, RunConfig
    from agent.runner import run_suite
    from benchmarks.miniwob import MiniWoBSuite

    started = time.monotonic()
    config = RunConfig(
        suite="miniwob", policy=policy, tasks=tasks, episodes_per_task=episodes, seed=100,
        policy_options=PolicyOptions(**(policy_options or {})),
        limits=Limits(max_steps=max_steps, max_parse_failures=max_steps or 3),
        engine=EngineConfig(workers=workers, options=backend_options or {},
                            max_consecutive_errors=0),
        output=OutputConfig(out_dir=out))
    summary = run_suite(config, suite=MiniWoBSuite(), console=Console(file=io.StringIO()),
                        show_progress=False)
    wall_s = time.monotonic() - started
    results = summary.results
    span_s = max(r.finished_at for r in results) - min(r.started_at for r in results)
    steps = sum(r.steps for r in results)
    report = getattr(summary, "worker_report", None)
    row = {
        "label": label, "workers": workers, "episodes": len(results), "steps": steps,
        "successes": sum(r.success for r in results),
        "errors": sum(r.error is not None for r in results),
        "span_s": span_s, "wall_s": wall_s, "steps_per_s": steps / span_s,
        "episodes_per_s": len(results) / span_s,
        "mean_batch": report.mean_batch_size if report and report.batch_sizes else None,
        "peak_worker_mib": (max((w.peak_rss_with_children_bytes or 0) for w in report.workers)
                            / 2**20 if report else None),
        **_step_figures(out),
    }
    return row


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def oracle_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="MiniWoB, scripted oracle")
    for column in ("setup", "episodes", "steps", "success", "span s", "steps/s", "episodes/s",
                   "speed-up", "loop overhead ms/step", "IPC ms/step", "peak MiB/worker"):
        table.add_column(column, justify="right")
    base = next((r["steps_per_s"] for r in rows if r["workers"] == 1), rows[0]["steps_per_s"])
    for r in rows:
        table.add_row(r["label"], str(r["episodes"]), str(r["steps"]),
                      f"{r['successes']}/{r['episodes']}", _fmt(r["span_s"]),
                      _fmt(r["steps_per_s"], 2), _fmt(r["episodes_per_s"], 2),
                      f"{r['steps_per_s'] / base:.2f}x", _fmt(r["overhead_ms"], 2),
                      _fmt(r["ipc_ms"], 2), _fmt(r["peak_worker_mib"], 0))
    table.caption = "speed-up relative to 1 worker; MiB = RSS of worker + its browser"
    return table


def tiny_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="MiniWoB, tiny Qwen3-VL in the parent (CPU)")
    for column in ("policy calls", "workers", "episodes", "errors", "steps", "span s",
                   "steps/s", "mean batch", "ratio"):
        table.add_column(column, justify="right")
    serial = next(r for r in rows if r["label"] == "serial")["steps_per_s"]
    for r in rows:
        table.add_row(r["label"], str(r["workers"]), str(r["episodes"]), str(r["errors"]),
                      str(r["steps"]), _fmt(r["span_s"]), _fmt(r["steps_per_s"], 2),
                      _fmt(r["mean_batch"], 2), f"{r['steps_per_s'] / serial:.2f}x")
    return table


def policy_only(model: Path, states: int, max_new_tokens: int, repeats: int = 3) -> dict:
    """Seconds for act() on `states` MiniWoB-sized screens at once vs one at a time
    (best of `repeats`, after a warm-up call): the batching gain of the policy alone."""
    import io as _io

    from PIL import Image

    from actions.contracts import EpisodeState, Task
    from actions.observation import Observation, Size
    from policies.qwen3vl import Qwen3VLPolicy

    size = Size(width=160, height=210)
    batch = []
    for index in range(states):
        buffer = _io.BytesIO()
        Image.new("RGB", (160, 210), (255, 255 - 20 * index, 255)).save(buffer, "PNG")
        task = Task(suite="miniwob", task_id="click-button", seed=index,
                    instruction="Click the button.")
        batch.append(EpisodeState(
            episode_id=f"e{index}", task=task, instruction=task.instruction,
            observation=Observation(screenshot_png=buffer.getvalue(), screen_size=size,
                                    screenshot_size=size)))
    policy = Qwen3VLPolicy.from_options(model=str(model), device="cpu",
                                        max_new_tokens=max_new_tokens)
    try:
        policy.act(batch[:1])
        serial, batched = [], []
        for _ in range(repeats):
            started = time.monotonic()
            for state in batch:
                policy.act([state])
            serial.append(time.monotonic() - started)
            started = time.monotonic()
            policy.act(batch)
            batched.append(time.monotonic() - started)
    finally:
        policy.close()
    return {"states": states, "serial_s": min(serial), "batched_s": min(batched),
            "ratio": min(serial) / min(batched)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts for the oracle")
    parser.add_argument("--episodes", type=int, default=4, help="oracle episodes per task")
    parser.add_argument("--tiny-workers", type=int, default=4)
    parser.add_argument("--tiny-episodes", type=int, default=2, help="per task")
    parser.add_argument("--tiny-steps", type=int, default=4, help="steps per tiny episode")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for the tiny model (0: torch's default). "
                        "1 by default: on a busy CPU, 2+ threads made each generate step "
                        "10-15x slower here (threads wait for each other to be scheduled)")
    parser.add_argument("--skip-oracle", action="store_true")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--in-process", action="store_true",
                        help="also run the oracle with the environment in this process")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    console = Console()
    figures: dict[str, Any] = {"oracle": [], "tiny": []}
    with tempfile.TemporaryDirectory(prefix="perf-rollout-") as tmp:
        root = Path(tmp)
        if not args.skip_oracle:
            setups = [("in-process", 0)] if args.in_process else []
            setups += [(f"{n} worker{'s' if n > 1 else ''}", n)
                       for n in (int(w) for w in args.workers.split(","))]
            for label, workers in setups:
                console.print(f"[dim]oracle: {label} ...[/dim]")
                figures["oracle"].append(_run(
                    label, root / f"oracle-{workers}", workers=workers, tasks=ORACLE_TASKS,
                    episodes=args.episodes))
            console.print(oracle_table(figures["oracle"]))
        if not args.skip_tiny:
            from policies.tiny import build_tiny_qwen3vl

            if args.torch_threads:
                import torch

                torch.set_num_threads(args.torch_threads)
            model = build_tiny_qwen3vl(root / "tiny")
            options = {"model": str(model), "device": "cpu",
                       "max_new_tokens": args.max_new_tokens}
            modes = {"serial": {"policy_calls": "serial"},
                     "batched, wait 1 s": {"policy_calls": "batched", "batch_wait_s": 1.0},
                     "batched (default wait)": {"policy_calls": "batched"},
                     "batched, no wait": {"policy_calls": "batched", "batch_wait_s": 0.0}}
            for index, (label, backend_options) in enumerate(modes.items()):
                console.print(f"[dim]tiny Qwen3-VL: {label} ...[/dim]")
                figures["tiny"].append(_run(
                    label, root / f"tiny-{index}", workers=args.tiny_workers, policy="qwen3vl",
                    policy_options=options, backend_options=backend_options,
                    tasks=ORACLE_TASKS[:2], episodes=args.tiny_episodes,
                    max_steps=args.tiny_steps))
            table = tiny_table(figures["tiny"])
            table.caption = (f"{args.tiny_workers} workers, max_new_tokens "
                             f"{args.max_new_tokens}, torch threads {args.torch_threads or 'default'}")
            console.print(table)
            alone = policy_only(model, args.tiny_workers, args.max_new_tokens)
            figures["policy_only"] = alone
            console.print(f"policy alone: act() on {alone['states']} states "
                          f"{alone['batched_s']:.3f} s batched vs {alone['serial_s']:.3f} s one at "
                          f"a time: [bold]{alone['ratio']:.2f}x[/bold]")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
