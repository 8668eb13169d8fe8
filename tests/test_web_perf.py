"""benchmarks/perf/web.py runs end to end (short settings) and reports its comparison."""

from __future__ import annotations

import re

import pytest

from benchmarks.perf import web as perf_web


def screens_matched(out: str, mode: str) -> list[tuple[int, int]]:
    """(equal, compared) from the 'same screen as ours' column of each row of `mode`."""
    rows = [line for line in out.splitlines() if mode in line]
    assert rows, f"no row {mode!r} in the output"
    found = []
    for row in rows:
        [(equal, compared)] = re.findall(r"\b(\d+)/(\d+)\b", row)
        found.append((int(equal), int(compared)))
    return found


@pytest.mark.parametrize(("row", "expected"), [
    ("│ fixed sleep 0.3 s │ 14 │ 300 │ 301 │ +1 │ 2.1x │ 14/14 │", (14, 14)),
    ("│ fixed sleep 0.3 s │ 14 │ 300 │ 301 │ +1 │ 2.1x │ 1/14 │", (1, 14)),  # the old regex: ok
    ("│ fixed sleep 0.3 s │ 14 │ 300 │ 301 │ +1 │ 2.1x │ 11/1 │", (11, 1)),
])
def test_screens_matched_reads_both_numbers(row, expected):
    assert screens_matched(row, "fixed sleep 0.3 s") == [expected]


def test_perf_web_compares_settling_with_a_fixed_sleep_and_the_floor(capsys):
    perf_web.main(["--task", "click-checkboxes", "--seed", "2", "--repeats", "1",
                   "--sleeps", "0.3"])
    out = capsys.readouterr().out
    assert "MiniWoB click-checkboxes" in out and "local page 1280x720" in out
    for mode in ("settle detection (ours, default)", "ours with hide_caret=True",
                 "floor: one bare screenshot"):
        assert out.count(mode) == 2, mode  # a row on each page
    assert len(re.findall(r"median overhead of ours: \d+ ms per step \((meets|misses)"
                          r".*floor of one bare screenshot", out)) == 2
    # the same actions solve the MiniWoB task in both modes, and every screen matches there
    # (no text field: no caret that may blink between the two captures)
    assert re.search(r"fixed sleep 0\.3 s.*\+1", out)
    [(miniwob_equal, miniwob_compared), (_, local_compared)] = screens_matched(
        out, "fixed sleep 0.3 s")
    assert miniwob_compared == 3 and miniwob_equal == 3
    assert local_compared == len(perf_web.LOCAL_ACTIONS)
