"""A Tk program for settling on the desktop (tests/test_settle_desktop.py and
benchmarks/perf/settle.py --corpus desktop): a ticking clock, and a click that reacts late.

Usage: python -m benchmarks.perf.settle_probe_app DELAY_MS TICK_MS MODE [URL]
A label shows a counter changed every TICK_MS (ambient motion; 0: never). What a left
click anywhere does after DELAY_MS depends on MODE:

- "clock": paints the big panel pure blue (a Tk timer: a pure timer in an idle app);
- "launch-sleep" / "launch-compute": starts a new program (this file, mode
  "window-sleep" / "window-compute") that sleeps / computes for DELAY_MS and then maps
  its first window: `LAUNCHED_GEOMETRY`, pure blue, titled "cua-settle-launched";
- "compute": computes for DELAY_MS in the click handler, then opens that window (a
  Toplevel of this app);
- "http": GETs URL?ms=DELAY_MS (a local server that answers that late) in the click
  handler, then opens that window (a dialog after a network call);
- "everywhere": instead fills the screen and recolours it every 30 ms forever (a screen
  that never settles).

A right click paints the panel grey at once, cancels reactions still on their way and
closes what a click opened (the launched programs, the dialog).
"""

import subprocess
import sys
import time
import tkinter as tk
import urllib.request

LAUNCHED_GEOMETRY = "320x200+760+120"  # where the launched window / dialog appears
BLUE = "#0000ff"

delay_ms, tick_ms, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
url = sys.argv[4] if len(sys.argv) > 4 else ""


def compute(ms: int) -> None:
    """Burn CPU for `ms` milliseconds of wall time."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        sum(i * i for i in range(2000))


if mode.startswith("window-"):  # a launched program: work first, then the first window
    (compute if mode == "window-compute" else lambda ms: time.sleep(ms / 1000))(delay_ms)
    window = tk.Tk()
    window.title("cua-settle-launched")
    window.geometry(LAUNCHED_GEOMETRY)
    window.configure(background=BLUE)
    window.mainloop()
    sys.exit()

root = tk.Tk()
root.title("cua-settle-probe")
if mode == "everywhere":  # the whole screen
    root.geometry(f"{root.winfo_screenwidth()}x{root.winfo_screenheight()}+0+0")
else:
    root.geometry("640x480+0+0")
clock = tk.Label(root, text="0", font=("DejaVu Sans Mono", 20), width=12)
clock.pack()
panel = tk.Frame(root, background="#e0e0e0")
panel.pack(fill="both", expand=True)
count = 0


def tick() -> None:
    global count
    count += 1
    clock.configure(text=str(count))
    if tick_ms:
        root.after(tick_ms, tick)


def flash() -> None:
    global count
    count += 1
    colour = "#%06x" % (count * 2654435 % 0xFFFFFF)
    for widget in (root, clock, panel):
        widget.configure(background=colour)
    root.after(30, flash)


pending: list[str] = []
launched: list[subprocess.Popen] = []
dialogs: list[tk.Toplevel] = []


def open_dialog() -> None:
    dialog = tk.Toplevel(root)
    dialog.title("cua-settle-launched")
    dialog.geometry(LAUNCHED_GEOMETRY)
    dialog.configure(background=BLUE)
    dialogs.append(dialog)


def react(_event: object) -> None:
    if mode == "clock":
        pending.append(root.after(delay_ms, lambda: panel.configure(background=BLUE)))
    elif mode.startswith("launch-"):
        kind = mode.removeprefix("launch-")
        launched.append(subprocess.Popen([sys.executable, __file__, str(delay_ms), "0",
                                          f"window-{kind}"]))
    elif mode == "compute":
        compute(delay_ms)
        open_dialog()
    elif mode == "http":
        with urllib.request.urlopen(f"{url}?ms={delay_ms}", timeout=30) as answer:
            answer.read()
        open_dialog()


def restore(_event: object) -> None:
    while pending:  # a reaction still on its way would repaint the panel later
        root.after_cancel(pending.pop())
    while launched:
        process = launched.pop()
        process.kill()
        process.wait()
    while dialogs:
        dialogs.pop().destroy()
    panel.configure(background="#e0e0e0")


root.bind("<ButtonRelease-1>", react)
root.bind("<ButtonRelease-3>", restore)
root.after(10, flash if mode == "everywhere" else tick)
root.mainloop()
