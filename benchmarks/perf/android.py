"""Android driver latency: screenshots and per-step overhead, as ratios.

1. Screenshot: `adb exec-out screencap -p` (PNG over the adb stream, what
   AndroidEnvironment does) against the method many public harnesses use:
   `screencap -p /sdcard/x.png` then `adb pull` (a file on the device, a second round trip
   through the sync protocol).
2. Step: AndroidEnvironment.step (act, then capture until two consecutive frames match,
   plus the UI tree and foreground app) against the fixed-sleep loop public harnesses run
   (act, sleep 2 s, capture), over the same action sequence.

    python -m benchmarks.perf.android                 # starts a virtual device
    python -m benchmarks.perf.android --serial emulator-5554   # a real device/emulator

Ratios below 1 mean ours is faster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from actions.contracts import Task
from actions.models import Action, Click, OpenApp, Scroll, SystemButton
from environments.android import AndroidEnvironment

FIXED_SLEEP_S = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot_exec_out(env: AndroidEnvironment) -> bytes:
    return env.screenshot_png()


def screenshot_file_and_pull(env: AndroidEnvironment, local: Path) -> bytes:
    env.shell("screencap -p /sdcard/perf_screen.png")
    env.call(lambda: env.device.sync.pull("/sdcard/perf_screen.png", str(local)))
    return local.read_bytes()


def time_calls(fn, iterations: int) -> list[float]:
    fn()  # warm-up
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def action_sequence(env: AndroidEnvironment) -> list[Action]:
    width, height = env.screen_size.width, env.screen_size.height
    return [
        OpenApp(name="Settings"), Scroll(direction="down", amount=5),
        Scroll(direction="up", amount=5), Click(x=width // 2, y=height // 4),
        SystemButton(button="back"), SystemButton(button="home"), OpenApp(name="Contacts"),
        SystemButton(button="home"),
    ]


def fixed_sleep_loop(env: AndroidEnvironment, actions: list[Action]) -> list[float]:
    """Act through the same driver, then sleep FIXED_SLEEP_S, then one screenshot."""
    samples = []
    for action in actions:
        started = time.perf_counter()
        env._execute(action)
        time.sleep(FIXED_SLEEP_S)  # the public harnesses' way, measured here on purpose
        env.screenshot_png()
        if env.config.a11y_tree:
            env.ui_tree()
        env.foreground_app()
        samples.append(time.perf_counter() - started)
    return samples


def settled_loop(env: AndroidEnvironment, actions: list[Action]) -> tuple[list[float], list[float]]:
    totals, settles = [], []
    for action in actions:
        started = time.perf_counter()
        obs = env.step(action)
        totals.append(time.perf_counter() - started)
        settles.append(obs.settle_s or 0.0)
    return totals, settles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serial", default=None, help="device to measure (default: start a "
                        "virtual device)")
    parser.add_argument("--adb-port", type=int, default=None,
                        help="adb server port (default: a private server on a free port when "
                        "starting a virtual device, else ANDROID_ADB_SERVER_PORT or 5037)")
    parser.add_argument("--iterations", type=int, default=20, help="screenshots per method")
    args = parser.parse_args(argv)
    console = Console()

    device = None
    private_port = None
    if args.serial is None:
        from benchmarks.android.virtual_device import VirtualDeviceProcess

        private_port = args.adb_port or _free_port()
        subprocess.run([shutil.which("adb") or "adb", "-P", str(private_port), "start-server"],
                       check=True, capture_output=True, timeout=30)
        console.print("starting a virtual device ...")
        device = VirtualDeviceProcess()
        serial, port = device.address, private_port
    else:
        serial = args.serial
        port = args.adb_port or int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))
    try:
        env = AndroidEnvironment(serial=serial, adb_port=port)
        env.reset(Task(suite="perf", task_id="perf"))
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "screen.png"
            assert screenshot_file_and_pull(env, local) == screenshot_exec_out(env)
            exec_out = time_calls(lambda: screenshot_exec_out(env), args.iterations)
            pulled = time_calls(lambda: screenshot_file_and_pull(env, local), args.iterations)
            # Transfer alone (the PNG already on the device): stream vs sync pull.
            stream_only = time_calls(lambda: env.exec_out("cat /sdcard/perf_screen.png"),
                                     args.iterations)
            pull_only = time_calls(lambda: env.call(lambda: env.device.sync.pull(
                "/sdcard/perf_screen.png", str(local))), args.iterations)
            env.shell("rm -f /sdcard/perf_screen.png")

        actions = action_sequence(env)
        env.reset(Task(suite="perf", task_id="perf"))
        ours, settles = settled_loop(env, actions)
        env.reset(Task(suite="perf", task_id="perf"))
        fixed = fixed_sleep_loop(env, actions)
        env.close()
    finally:
        if device is not None:
            device.stop()
        if private_port is not None:
            subprocess.run([shutil.which("adb") or "adb", "-P", str(private_port),
                            "kill-server"], capture_output=True, timeout=30)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f} ms (mean {statistics.mean(values) * 1000:.1f})"

    table = Table(title=f"Android driver latency ({serial})")
    table.add_column("measure")
    table.add_column("median (mean)", justify="right")
    table.add_row(f"screenshot: exec-out screencap -p (n={len(exec_out)})", ms(exec_out))
    table.add_row(f"screenshot: screencap to /sdcard + pull (n={len(pulled)})", ms(pulled))
    table.add_row("  transfer only: exec-out cat of the file", ms(stream_only))
    table.add_row("  transfer only: sync pull of the file", ms(pull_only))
    table.add_row(f"step: act + settle (ours, n={len(ours)})", ms(ours))
    table.add_row("  of which settling", ms(settles))
    table.add_row(f"step: act + {FIXED_SLEEP_S:.0f} s sleep + capture (n={len(fixed)})", ms(fixed))
    console.print(table)
    screenshot_ratio = statistics.median(exec_out) / statistics.median(pulled)
    step_ratio = sum(ours) / sum(fixed)
    transfer_ratio = statistics.median(stream_only) / statistics.median(pull_only)
    print(f"screenshot latency ratio exec-out / (file + pull): {screenshot_ratio:.2f}")
    print(f"transfer-only ratio exec-out cat / sync pull: {transfer_ratio:.2f}")
    print(f"step time ratio ours / fixed {FIXED_SLEEP_S:.0f} s sleep loop: {step_ratio:.2f}")


if __name__ == "__main__":
    main()
