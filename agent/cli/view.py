"""`cua view RUN_DIR [RUN_B] [--serve --port P]`: a static HTML report of a run (it works
on a run still in progress), or a task-by-task comparison of two runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.cli.app import app


@app.command("view")
def view_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (from cua eval / run).")],
    other_run: Annotated[Path | None, typer.Argument(
        help="A second run directory: compare the two, task by task.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Report folder (default: RUN_DIR/report, or "
        "RUN_DIR/compare-<RUN_B name> for a comparison).")] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Serve the report on localhost until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port for --serve (0 = any free port).")] = 8765,
) -> None:
    """Write the report: plots, results table with filters, and per episode every step's
    screenshot with its actions drawn on it, thought, raw output, errors, timings."""
    from trajectories.store import TrajectoryStoreError
    from trajectories.viewer import build_comparison, build_report, serve_report

    console = Console()
    try:
        if other_run is not None:
            index = build_comparison(run_dir, other_run,
                                     out or run_dir / f"compare-{other_run.name}")
        else:
            index = build_report(run_dir, out)
    except TrajectoryStoreError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"report: {index}")
    if not serve:
        return
    try:
        with serve_report(index.parent, port) as url:
            console.print(f"serving on {url}index.html (Ctrl-C to stop)")
            threading.Event().wait()
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot serve on port {port}: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("stopped")
