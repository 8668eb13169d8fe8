"""A Tk program for settling on the desktop (tests/test_settle_desktop.py and
benchmarks/perf/settle.py --corpus desktop): a ticking clock, and a click that reacts late.

Usage: python -m benchmarks.perf.settle_probe_app DELAY_MS TICK_MS MODE
A label shows a counter changed every TICK_MS (ambient motion; 0: never). A left click
anywhere paints the big panel pure blue DELAY_MS later; a right click paints it grey at
once and cancels reactions still on their way. MODE "everywhere" instead fills the screen and recolours it every 30 ms forever
(a screen that never settles).
"""

import sys
import tkinter as tk

delay_ms, tick_ms, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
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


def react(_event: object) -> None:
    pending.append(root.after(delay_ms, lambda: panel.configure(background="#0000ff")))


def restore(_event: object) -> None:
    while pending:  # a reaction still on its way would repaint the panel later
        root.after_cancel(pending.pop())
    panel.configure(background="#e0e0e0")


root.bind_all("<ButtonRelease-1>", react)
root.bind_all("<ButtonRelease-3>", restore)
root.after(10, flash if mode == "everywhere" else tick)
root.mainloop()
