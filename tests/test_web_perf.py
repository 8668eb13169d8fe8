"""benchmarks/perf_web.py runs end to end (short settings) and reports its comparison."""

from __future__ import annotations

import re

import pytest

from benchmarks import perf_web


def screens_matched(out: str, mode: str) -> tuple[int, int]:
    """(equal, compared) from the 'same screen as ours' column of `mode`'s table row."""
    row = next(line for line in out.splitlines() if mode in line)
    [(equal, compared)] = re.findall(r"\b(\d+)/(\d+)\b", row)
    return int(equal), int(compared)


@pytest.mark.parametrize(("row", "expected"), [
    ("│ fixed sleep 0.3 s │ 14 │ 300 │ 301 │ +1 │ 2.1x │ 14/14 │", (14, 14)),
    ("│ fixed sleep 0.3 s │ 14 │ 300 │ 301 │ +1 │ 2.1x │ 1/14 │", (1, 14)),  # the old regex: ok
    ("│ fixed sleep 0.3 s │ 14 │ 300 │ 301 │ +1 │ 2.1x │ 11/1 │", (11, 1)),
])
def test_screens_matched_reads_both_numbers(row, expected):
    assert screens_matched(row, "fixed sleep 0.3 s") == expected


def test_perf_web_compares_settling_with_a_fixed_sleep(capsys):
    perf_web.main(["--task", "click-checkboxes", "--seed", "2", "--repeats", "1",
                   "--sleeps", "0.3"])
    out = capsys.readouterr().out
    assert "settle detection (ours)" in out and "fixed sleep 0.3 s" in out
    assert re.search(r"median overhead of ours: \d+ ms per step \((meets|misses)", out)
    # the same actions solve the task in both modes, and every screen matches
    assert re.search(r"fixed sleep 0\.3 s.*\+1", out)
    equal, compared = screens_matched(out, "fixed sleep 0.3 s")
    assert compared > 0 and equal == compared
