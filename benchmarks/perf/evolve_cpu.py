"""CPU proof of the training loop: oracle demonstrations -> `cua train sft` -> `cua eval`.

On MiniWoB click-test, click-test-2 and click-button:

1. build the tiny Qwen3-VL (random weights, `policies.tiny`);
2. `cua eval miniwob --policy oracle` on training seeds (0 .. N-1): expert demonstrations;
3. `cua export sft --format qwen --no-thought --model TINY`: one sample per step, prompts
   rebuilt with the policy's prompt builder and the tiny model's image budget;
4. `cua train sft` (TRL SFTTrainer, full fine-tuning, loss on assistant tokens);
5. `cua eval miniwob --policy qwen3vl --model TRAINED` greedy on *fresh* seeds
   (10000 ..), one action per episode (`--max-steps 1`);
6. the chance level on the same seeds: a policy clicking uniformly at random on the
   screen (same one-action budget), and the untrained tiny model.

Prints a table of success rates per task. This is a benchmark (minutes on a CPU), not a
test. Measured (2-core shared CPU, `--demos 100 --epochs 4 --lr 2e-3 --lr-scheduler
constant_with_warmup --eval 20`, 1200 steps in ~15 min): trained 13/60 (22%) vs random
clicks 6/60 (10%); the untrained model emits no valid tool call (0%). The tiny model
learns a fixed click point per task (e.g. (100, 132) on click-test), not visual
grounding: its advantage over chance comes from the instruction, not the screenshot.
Usage::

    python -m benchmarks.perf.evolve_cpu --work /tmp/evolve-cpu [--demos 20] [--eval 10]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from actions.contracts import EpisodeState, PolicyOutput
from actions.models import Click

TASKS = ("click-test", "click-test-2", "click-button")
EVAL_SEED = 10_000


class RandomClickPolicy:
    """Chance level: one left click at a uniformly random pixel of the screen."""

    name = "random-click"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        outputs = []
        for state in states:
            size = state.observation.screen_size
            action = Click(x=self._rng.randrange(size.width), y=self._rng.randrange(size.height))
            outputs.append(PolicyOutput(raw_text=f"random click {action.x},{action.y}",
                                        actions=[action], model="random-click"))
        return outputs

    def close(self) -> None:
        pass


def cua(console: Console, *args: str) -> float:
    """Run a `cua` command (same interpreter); returns its wall seconds."""
    command = [str(Path(sys.executable).parent / "cua"), *args]
    console.print(f"[dim]$ cua {' '.join(args)}[/dim]")
    started = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - started


def success_by_task(run_dir: Path) -> dict[str, tuple[int, int]]:
    """task -> (successes, episodes) from results.jsonl."""
    counts: dict[str, tuple[int, int]] = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        if line.strip():
            result = json.loads(line)
            ok, n = counts.get(result["task_id"], (0, 0))
            counts[result["task_id"]] = (ok + int(result["success"]), n + 1)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="work folder (fresh)")
    parser.add_argument("--demos", type=int, default=40, help="oracle episodes per task")
    parser.add_argument("--eval", type=int, default=10, help="eval episodes per task")
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lr-scheduler", default="linear")
    parser.add_argument("--freeze-vision", action="store_true",
                        help="train the language model only (keep the vision tower's weights)")
    parser.add_argument("--skip-untrained", action="store_true",
                        help="do not evaluate the untrained tiny model")
    args = parser.parse_args(argv)
    console = Console()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    tasks = ",".join(TASKS)
    timings: dict[str, float] = {}

    from policies.tiny import build_tiny_qwen3vl

    tiny = work / "tiny"
    if not (tiny / "config.json").exists():
        build_tiny_qwen3vl(tiny)
    timings["demos"] = cua(console, "eval", "miniwob", "--policy", "oracle", "--tasks", tasks,
                           "--episodes", str(args.demos), "--seed", "0", "--max-steps", "1",
                           "--out", str(work / "demos"))
    data = work / "sft"
    if not (data / "export.json").exists():
        timings["export"] = cua(console, "export", "sft", str(work / "demos"), "--out", str(data),
                                "--format", "qwen", "--successful-only", "--no-thought",
                                "--model", str(tiny))
    trained = work / "trained"
    if not (trained / "model.safetensors").exists():
        timings["train"] = cua(console, "train", "sft", str(data), "--model", str(tiny),
                               "--out", str(trained), "--epochs", str(args.epochs),
                               "--lr", str(args.lr), "--lr-scheduler", args.lr_scheduler,
                               "--device", "cpu", "--logging-steps", "20",
                               *(["--freeze-vision"] if args.freeze_vision else []))
    eval_args = ["--tasks", tasks, "--episodes", str(args.eval), "--seed", str(EVAL_SEED),
                 "--max-steps", "1"]
    policy_options = ["--policy-option", "greedy=true", "--policy-option", "max_new_tokens=48",
                      "--policy-option", "device=cpu"]
    timings["eval trained"] = cua(console, "eval", "miniwob", "--policy", "qwen3vl", "--model",
                                  str(trained), *policy_options, *eval_args,
                                  "--out", str(work / "eval-trained"))
    if not args.skip_untrained:
        timings["eval untrained"] = cua(console, "eval", "miniwob", "--policy", "qwen3vl",
                                        "--model", str(tiny), *policy_options, *eval_args,
                                        "--out", str(work / "eval-untrained"))

    from agent.config import Limits, OutputConfig, RunConfig
    from agent.runner import run_suite

    started = time.monotonic()
    run_suite(RunConfig(suite="miniwob", policy="random-click", tasks=list(TASKS),
                        episodes_per_task=args.eval, seed=EVAL_SEED, limits=Limits(max_steps=1),
                        output=OutputConfig(out_dir=work / "eval-random")),
              policy=RandomClickPolicy(seed=0), console=console, show_progress=False)
    timings["eval random"] = time.monotonic() - started

    rows = {"trained tiny Qwen3-VL": work / "eval-trained", "random click (chance)":
            work / "eval-random"}
    if not args.skip_untrained:
        rows["untrained tiny Qwen3-VL"] = work / "eval-untrained"
    table = Table(title=f"MiniWoB success on fresh seeds {EVAL_SEED}..{EVAL_SEED + args.eval - 1}"
                  f" ({args.demos} oracle demos per task)")
    table.add_column("policy")
    for task in TASKS:
        table.add_column(task, justify="right")
    table.add_column("all", justify="right")
    summary: dict[str, dict[str, float]] = {}
    for label, run_dir in rows.items():
        counts = success_by_task(run_dir)
        cells, total_ok, total_n = [], 0, 0
        summary[label] = {}
        for task in TASKS:
            ok, n = counts.get(task, (0, 0))
            total_ok, total_n = total_ok + ok, total_n + n
            cells.append(f"{ok}/{n}")
            summary[label][task] = ok / n if n else 0.0
        summary[label]["all"] = total_ok / total_n if total_n else 0.0
        table.add_row(label, *cells, f"{total_ok}/{total_n} ({summary[label]['all']:.0%})")
    console.print(table)
    train_log = json.loads((trained / "train_sft.json").read_text())
    console.print(f"training: {train_log['result']}")
    console.print(f"timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
    (work / "summary.json").write_text(json.dumps(
        {"success": summary, "timings_s": timings, "train": train_log["result"]}, indent=2))


if __name__ == "__main__":
    main()
