"""`cua demo`: the scripted expert on a handful of MiniWoB++ tasks, end to end (`make demo`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from agent.cli.app import app
from agent.cli.options import fail, validation_message
from agent.config import OutputConfig, RunConfig
from agent.runner import RunAborted, print_summary, run_suite
from trajectories.store import MANIFEST, NotARunDirectory, RunConfigMismatch, RunDir

DEMO_OUT = Path("runs/demo")
DEMO_TASKS = ("click-test", "click-button", "enter-text", "click-checkboxes", "login-user")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = DEMO_OUT,
    episodes: Annotated[int, typer.Option("--episodes", "-n", min=1,
                                          help="Episodes per task.")] = 2,
    seed: Annotated[int, typer.Option("--seed", "-s", help="First seed.")] = 0,
    tasks: Annotated[str, typer.Option("--tasks", "-t",
                                       help="Comma-separated MiniWoB++ task ids.")]
    = ",".join(DEMO_TASKS),
    resume: Annotated[bool, typer.Option(
        "--resume", help="Keep the previous demo run and finish it, instead of starting "
        "fresh.")] = False,
) -> None:
    """Run the MiniWoB++ oracle (pixel actions on real Chromium) and print the results.

    Records the episodes under OUT (default runs/demo), replacing the previous demo run
    unless --resume is given. Exits 1 if any episode ended in an error.
    """
    console = Console()
    if out.exists() and not resume:
        if (out / MANIFEST).exists() and _made_by_demo(out):
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise fail(console, f"{out} exists and is not a demo run (refusing to delete it); "
                       "pass another --out")
    console.print(f"[bold]qwen-cua demo[/bold]: MiniWoB++ oracle, {episodes} episode(s) each "
                  f"of {tasks.replace(',', ', ')} -> {out}")
    try:
        config = RunConfig(suite="miniwob", policy="oracle", tasks=tasks,
                           episodes_per_task=episodes, seed=seed, output=OutputConfig(out_dir=out))
        summary = run_suite(config, invocation={"argv": sys.argv, "command": "demo"},
                            console=console)
    except ValidationError as exc:
        raise fail(console, validation_message(exc)) from None
    except (RunConfigMismatch, NotARunDirectory, KeyError) as exc:
        raise fail(console, str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    except RunAborted as exc:
        raise fail(console, str(exc), code=1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: `cua demo --resume` finishes the run")
        raise typer.Exit(130) from None
    print_summary(summary, console)
    if any(r.error for r in summary.results):
        raise typer.Exit(1)


def _made_by_demo(run: Path) -> bool:
    """True if every command that wrote to `run` was `cua demo` (safe to replace)."""
    invocations = RunDir(run).manifest().invocations
    return bool(invocations) and all(i.get("command") == "demo" for i in invocations)
