"""The `cua` console script. Each command lives in its own module under `agent/cli/`, which
registers itself on `agent.cli.app.app` when imported; this module imports them all."""

from __future__ import annotations

import sys

from agent.cli import (  # noqa: F401  (imported to register their commands; keep sorted)
    actions,
    demo,
    eval,
    evolve,
    export,
    grounding,
    osworld,
    run,
    serve_env,
    train,
    view,
)
from agent.cli.app import app

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


if __name__ == "__main__":
    main()
