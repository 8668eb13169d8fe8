"""The engine tells an environment with a `notify_output(step_index, raw_text)` hook of
every policy output before its actions, those without actions included, on every host
kind: a thread in this process, a worker process (Ray's actors run the same WorkerCore),
and a leased environment of the service over HTTP. OSWorld's result writer relies on it
(traj.jsonl's step_num and response, as lib_run_single.py writes them)."""

from __future__ import annotations

import io
import json

import pytest
from conftest_loop import CLICK, TERMINATE, ScriptedPolicy, out
from conftest_workers import HearingSuite
from rich.console import Console

from agent.config import RunConfig
from agent.runner import run_suite
from tests.conftest_env_service import TOKEN, running_service
from trajectories.store import RunDir

SCRIPT = [out(errors=["no tool call"], raw="garbage"), out(CLICK, raw="click it"),
          out(TERMINATE, raw="all done")]


@pytest.mark.parametrize("backend", ["thread", "process", "remote"])
def test_every_policy_output_reaches_the_environment_before_its_actions(tmp_path, backend):
    suite = HearingSuite(str(tmp_path))
    engine: dict = {} if backend == "thread" else {"workers": 1}

    def run() -> None:
        run_suite(RunConfig(suite=suite.name, policy="scripted", tasks=["long-3"],
                            episodes_per_task=1, seed=0, engine=engine,
                            output={"out_dir": tmp_path / "run"}),
                  suite=suite, policy=ScriptedPolicy(SCRIPT), console=Console(file=io.StringIO()))

    if backend == "remote":
        with running_service(suite=suite, max_envs=1) as (url, _app):
            engine.update(backend="remote", options={"url": url, "token": TOKEN})
            run()
    else:
        run()
    heard = [json.loads(line) for line in (tmp_path / "heard.jsonl").read_text().splitlines()]
    assert heard == [["long-3", 0, "garbage"], ["long-3", 1, "click it"],
                     ["long-3", 2, "all done"]]
    (result,) = RunDir(tmp_path / "run").results()
    assert (result.steps, result.terminated_by, result.parse_errors) == (3, "terminate", 1)
