"""`cua train sft DATA_DIR --model PATH --out DIR`: fine-tune a Qwen-VL checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.cli.app import app

train_app = typer.Typer(help="Train a policy on exported trajectories.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("sft")
def train_sft_command(
    data_dir: Annotated[Path, typer.Argument(
        help="A `cua export sft --format qwen|trl` directory.")],
    model: Annotated[str, typer.Option("--model", "-m",
                                       help="Checkpoint folder or hub id to start from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained checkpoint.")],
    epochs: Annotated[float, typer.Option("--epochs", min=0.01)] = 3.0,
    learning_rate: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 1e-5,
    lr_scheduler: Annotated[str, typer.Option(
        "--lr-scheduler", help="linear, cosine, constant, constant_with_warmup")] = "linear",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters (peft), then "
                                       "merge them into the saved weights.")] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = 32,
    freeze_vision: Annotated[bool, typer.Option("--freeze-vision")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, bfloat16, float32")] = "auto",
    min_pixels: Annotated[int | None, typer.Option("--min-pixels", min=1)] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", min=1)] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples", min=1)] = None,
    logging_steps: Annotated[int, typer.Option("--logging-steps", min=1)] = 10,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Supervised fine-tuning with TRL's SFTTrainer; loss on assistant tokens only.
    OUT is a complete checkpoint: `cua eval ... --policy qwen3vl --model OUT`."""
    from policies.qwen3vl import PolicyLoadError
    from policies.train_sft import TrainingDataError, TrainSFTOptions, train_sft

    console = Console()
    options = TrainSFTOptions(
        data_dir=data_dir, model=model, out=out, epochs=epochs, learning_rate=learning_rate,
        lr_scheduler=lr_scheduler,
        batch_size=batch_size, grad_accum=grad_accum, lora=lora, lora_r=lora_r,
        lora_alpha=lora_alpha, freeze_vision=freeze_vision,
        gradient_checkpointing=gradient_checkpointing, device=device, dtype=dtype,
        min_pixels=min_pixels, max_pixels=max_pixels, max_samples=max_samples,
        logging_steps=logging_steps, seed=seed)
    try:
        with console.status(f"training {model} on {data_dir} ..."):
            result = train_sft(options)
    except (TrainingDataError, PolicyLoadError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    loss = (f"loss {result.first_loss:.3f} -> {result.final_loss:.3f}"
            if result.first_loss is not None and result.final_loss is not None else "no loss logged")
    console.print(f"trained on {result.samples} samples, {result.steps} steps, {loss}, "
                  f"{result.train_s:.0f}s; checkpoint in {result.out}")
