"""Median per-step overhead of the desktop environment vs. a 1 s fixed-sleep loop.

One step = execute the action + wait until the screen settles + mss screenshot (PNG).
The baseline is what OSWorld-style loops do: execute, sleep 1 s, screenshot. Both run
the same actions (clicks into an xterm and short typed commands) on our own Xvfb.

    python -m benchmarks.perf.desktop [--steps 20] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import statistics
import time

from actions.contracts import Task
from actions.models import Action, Click, Type
from actions.observation import Size
from environments.desktop import DesktopConfig, DesktopEnv


def _actions(env: DesktopEnv, steps: int) -> list[Action]:
    window = env.wait_for_window("xterm")
    x, y, width, height = env.window_geometry(window)
    out: list[Action] = []
    for i in range(steps):
        out.append(Click(x=x + width // 2, y=y + height // 2) if i % 2 == 0
                   else Type(text=f"echo step {i}\n"))
    return out


def measure(steps: int, size: Size) -> dict[str, float]:
    """Median seconds per step for our settle loop and for the fixed 1 s sleep loop."""
    env = DesktopEnv(DesktopConfig(screen_size=size))
    try:
        env.reset(Task(suite="perf", task_id="xterm"))
        env.spawn(["xterm", "-geometry", "100x30+40+40"])
        actions = _actions(env, steps)
        ours: list[float] = []
        execute: list[float] = []
        settle: list[float] = []
        for action in actions:
            start = time.monotonic()
            obs = env.step(action)  # execute + settle + screenshot + observation
            ours.append(time.monotonic() - start)
            execute.append(obs.execute_s or 0.0)
            settle.append(obs.settle_s or 0.0)
        fixed: list[float] = []
        for action in actions:
            start = time.monotonic()
            env._execute(action)
            time.sleep(1.0)  # the baseline's fixed sleep
            env.screenshot_png()
            fixed.append(time.monotonic() - start)
    finally:
        env.close()
    return {"settle_median_s": statistics.median(ours), "settle_max_s": max(ours),
            "execute_median_s": statistics.median(execute),
            "wait_median_s": statistics.median(settle),
            "fixed_median_s": statistics.median(fixed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the Xvfb screen")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = measure(args.steps, Size(width=width, height=height))
    ratio = result["settle_median_s"] / result["fixed_median_s"]
    print(f"screen {args.size}, {args.steps} steps (click / type into xterm)")
    print(f"settle loop : median {result['settle_median_s'] * 1000:.0f} ms/step "
          f"(max {result['settle_max_s'] * 1000:.0f} ms)")
    print(f"  of which  : execute {result['execute_median_s'] * 1000:.0f} ms, settle "
          f"{result['wait_median_s'] * 1000:.0f} ms, rest = PNG + window title")
    print(f"fixed 1 s   : median {result['fixed_median_s'] * 1000:.0f} ms/step")
    print(f"ratio       : {ratio:.3f} (settle / fixed-sleep; {1 / ratio:.1f}x faster)")


if __name__ == "__main__":
    main()
