"""The `cua` Typer application. Command modules (`agent/cli/<command>.py`) import `app` from
here and register their commands on it; `agent.cli.main` imports those modules, so the
imports point one way: main -> commands -> app."""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="cua",
    help="qwen-cua: GUI computer-use agents around Qwen3-VL (web, desktop, Android).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
