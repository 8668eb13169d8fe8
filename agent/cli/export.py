"""`cua export sft|rl RUN_DIR`: training data from a recorded run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agent.cli.app import app
from policies.profiles import UnknownProfile
from trajectories.store import RunDir, TrajectoryStoreError

export_app = typer.Typer(help="Export a run directory as SFT or RL training data.",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")


def _report_table(report) -> Table:
    table = Table(title=f"export {report.kind} ({report.format})", show_header=False)
    table.add_row("source run", report.source_run)
    table.add_row("episodes kept / finished", f"{report.episodes_kept} / {report.episodes_seen}")
    table.add_row("samples" if report.kind == "sft" else "rows", str(report.samples))
    table.add_row("images", str(report.images))
    for reason, count in sorted(report.skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    return table


@export_app.command("sft")
def export_sft_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (from cua eval / run).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help="qwen (chat-template messages), llamafactory (sharegpt + "
        "dataset_info.json) or trl (conversational vision).")] = "qwen",
    per_episode: Annotated[bool, typer.Option(
        "--per-episode", help="One multi-turn sample per episode (last prompt with its "
        "history turns) instead of one per step.")] = False,
    successful_only: Annotated[bool, typer.Option(
        "--successful-only", help="Only episodes that succeeded.")] = False,
    min_reward: Annotated[float | None, typer.Option(
        "--min-reward", help="Only episodes with reward >= this.")] = None,
    max_per_task: Annotated[int | None, typer.Option(
        "--max-per-task", min=1, help="At most this many episodes per task.")] = None,
    no_dedupe: Annotated[bool, typer.Option(
        "--no-dedupe", help="Keep repeated (screenshot, action) steps.")] = False,
    include_invalid: Annotated[bool, typer.Option(
        "--include-invalid", help="Also steps whose output had no valid action.")] = False,
    no_thought: Annotated[bool, typer.Option(
        "--no-thought", help="Answers rendered for expert steps carry only the tool call.")
    ] = False,
    prompt_profile: Annotated[str | None, typer.Option(
        "--prompt-profile", help="Prompt profile of rebuilt prompts (default: the one the "
        "run's policy used, else qwen-cua); see docs/profiles.md.")] = None,
    dialect: Annotated[str | None, typer.Option(
        "--dialect", help="Coordinate dialect of rebuilt prompts/answers (default: the "
        "profile's; qwen3 for qwen-cua).")] = None,
    history_images: Annotated[int | None, typer.Option(
        "--history-images", min=0, help="Previous screenshots replayed in rebuilt prompts "
        "(default: the profile's; 2 for qwen-cua).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Checkpoint whose image budget rebuilt prompts use.")] = None,
    min_pixels: Annotated[int | None, typer.Option("--min-pixels", min=1)] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", min=1)] = None,
    grounding_profile: Annotated[str, typer.Option(
        "--grounding-profile", help="For a grounding folder (ScreenSpot-Pro format, e.g. "
        "from cua generate-grounding): the prompt profile of the samples, qwen3vl or "
        "qwen2_5vl.")] = "qwen3vl",
) -> None:
    """Export supervised fine-tuning samples: the prompt the policy saw (or would have
    seen, for expert steps) and the answer in the model's dialect. Given a grounding
    folder instead of a run, one sample per grounding target (benchmarks.grounding.sft)."""
    from policies.qwen3vl import prompt_config_from
    from trajectories.export_sft import SFT_FORMATS, ExportError, SFTExportOptions, export_sft

    console = Console()
    if format not in SFT_FORMATS:
        console.print(f"[red]error:[/red] unknown format {format!r}; use one of "
                      f"{', '.join(SFT_FORMATS)}")
        raise typer.Exit(2)
    if (run_dir / "annotations").is_dir() and not (run_dir / "manifest.json").exists():
        from benchmarks.grounding.data import GroundingDataError
        from benchmarks.grounding.sft import export_grounding_sft

        try:
            report = export_grounding_sft(run_dir, out, profile=grounding_profile, format=format)
        except (ExportError, GroundingDataError, KeyError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        console.print(_report_table(report))
        console.print(f"wrote {out / report.data_file}")
        return
    try:
        options = SFTExportOptions(
            format=format, per_episode=per_episode, successful_only=successful_only,  # type: ignore[arg-type]
            min_reward=min_reward, max_episodes_per_task=max_per_task, dedupe=not no_dedupe,
            include_invalid_steps=include_invalid, include_thought=not no_thought,
            prompt=prompt_config_from(dialect, history_images, model, min_pixels, max_pixels,
                                      profile=prompt_profile or _recorded_profile(run_dir)))
        report = export_sft(run_dir, out, options)
    except (ExportError, TrajectoryStoreError, ValueError, UnknownProfile) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(_report_table(report))
    console.print(f"wrote {out / report.data_file}")


def _recorded_profile(run_dir: Path) -> str | None:
    """The prompt profile the run's policy was given (its manifest), if any."""
    try:
        config = RunDir(run_dir).manifest().config
    except (TrajectoryStoreError, OSError, ValueError):
        return None  # export_sft reports an unreadable run with its own message
    options = config.get("policy_options") or {}
    return options.get("prompt_profile") if isinstance(options, dict) else None


@export_app.command("rl")
def export_rl_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (from cua eval / run).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    granularity: Annotated[str, typer.Option(
        "--granularity", help="step: one row per policy call; episode: turns concatenated "
        "with a response mask (needs append-only prompts).")] = "step",
    successful_only: Annotated[bool, typer.Option("--successful-only")] = False,
    min_reward: Annotated[float | None, typer.Option("--min-reward")] = None,
) -> None:
    """Export RL rollouts to Parquet: token ids as generated, logprobs, masks, rewards,
    group ids. Steps without recorded token ids are skipped and reported."""
    from trajectories.export_rl import RLExportOptions, export_rl
    from trajectories.export_sft import ExportError

    console = Console()
    if granularity not in ("step", "episode"):
        console.print("[red]error:[/red] --granularity must be 'step' or 'episode'")
        raise typer.Exit(2)
    try:
        report = export_rl(run_dir, out, RLExportOptions(
            granularity=granularity, successful_only=successful_only,  # type: ignore[arg-type]
            min_reward=min_reward))
    except (ExportError, TrajectoryStoreError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(_report_table(report))
    for problem in report.problems:
        console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    console.print(f"wrote {out / report.data_file}")


@export_app.command("grounding")
def export_grounding_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory recorded with "
                                            "--record-click-targets.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (ScreenSpot-Pro "
                                      "format: annotations/, images/).")],
    successful_only: Annotated[bool, typer.Option(
        "--successful-only", help="Only clicks of episodes that succeeded.")] = False,
) -> None:
    """Every click of a recorded run whose target element is known becomes a grounding
    sample (the screen before the click, an instruction built from the element, its box).
    Evaluate them with `cua eval screenspot-pro --data OUT`."""
    from trajectories.export_grounding import export_grounding

    console = Console()
    try:
        report = export_grounding(run_dir, out, successful_only=successful_only)
    except (TrajectoryStoreError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table(title="export grounding", show_header=False)
    table.add_row("source run", report.source_run)
    table.add_row("clicks", str(report.clicks))
    table.add_row("samples", str(report.samples))
    table.add_row("images", str(report.images))
    for reason, count in sorted(report.skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    console.print(table)
    if not report.samples:
        console.print("[yellow]no samples[/yellow]: record the run with "
                      "`cua eval ... --record-click-targets`")
        raise typer.Exit(1)
    console.print(f"wrote {out}; evaluate with `cua eval screenspot-pro --data {out}`",
                  highlight=False)
