"""What the environment service costs: MiniWoB steps in process vs through `cua serve-env`.

    python -m benchmarks.perf.env_service --episodes 5

Runs the same episodes (task, seed, actions: clicks on a fixed grid, then the page's own
end) on one in-process MiniWoB environment and on the service's environment over
loopback HTTP, interleaved in one run, and prints the mean reset and step times of each
and their ratio. On loopback the difference is the service's overhead (HTTP, JSON, the
PNG transfer, the environment's thread hop); across machines add the network.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

from rich.console import Console
from rich.table import Table

from actions.models import Click

TOKEN = "perf-token-0123456789abcdef"
POINTS = [(40, 60), (80, 100), (120, 140), (60, 180)]


def _episode(env, task) -> tuple[float, list[float]]:
    started = time.perf_counter()
    env.reset(task)
    reset_s = time.perf_counter() - started
    steps: list[float] = []
    for x, y in POINTS:
        started = time.perf_counter()
        observation = env.step(Click(x=x, y=y))
        steps.append(time.perf_counter() - started)
        if observation.done:
            break
    return reset_s, steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--task", default="click-checkboxes")
    args = parser.parse_args(argv)

    import uvicorn  # the [serve] extra

    from agent.service.client import RemoteEnvironment
    from agent.service.server import ServiceConfig, create_app
    from benchmarks.miniwob import MiniWoBSuite

    suite = MiniWoBSuite()
    app = create_app(ServiceConfig(suite="miniwob", token=TOKEN, max_envs=1), suite=suite)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # polling the server's start flag, with a deadline
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    local = suite.make_environment()
    remote = RemoteEnvironment(f"http://127.0.0.1:{sock.getsockname()[1]}", TOKEN)
    times: dict[str, tuple[list[float], list[float]]] = {"in process": ([], []),
                                                         "service": ([], [])}
    try:
        for seed in range(args.episodes + 1):  # episode 0 warms both up (browser start)
            task = suite.make_task(args.task, seed)
            for name, env in (("in process", local), ("service", remote)):
                reset_s, steps = _episode(env, task)
                if seed:
                    times[name][0].append(reset_s)
                    times[name][1].extend(steps)
    finally:
        remote.close()
        local.close()
        server.should_exit = True
        thread.join(timeout=30)

    table = Table(title=f"MiniWoB {args.task}: {args.episodes} episodes each, interleaved")
    for column in ("environment", "reset ms (mean)", "step ms (mean)", "steps"):
        table.add_column(column)
    for name, (resets, steps) in times.items():
        table.add_row(name, f"{1000 * statistics.mean(resets):.1f}",
                      f"{1000 * statistics.mean(steps):.1f}", str(len(steps)))
    console = Console()
    console.print(table)
    local_step = statistics.mean(times["in process"][1])
    remote_step = statistics.mean(times["service"][1])
    console.print(f"service / in process, step time: {remote_step / local_step:.2f}x "
                  f"(+{1000 * (remote_step - local_step):.1f} ms per step on loopback)")


if __name__ == "__main__":
    main()
