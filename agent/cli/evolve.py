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
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="A loop configuration file (JSON, `LearningConfig`): runs "
        "collect -> SFT -> evaluate -> GRPO -> evaluate and prints one table; the other "
        "options are then not used.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m",
                                              help="Starting checkpoint.")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", "-t",
                                              help="Comma-separated task ids.")] = None,
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
    """Self-evolving loop. With --config FILE: the whole loop of one configuration file
    (generate screens with the oracle, SFT, evaluate, GRPO, evaluate; each stage resumable).
    Otherwise rounds: each rolls out GROUP episodes per task, keeps what the environment
    (and the critic) accept, exports SFT data, trains and evaluates."""
    from pydantic import ValidationError

    from agent.evolve import EvolveOptions, evolve
    from trajectories.store import TrajectoryStoreError

    console = Console()
    if config is not None:
        from benchmarks.perf.learning import LearningConfig, run_loop

        try:
            loop = LearningConfig.model_validate_json(config.read_text())
        except OSError as exc:
            console.print(f"[red]error:[/red] cannot read {config}: {exc}")
            raise typer.Exit(2) from None
        except ValidationError as exc:
            console.print(f"[red]error:[/red] {config} is not a loop configuration: {exc}")
            raise typer.Exit(2) from None
        run_loop(loop, out, console)
        return
    if model is None or tasks is None:
        console.print("[red]error:[/red] give --config FILE, or --model and --tasks")
        raise typer.Exit(2)
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
