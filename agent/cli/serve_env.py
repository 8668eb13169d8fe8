"""`cua serve-env --suite S --port P --max-envs N`: host a suite's environments over HTTP."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.cli.app import app
from agent.service.protocol import TOKEN_ENV_VAR


def _read_token(token_file: Path | None) -> tuple[str, bool]:
    """(token, generated): --token-file, else $CUA_ENV_TOKEN, else a fresh random token."""
    if token_file is not None:
        return token_file.read_text().strip(), False
    if os.environ.get(TOKEN_ENV_VAR):
        return os.environ[TOKEN_ENV_VAR].strip(), False
    return secrets.token_urlsafe(32), True


@app.command("serve-env")
def serve_env_command(
    suite: Annotated[str, typer.Option("--suite", help="miniwob, desktop or android.")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8100,
    host: Annotated[str, typer.Option(
        "--host", help="Interface to listen on; 0.0.0.0 to serve other machines.")
    ] = "127.0.0.1",
    max_envs: Annotated[int, typer.Option(
        "--max-envs", min=1, help="Most environments alive at once (one per lease).")] = 4,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", exists=True, dir_okay=False,
        help=f"File holding the bearer token (default: ${TOKEN_ENV_VAR}, else a random "
        "token printed at start).")] = None,
    idle_timeout_s: Annotated[float, typer.Option(
        "--idle-timeout-s", min=0.01, help="Reclaim a lease after this long without a call.")
    ] = 300.0,
    call_timeout_s: Annotated[float, typer.Option(
        "--call-timeout-s", min=0.01,
        help="An environment call running longer is hung: it is replaced.")] = 300.0,
    max_request_bytes: Annotated[int, typer.Option(
        "--max-request-bytes", min=1024, help="Largest request body accepted.")] = 1 << 20,
) -> None:
    """Serve environments to remote clients (a trainer's GPU nodes): lease, reset, step,
    evaluate, close; screenshots as PNG bytes; a bearer token on every call."""
    from agent.service.server import ServiceConfig, serve
    from benchmarks.base import SuiteUnavailable, suite_names

    console = Console(stderr=True)
    if suite not in suite_names():
        console.print(f"[red]error:[/red] unknown suite {suite!r}; available: "
                      f"{', '.join(suite_names())}")
        raise typer.Exit(2)
    token, generated = _read_token(token_file)
    if len(token) < 16:
        console.print("[red]error:[/red] the token must have at least 16 characters")
        raise typer.Exit(2)
    config = ServiceConfig(suite=suite, max_envs=max_envs, token=token,
                           idle_timeout_s=idle_timeout_s, call_timeout_s=call_timeout_s,
                           max_request_bytes=max_request_bytes)
    if generated:
        console.print(f"token (set {TOKEN_ENV_VAR} on clients): {token}")
    console.print(f"serving {suite} environments (at most {max_envs}) on "
                  f"http://{host}:{port} — Ctrl-C to stop")
    try:
        serve(config, host, port)
    except SuiteUnavailable as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
