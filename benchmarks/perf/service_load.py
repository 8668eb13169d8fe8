"""The environment service under load: many leases stepping at once over loopback.

    python -m benchmarks.perf.service_load --leases 64 --duration 60

Starts `cua serve-env --suite miniwob --max-envs N` (the real command, its own process),
then N concurrent clients (`agent.service.client.EnvServiceClient`, one asyncio task
each) each lease an environment, reset it to a MiniWoB task and step it with clicks on a
fixed grid for `--duration` seconds (resetting whenever the page ends the episode), then
give it back. Twice: a warm-up round (the service builds its N environments: it keeps them
for the next leases) and the measured round.

Printed: step latency p50/p99 (client side, HTTP + JSON + PNG transfer included), steps/s,
errors (any exception or error reply), and leaks: leases still held after release (the
service's /health), and the service's process tree (process count, PSS) after the measured
round against after the warm-up round (the same environments, idle both times).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.perf.density import tree_pss_bytes

TOKEN = "load-token-0123456789abcdef"
POINTS = [(40, 60), (80, 100), (120, 140), (60, 180), (20, 120)]
TASKS = ["click-test", "click-button", "focus-text", "click-checkboxes"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree(root: psutil.Process) -> tuple[int, float]:
    """(process count, PSS MiB) of the service's tree."""
    count = len(root.children(recursive=True)) + 1
    return count, tree_pss_bytes(root) / 2**20


async def _client(url: str, index: int, until: float, latencies: list[float],
                  errors: list[str]) -> None:
    from actions.models import Click
    from agent.service.client import EnvServiceClient
    from agent.service.protocol import ResetRequest

    async with EnvServiceClient(url, TOKEN, timeout_s=120, lease_wait_s=120) as client:
        try:
            env = await client.lease()
        except Exception as exc:  # noqa: BLE001 - counted, reported
            errors.append(f"lease: {type(exc).__name__}: {exc}")
            return
        try:
            seed = index * 1000
            await env.reset(ResetRequest(task_id=TASKS[index % len(TASKS)], seed=seed))
            step = 0
            while time.monotonic() < until:
                x, y = POINTS[step % len(POINTS)]
                started = time.perf_counter()
                observation = await env.step(Click(x=x, y=y))
                latencies.append(time.perf_counter() - started)
                step += 1
                if observation.done:
                    seed += 1
                    await env.reset(ResetRequest(task_id=TASKS[index % len(TASKS)], seed=seed))
        except Exception as exc:  # noqa: BLE001 - counted, reported
            errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        finally:
            await env.close()


async def _round(url: str, leases: int, duration_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    await asyncio.gather(*(_client(url, i, started + duration_s, latencies, errors)
                           for i in range(leases)))
    return {"latencies": latencies, "errors": errors, "wall_s": time.monotonic() - started}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of stepping")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds, first round")
    args = parser.parse_args(argv)
    import httpx  # the [serve] extra, as the service itself

    console = Console(width=120)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    service = subprocess.Popen(
        [sys.executable, "-c", "from agent.cli.main import main; main()", "serve-env",
         "--suite", "miniwob", "--port", str(port), "--max-envs", str(args.leases)],
        env={**os.environ, "CUA_ENV_TOKEN": TOKEN}, stdout=subprocess.DEVNULL)
    root = psutil.Process(service.pid)
    try:
        deadline = time.monotonic() + 60
        while True:  # polling for the service to answer, with a deadline
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or service.poll() is not None:
                    raise RuntimeError("the service did not start") from None
                time.sleep(0.2)
        cold = _tree(root)
        console.print(f"[dim]service up: {cold[0]} processes, {cold[1]:.0f} MiB PSS; warm-up "
                      f"round ({args.leases} leases, {args.warmup:g} s) ...[/dim]")
        warmup = asyncio.run(_round(url, args.leases, args.warmup))
        warm = _tree(root)
        console.print(f"[dim]after warm-up: {warm[0]} processes, {warm[1]:.0f} MiB; measured "
                      f"round ({args.duration:g} s) ...[/dim]")
        measured = asyncio.run(_round(url, args.leases, args.duration))
        after = _tree(root)
        health = httpx.get(f"{url}/health", timeout=10).json()
    finally:
        service.terminate()
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
    latencies = sorted(measured["latencies"])
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies \
        else float("nan")
    table = Table(title=f"cua serve-env under load: {args.leases} leases, "
                        f"{args.duration:g} s (loopback, MiniWoB)", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = {
        "steps": str(len(latencies)),
        "steps/s": f"{len(latencies) / measured['wall_s']:.1f}",
        "step latency p50 / p99": f"{1000 * p50:.0f} / {1000 * p99:.0f} ms",
        "errors (measured round / warm-up)": f"{len(measured['errors'])} / "
                                             f"{len(warmup['errors'])}",
        "leases held after release": str(health["leases"]),
        "environments kept by the service": str(len(health["environments"])),
        "processes: cold / after warm-up / after measured": f"{cold[0]} / {warm[0]} / "
                                                            f"{after[0]}",
        "PSS MiB: cold / after warm-up / after measured": f"{cold[1]:.0f} / {warm[1]:.0f} / "
                                                          f"{after[1]:.0f}",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    for error in (measured["errors"] + warmup["errors"])[:10]:
        console.print(f"[red]{error}[/]")
    console.print(f"[dim]load average {os.getloadavg()[0]:.1f} (2 shared cores: latency is "
                  "noisy; errors and leaks are not)[/dim]")
    return {"p50_s": p50, "p99_s": p99, "errors": len(measured["errors"]),
            "leases_after": health["leases"], "cold": cold, "warm": warm, "after": after}


if __name__ == "__main__":
    main()
