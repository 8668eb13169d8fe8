"""`cua evolve`: rounds of rollout -> judge -> keep -> export -> train -> evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.cli.app import app
from agent.cli.options import parse_key_values


@app.command("evolve")
def evolve_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Starting checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated task ids.")],
    suite: Annotated[str, typer.Option("--suite", help="Task suite.")] = "miniwob",
    policy: Annotated[str, typer.Option("--policy", "-p",
                                        help="Model policy trained and rolled out.")] = "qwen3vl",
    rounds: Annotated[int, typer.Option("--rounds", "-r", min=1)] = 1,
    group: Annotated[int, typer.Option("--group", "-g", min=1,
                                       help="Episodes per task per round.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="First rollout seed.")] = 0,
    seed_policy: Annotated[str | None, typer.Option(
        "--seed-policy", help="Who rolls out round 0, e.g. 'oracle' (the suite's expert).")
    ] = None,
    eval_episodes: Annotated[int, typer.Option(
        "--eval-episodes", min=0, help="Episodes per task evaluating each new checkpoint.")] = 0,
    eval_seed: Annotated[int, typer.Option("--eval-seed")] = 100_000,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
    min_reward: Annotated[float | None, typer.Option("--min-reward")] = None,
    critic_model: Annotated[str | None, typer.Option(
        "--critic-model", help="Qwen-VL checkpoint judging steps GOOD/NEUTRAL/HARMFUL.")] = None,
    max_harmful_steps: Annotated[int, typer.Option("--max-harmful-steps", min=0)] = 0,
    no_thought: Annotated[bool, typer.Option("--no-thought")] = False,
    history_images: Annotated[int, typer.Option("--history-images", min=0)] = 2,
    policy_option: Annotated[list[str] | None, typer.Option(
        "--policy-option", help="Policy option KEY=VALUE (repeatable).")] = None,
    train_option: Annotated[list[str] | None, typer.Option(
        "--train-option", help="Trainer option KEY=VALUE, e.g. epochs=2, learning_rate=1e-5, "
        "lora=true (repeatable).")] = None,
) -> None:
    """Self-evolving loop: each round rolls out GROUP episodes per task, keeps what the
    environment (and the critic) accept, exports SFT data, trains and evaluates."""
    from pydantic import ValidationError

    from agent.evolve import EvolveOptions, evolve
    from trajectories.store import TrajectoryStoreError

    console = Console()
    try:
        options = EvolveOptions(
            suite=suite, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
            policy=policy, model=model, policy_options=parse_key_values(
                policy_option, "--policy-option"), rounds=rounds, group=group, seed=seed,
            seed_policy=seed_policy, eval_episodes=eval_episodes, eval_seed=eval_seed,
            max_steps=max_steps, min_reward=min_reward, critic_model=critic_model,
            max_harmful_steps=max_harmful_steps, no_thought=no_thought,
            history_images=history_images,
            train=parse_key_values(train_option, "--train-option"), out=out)
        evolve(options, console=console)
    except ValidationError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except (KeyError, TrajectoryStoreError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
