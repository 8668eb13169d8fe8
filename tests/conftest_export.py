"""Recorded runs for the export / training / evolve tests, made by the real runner on
real MiniWoB pages in Chromium: the scripted oracle (expert demonstrations) and the tiny
Qwen3-VL (model outputs with token ids and logprobs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import RunConfig
from agent.runner import run_suite


@pytest.fixture(scope="session")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Oracle on click-test and click-button, seeds 0-1, two samples per seed (so every
    (screenshot, action) step appears twice): 8 one-step successful episodes."""
    out = tmp_path_factory.mktemp("oracle-run") / "run"
    summary = run_suite(RunConfig(
        suite="miniwob", policy="oracle", tasks=["click-test", "click-button"], episodes_per_task=2,
        seed=0, samples_per_seed=2, limits={"max_steps": 1},
        output={"out_dir": out, "fsync": False},
    ), show_progress=False)
    assert summary.complete and all(r.success for r in summary.results)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny Qwen3-VL (random weights) on click-test seed 0, two samples, two steps
    each: its outputs do not parse, so the second step replays the first as history."""
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    summary = run_suite(RunConfig(
        suite="miniwob", policy="qwen3vl", tasks=["click-test"], episodes_per_task=1, seed=0,
        samples_per_seed=2,
        policy_options={"model": str(tiny_model_dir), "device": "cpu", "max_new_tokens": 8, "temperature": 1.0, "seed": 0},
        limits={"max_steps": 2}, output={"out_dir": out, "fsync": False},
    ), show_progress=False)
    assert summary.complete
    return out
