"""The `cua` command line. Each command lives in its own `agent/cmd_*.py` module, which
registers itself on `app`; this file only creates the app and imports those modules."""

from __future__ import annotations

import logging
import sys

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


# Command modules register themselves on `app` when imported (keep this list sorted).
from agent import cmd_actions  # noqa: E402, F401, I001
from agent import cmd_demo  # noqa: E402, F401
from agent import cmd_eval  # noqa: E402, F401
from agent import cmd_evolve  # noqa: E402, F401
from agent import cmd_export  # noqa: E402, F401
from agent import cmd_grounding  # noqa: E402, F401
from agent import cmd_osworld  # noqa: E402, F401
from agent import cmd_run  # noqa: E402, F401
from agent import cmd_serve_env  # noqa: E402, F401
from agent import cmd_train  # noqa: E402, F401
from agent import cmd_view  # noqa: E402, F401


# Modules that come with an extra rather than the core (pyproject.toml), and the extra.
EXTRA_OF_MODULE = {"trl": "train", "peft": "train", "datasets": "train", "pyarrow": "train",
                   "ray": "ray", "pytest": "dev", "hypothesis": "dev",
                   "fastapi": "serve", "uvicorn": "serve", "httpx": "serve"}


def main() -> None:
    """The console script: `app`, with a missing optional extra named rather than traced."""
    try:
        app()
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        if extra is None:
            raise
        print(f"error: this command needs {top!r}, part of the [{extra}] extra: "
              f"pip install 'qwen-cua[{extra}]'", file=sys.stderr)
        raise SystemExit(2) from None
