"""Environments at RL density: memory and throughput per platform at 1, 8, 32, 64 environments.

Each setup runs in a child process of its own (so that its memory is its own) while this
process samples the child's whole process tree (Python, the Playwright driver, every
Chromium process) every 0.25 s and keeps the peak proportional set size (PSS: shared pages
split between the processes that map them, so the sum is what the tree costs the machine).
CPU utilisation is the tree's user+system CPU time (getrusage of the reaped child, which
includes its reaped descendants) over wall time, in cores.

Setups, side by side in one invocation:

- layout ``shared`` (the default: environments of one process share Chromium, each in its
  own context, `contexts_per_browser` per browser) and ``own`` (`contexts_per_browser=1`:
  one browser per environment, as before issue 23; the Playwright driver is shared either
  way);
- policy ``oracle`` (the suite's scripted expert: an instant policy) and ``served`` (the
  same expert answering after the simulated served policy of benchmarks/perf/engine.py:
  a request takes 1.0 s + 0.03 s x requests in flight).

Each environment runs `--episodes-per-env` MiniWoB episodes (click-test, click-button,
enter-text, focus-text, in turn). env-steps/s counts environment steps (actions executed)
from the first reset to the last result; the browser launches are inside that span.

On a 2-core machine shared with other work the throughput figures are noisy (compare
columns of one run, not runs); the memory figures are robust.

    python -m benchmarks.perf.density                        # web, 1/8/32/64, both layouts
    python -m benchmarks.perf.density --envs 1,8 --policies oracle --layouts shared
    python -m benchmarks.perf.density --peak-pss -- cua eval miniwob --num-envs 32 ...

`--peak-pss -- COMMAND...` runs any command the same way and prints its tree's peak PSS,
CPU and wall time (how the `cua eval` figures in docs/measured.md were taken).

`--leak EPISODES` runs that many oracle episodes on `--envs` environments (one value) and
reads the process tree's PSS after every 100 finished episodes: the end against after the
first 100, and the least-squares slope in MiB per 100 episodes from there on.

    python -m benchmarks.perf.density --leak 1000 --envs 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

WEB_TASKS = ["click-test", "click-button", "enter-text", "focus-text"]
LAYOUTS = {"shared": None, "own": 1}  # contexts_per_browser (None: the WebConfig default)


def tree_pss_bytes(root: psutil.Process, cpu_s: dict[int, float] | None = None) -> int:
    """PSS of `root` and all its descendants, bytes (processes that vanish are skipped);
    records each one's CPU seconds so far in `cpu_s` (pid -> seconds)."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
            if cpu_s is not None:
                times = process.cpu_times()
                cpu_s[process.pid] = max(cpu_s.get(process.pid, 0.0), times.user + times.system)
        except psutil.Error:
            continue
    return total


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(setup: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run one setup in a child process; return its figures plus peak PSS and CPU."""
    return run_measured([sys.executable, "-m", "benchmarks.perf.density", "--child",
                         json.dumps(setup)], timeout_s, setup)


def run_measured(command: list[str], timeout_s: float, setup: dict[str, Any] | None = None,
                 capture: bool = True) -> dict[str, Any]:
    """Run `command`, sampling its process tree's PSS; its last stdout line is JSON figures
    when `capture`."""
    setup = setup or {}
    cpu_before = _cpu_s()
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE if capture else None, text=True)
    root = psutil.Process(child.pid)
    peak = 0
    sampled_cpu_s: dict[int, float] = {}
    while child.poll() is None:
        peak = max(peak, tree_pss_bytes(root, sampled_cpu_s))
        if time.monotonic() - started > timeout_s:
            child.kill()
            break
        time.sleep(0.25)  # the sampling period
    out, _ = child.communicate()
    wall_s = time.monotonic() - started
    figures: dict[str, Any] = (json.loads(out.strip().splitlines()[-1])
                               if capture and out and out.strip() else {})
    # CPU: the reaped tree's rusage, or what sampling saw (processes reaped by a parent
    # that is itself not waited for escape rusage; sampling misses a process's last 0.25 s)
    cpu_s = max(_cpu_s() - cpu_before, sum(sampled_cpu_s.values()))
    figures.update(setup, peak_pss_mib=peak / 2**20, process_wall_s=wall_s,
                   cpu_cores=cpu_s / wall_s, exit=child.returncode)
    return figures


# --------------------------------------------------------------------------- the child


async def _child(setup: dict[str, Any]) -> dict[str, Any]:
    from agent.engine.episode import EpisodeSpec, LoopOptions, run_engine
    from agent.engine.hosts import HostPool, ThreadHost
    from agent.engine.policy_service import ExpertPolicy
    from benchmarks.miniwob import MiniWoBSuite
    from benchmarks.perf.engine import ExpertBehindServer, SimulatedServer

    platform = setup.get("platform", "web")
    adb = None
    if platform == "desktop":
        from benchmarks.desktop import DesktopSuite

        suite: Any = DesktopSuite()
        tasks = sorted(suite.list_tasks())[:4]
    elif platform == "android":
        from benchmarks.android.suite import AndroidSuite
        from benchmarks.perf.soak import AdbServer

        adb = AdbServer()  # a private adb server on a free port
        adb.start()
        suite = AndroidSuite(adb_port=adb.port)
        tasks = sorted(suite.list_tasks())[:4]
    else:
        suite = MiniWoBSuite()
        tasks = WEB_TASKS
    options: dict[str, Any] = {}
    if platform != "web":
        pass  # one X server / one virtual phone per environment: no layout to choose
    elif setup["layout"] == "own":
        options["contexts_per_browser"] = 1
    elif setup.get("contexts_per_browser"):
        options["contexts_per_browser"] = setup["contexts_per_browser"]
    envs = setup["envs"]
    specs = [EpisodeSpec(task=suite.make_task(tasks[n % len(tasks)], n),
                         episode_id=f"e{n}") for n in range(envs * setup["episodes_per_env"])]
    service: Any = (ExpertPolicy() if setup["policy"] == "oracle"
                    else ExpertBehindServer(SimulatedServer(1.0, 0.03)))
    pool = HostPool(envs, lambda i: ThreadHost.start(
        i, lambda: suite.make_environment(**options), suite.make_expert))
    me = psutil.Process()
    readings: list[tuple[int, float]] = []

    finished = 0

    def on_result(_: Any) -> None:
        nonlocal finished
        finished += 1
        if finished % 100 == 0:
            readings.append((finished, tree_pss_bytes(me) / 2**20))

    started = time.monotonic()
    try:
        report = await run_engine(pool, service, specs, options=LoopOptions(),
                                  on_result=on_result)
    finally:
        wall_s = time.monotonic() - started
        await pool.close()
        close = getattr(service, "close", None)
        if close is not None:
            await close()
        if adb is not None:
            adb.stop()
    results = [r for r in report.results if r is not None]
    return {"episodes": len(results), "steps": sum(r.steps for r in results),
            "succeeded": sum(bool(r.success) for r in results),
            "errors": sum(r.error is not None for r in results), "wall_s": wall_s,
            "pss_every_100": readings}


def leak_run(envs: int, episodes: int, timeout_s: float, console: Console) -> dict[str, Any]:
    """The leak run (see module docstring)."""
    setup = {"envs": envs, "layout": "shared", "policy": "oracle",
             "episodes_per_env": -(-episodes // envs)}
    row = measure(setup, timeout_s)
    readings = row.get("pss_every_100", [])
    console.print(f"{row.get('episodes')} episodes on {envs} environments, "
                  f"{row.get('succeeded')} succeeded, {row.get('errors')} errors, "
                  f"{row.get('wall_s', 0):.0f} s; peak PSS {row['peak_pss_mib']:.0f} MiB")
    for finished, pss in readings:
        console.print(f"  after {finished:5d} episodes: {pss:7.0f} MiB")
    if len(readings) >= 2:
        xs = [float(n) for n, _ in readings]
        ys = [pss for _, pss in readings]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) \
            / sum((x - mean_x) ** 2 for x in xs)
        row["slope_mib_per_100"] = 100 * slope
        row["end_vs_first_100"] = ys[-1] / ys[0]
        console.print(f"end / after the first 100: {ys[-1] / ys[0]:.3f} "
                      f"({100 * (ys[-1] / ys[0] - 1):+.1f} %, target within 10 %); slope "
                      f"{100 * slope:+.2f} MiB per 100 episodes")
    return row


# --------------------------------------------------------------------------- the table


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title="environments: memory and throughput")
    for column in ("platform", "envs", "layout", "policy", "peak PSS MiB", "PSS/env MiB", "env-steps/s",
                   "env-steps/h", "CPU cores", "episodes ok/all", "errors"):
        out.add_column(column, justify="right")
    for row in rows:
        steps_s = row.get("steps", 0) / row["wall_s"] if row.get("wall_s") else 0.0
        out.add_row(row.get("platform", "web"), str(row["envs"]), row["layout"], row["policy"], f"{row['peak_pss_mib']:.0f}",
                    f"{row['peak_pss_mib'] / row['envs']:.0f}", f"{steps_s:.2f}",
                    f"{steps_s * 3600:,.0f}", f"{row['cpu_cores']:.2f}",
                    f"{row.get('succeeded', 0)}/{row.get('episodes', 0)}",
                    str(row.get("errors", "?")))
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default="1,8,32,64")
    parser.add_argument("--platforms", default="web",
                        help="web, desktop (Xvfb + window manager + app per environment), "
                        "android (a virtual phone per environment)")
    parser.add_argument("--layouts", default="shared,own")
    parser.add_argument("--policies", default="oracle,served")
    parser.add_argument("--episodes-per-env", type=int, default=2)
    parser.add_argument("--contexts-per-browser", type=int, default=None,
                        help="for the shared layout (default: WebConfig's)")
    parser.add_argument("--own-up-to", type=int, default=32,
                        help="run the `own` layout only up to this many environments (one "
                        "browser each: 64 would need ~14 GiB here)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per setup, seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--leak", type=int, default=None, metavar="EPISODES",
                        help="the leak run: EPISODES oracle episodes on --envs environments")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peak-pss", action="store_true",
                        help="-- COMMAND...: run it and print its peak PSS, CPU, wall time")
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.peak_pss:
        figures = run_measured(command, args.timeout * 10, capture=False)
        print(f"peak PSS {figures['peak_pss_mib']:.0f} MiB, CPU {figures['cpu_cores']:.2f} "
              f"cores, wall {figures['process_wall_s']:.0f} s, exit {figures['exit']}")
        return [figures]
    if args.child is not None:
        print(json.dumps(asyncio.run(_child(json.loads(args.child)))))
        return []
    console = Console(width=160)
    if args.leak:
        return [leak_run(int(args.envs), args.leak, args.timeout * 10, console)]
    rows = []
    setups = [{"platform": platform, "envs": int(envs), "layout": layout, "policy": policy,
               "episodes_per_env": args.episodes_per_env,
               "contexts_per_browser": args.contexts_per_browser}
              for platform in args.platforms.split(",") for envs in args.envs.split(",")
              for policy in args.policies.split(",")
              for layout in (args.layouts.split(",") if platform == "web" else ["own"])]
    for setup in setups:
        if setup["platform"] == "desktop" and setup["envs"] > 1:
            console.print("[dim]not run: desktop at more than 1 environment (pyautogui drives "
                          "one X display per process: measure `cua eval desktop --workers N` "
                          "with --peak-pss)[/dim]")
            continue
        if setup["layout"] == "own" and setup["envs"] > args.own_up_to:
            console.print(f"[dim]not run: {setup} (--own-up-to {args.own_up_to})[/dim]")
            continue
        console.print(f"[dim]{setup}[/dim]")
        rows.append(measure(setup, args.timeout))
        console.print(table(rows[-1:]))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    console.print(table(rows))
    console.print(f"[dim]{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at "
                  "the end (throughput is noisy on a shared machine; memory is not)[/dim]")
    return rows


if __name__ == "__main__":
    main()
