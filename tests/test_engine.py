"""The asynchronous episode engine (agent.engine.episode, agent.engine.policy_service): ordering, batching,
faults, fatal errors, groups and resume after SIGKILL. Plumbing tests against our scripted
environments and policies (conftest_loop); the real-environment runs are in test_cli_e2e,
test_workers and test_faults."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest_loop import (
    CLICK,
    TERMINATE,
    ScriptedEnv,
    ScriptedPolicy,
    ScriptedSuite,
    count_lines,
    out,
    task,
    wait_for,
)
from rich.console import Console

from actions.contracts import PolicyOutput
from agent.config import RunConfig
from agent.engine.episode import EpisodeSpec, LoopOptions, run_engine
from agent.engine.hosts import HostDied, HostPool, ThreadHost
from agent.engine.policy_service import BatchingPolicy, ConcurrentPolicy, ExpertPolicy
from agent.runner import RunAborted, run_suite
from trajectories.store import RunDir

GATE_TIMEOUT_S = 30.0


class _GatedEnv(ScriptedEnv):
    """Steps of task 'slow' wait (with a deadline) until `gate` is set."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def step(self, action):
        if self.resets and self.resets[-1].task_id == "slow":
            if not self.gate.wait(GATE_TIMEOUT_S):
                raise TimeoutError("gate never opened: episodes were not independent")
        return super().step(action)


def _run(hosts, service, specs, **kw):
    async def main():
        try:
            return await run_engine(HostPool.of(hosts), service, specs,
                                    options=kw.pop("options", LoopOptions()), **kw)
        finally:
            await service.close()
            await asyncio.gather(*(h.close() for h in hosts))
    return asyncio.run(main())


def _hosts(envs):
    async def start():
        return [await ThreadHost.start(i, lambda env=env: env) for i, env in enumerate(envs)]
    return asyncio.run(start())


def test_a_slow_environment_holds_only_its_own_episode():
    gate = threading.Event()
    envs = [_GatedEnv(gate), _GatedEnv(gate)]
    specs = [EpisodeSpec(task("slow", max_steps=1), "slow")] + [
        EpisodeSpec(task(f"t{i}", max_steps=2), f"t{i}") for i in range(3)]
    finished: list[str] = []

    def on_result(result):
        finished.append(result.episode_id)
        if len(finished) == 3:  # the other three ran while 'slow' was stuck in its step
            gate.set()

    report = asyncio.run(_run_async_in_thread(envs, specs, on_result))
    assert finished == ["t0", "t1", "t2", "slow"]
    assert [r.episode_id for r in report.results] == ["slow", "t0", "t1", "t2"]
    assert all(r.error is None for r in report.results)
    assert report.steps == 1 + 3 * 2


async def _run_async_in_thread(envs, specs, on_result):
    hosts = [await ThreadHost.start(i, lambda env=env: env) for i, env in enumerate(envs)]
    service = BatchingPolicy(ScriptedPolicy([out(CLICK)]), max_wait_s=0.0)
    try:
        return await run_engine(HostPool.of(hosts), service, specs, options=LoopOptions(),
                                on_result=on_result)
    finally:
        await service.close()
        await asyncio.gather(*(h.close() for h in hosts))


def test_episodes_start_in_plan_order_and_batches_respect_max_batch():
    envs = [ScriptedEnv() for _ in range(4)]
    policy = ScriptedPolicy([out(CLICK), out(TERMINATE)])
    started: list[str] = []
    specs = [EpisodeSpec(task(f"t{i}"), f"t{i}") for i in range(8)]
    report = _run(_hosts(envs), BatchingPolicy(policy, max_batch=3, max_wait_s=5.0), specs,
                  on_start=lambda spec, host: started.append(spec.episode_id))
    assert started == [f"t{i}" for i in range(8)]
    assert [r.terminated_by for r in report.results] == ["terminate"] * 8
    sizes = [len(b) for b in policy.batches]
    assert max(sizes) == 3 and sum(sizes) == 16
    # Everything waiting was batched: never a batch of 1 while others could join.
    assert sizes[0] == 3


def test_closing_the_batcher_while_it_is_woken_does_not_hang():
    """The engine's shutdown: an episode's request is cancelled while the batcher waits for
    others to join, `episodes_active` wakes the batcher and `close()` cancels it in the
    same loop iteration. Python 3.11's asyncio.wait_for swallowed that cancellation (its
    inner wait had just finished), the batcher looped on and close() never returned; a CI
    run hung in test_a_fatal_error_stops_the_run... on it. Deterministic: the set() and the
    cancel() happen back to back on the loop's thread."""

    async def main():
        service = BatchingPolicy(ScriptedPolicy([out(CLICK)]), max_wait_s=30.0)
        service.episodes_active(2)
        request = asyncio.create_task(service.act(None, None))  # never dispatched
        while not service._pending or service._wake.is_set():  # the batcher waits (30 s)
            await asyncio.sleep(0)
        request.cancel()
        service.episodes_active(1)  # wakes the batcher ...
        async with asyncio.timeout(10):
            await service.close()  # ... and cancels it in the same iteration
        return request

    request = asyncio.run(main())
    assert request.cancelled()


def test_policy_failure_ends_only_the_episodes_of_that_batch():
    policy = ScriptedPolicy([out(CLICK), out(TERMINATE)], raise_on_call=(2, ValueError("bad")))
    specs = [EpisodeSpec(task(n), n) for n in ("a", "b", "c")]
    report = _run(_hosts([ScriptedEnv(), ScriptedEnv()]),
                  BatchingPolicy(policy, max_wait_s=5.0), specs)
    assert [r.terminated_by for r in report.results] == ["error", "error", "terminate"]
    assert report.results[0].error == "ValueError: bad"


class _DyingHost(ThreadHost):
    """A host whose 'worker' dies during the step of task 'die' (alive turns False)."""

    restarts = 0
    _alive = True

    @property
    def alive(self):
        return self._alive

    async def step(self, action):
        if self.env.resets[-1].task_id == "die":
            self._alive = False
            raise HostDied("worker 0 (pid 1) died during step (signal 9)")
        return await super().step(action)

    async def restart(self):
        self.restarts += 1
        self._alive = True


def test_a_dead_host_ends_its_episode_and_is_restarted_for_the_next():
    env = ScriptedEnv()

    async def main():
        thread = await ThreadHost.start(0, lambda: env)
        host = _DyingHost(0, env=env, executor=thread.executor)
        service = BatchingPolicy(ScriptedPolicy([out(TERMINATE)]))
        try:
            report = await run_engine(HostPool.of([host]), service,
                                      [EpisodeSpec(task("die"), "die"),
                                       EpisodeSpec(task("ok"), "ok")], options=LoopOptions())
        finally:
            await service.close()
            await host.close()
        return report, host

    report, host = asyncio.run(main())
    assert report.results[0].error.startswith("HostDied: worker 0")
    assert report.results[1].error is None and report.results[1].success
    assert host.restarts == 1


def test_a_fatal_error_stops_the_run_and_leaves_the_rest_without_results(tmp_path):
    suite = ScriptedSuite(tasks=("crash",))
    with pytest.raises(RunAborted):
        run_suite(RunConfig(
            suite=suite.name, policy="scripted", tasks=["crash"], episodes_per_task=6, seed=0,
            engine={"num_envs": 2, "max_consecutive_errors": 2},
            output={"out_dir": tmp_path / "run"},
        ), suite=suite, policy=ScriptedPolicy([out(CLICK)]), console=Console(file=io.StringIO()))
    lines = count_lines(tmp_path / "run" / "results.jsonl")
    assert 2 <= lines < 6


def test_samples_form_groups_with_one_result_each_and_concurrent_calls(tmp_path):
    suite = ScriptedSuite(tasks=("a", "long-3"))
    summary = run_suite(RunConfig(
        suite=suite.name, policy="scripted", tasks=["a", "long-3"], episodes_per_task=2, seed=0,
        samples_per_seed=3, engine={"num_envs": 3, "options": {"policy_calls": "concurrent"}},
        output={"out_dir": tmp_path / "run"},
    ), suite=suite, policy=ScriptedPolicy([out(CLICK)]), console=Console(file=io.StringIO()))
    assert summary.complete and summary.ran == 12
    groups: dict[tuple[str, int], list[int]] = {}
    for r in summary.results:
        groups.setdefault((r.task_id, r.seed), []).append(r.sample)
    assert {k: sorted(v) for k, v in groups.items()} == {
        (t, s): [0, 1, 2] for t in ("a", "long-3") for s in (0, 1)}
    assert all(r.success for r in summary.results)
    assert len({r.episode_id for r in summary.results}) == 12


def test_experts_answer_through_their_own_host():
    async def main():
        hosts = [await ThreadHost.start(i, ScriptedEnv, _EnvReadingExpert) for i in range(2)]
        service = ExpertPolicy("oracle")
        specs = [EpisodeSpec(task(f"t{i}"), f"t{i}") for i in range(4)]
        try:
            return await run_engine(HostPool.of(hosts), service, specs, options=LoopOptions())
        finally:
            await asyncio.gather(*(h.close() for h in hosts))

    report = asyncio.run(main())
    assert all(r.terminated_by == "terminate" for r in report.results)


class _EnvReadingExpert:
    name = "oracle"

    def __init__(self, env):
        self.env = env
        self.thread = None

    def act(self, states):
        # It reads the environment it was built with, on the environment's thread.
        assert self.env.resets, "the expert reads its own environment, which was reset"
        if self.thread is None:
            self.thread = threading.get_ident()
        assert self.thread == threading.get_ident()
        return [out(TERMINATE)]

    def close(self):
        return None


def test_concurrent_policy_sends_requests_at_once():
    entered = threading.Barrier(3, timeout=GATE_TIMEOUT_S)

    class _Server:
        name = "server"

        def act(self, states):
            entered.wait()  # all three requests are in flight together, or this times out
            return [PolicyOutput(raw_text="", actions=[TERMINATE])]

        def close(self):
            return None

    specs = [EpisodeSpec(task(f"t{i}"), f"t{i}") for i in range(3)]
    report = _run(_hosts([ScriptedEnv() for _ in range(3)]),
                  ConcurrentPolicy(_Server(), max_concurrency=3), specs)
    assert [r.terminated_by for r in report.results] == ["terminate"] * 3


def test_concurrent_policy_awaits_act_async_on_the_engine_loop_within_its_cap():
    """A policy with act_async (the openai SDK client) is awaited, not run on threads;
    at most max_concurrency of its calls are in flight."""
    in_flight, most = 0, 0
    two_in_flight: list[asyncio.Event] = []

    class _AsyncServer:
        name = "async-server"

        def act(self, states):
            raise AssertionError("the engine must await act_async, not call act on a thread")

        async def act_async(self, state):
            nonlocal in_flight, most
            assert threading.current_thread() is threading.main_thread()
            if not two_in_flight:
                two_in_flight.append(asyncio.Event())
            in_flight += 1
            most = max(most, in_flight)
            if in_flight == 2:
                two_in_flight[0].set()
            # the first two requests are in flight together, or this times out
            await asyncio.wait_for(two_in_flight[0].wait(), GATE_TIMEOUT_S)
            await asyncio.sleep(0)  # let more requests start, if the cap allowed them
            in_flight -= 1
            return PolicyOutput(raw_text="", actions=[TERMINATE])

        def close(self):
            return None

    specs = [EpisodeSpec(task(f"t{i}"), f"t{i}") for i in range(4)]
    service = ConcurrentPolicy(_AsyncServer(), max_concurrency=2)
    report = _run(_hosts([ScriptedEnv() for _ in range(4)]), service, specs)
    assert [r.terminated_by for r in report.results] == ["terminate"] * 4
    assert most == 2 and service.batch_sizes == [1] * 4


RESUME_SCRIPT = """
import io, sys
from conftest_workers import WorkerSuite
from conftest_loop import ScriptedPolicy, out, CLICK
from rich.console import Console
from agent.config import RunConfig
from agent.runner import run_suite
config = RunConfig(suite="unit", policy="scripted", tasks=["a", "gate", "long-3"],
                   episodes_per_task=3, env_options={"gate_dir": sys.argv[2]},
                   engine={"num_envs": 3}, output={"out_dir": sys.argv[1]})
run_suite(config, suite=WorkerSuite(), policy=ScriptedPolicy([out(CLICK)]),
          console=Console(file=io.StringIO()))
"""


@pytest.mark.slow
def test_resume_after_sigkill_has_exactly_one_result_per_episode(tmp_path):
    run, gate = tmp_path / "run", tmp_path / "gate"
    gate.mkdir()
    tests_dir = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tests_dir), str(tests_dir.parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", RESUME_SCRIPT, str(run), str(gate)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The gate episodes block their environments; the others finish meanwhile.
        wait_for(lambda: (count_lines(run / "results.jsonl") >= 3
                          and any(gate.glob("pid-*"))) or proc.poll() is not None,
                 120, "3 results and a gated episode")
        assert proc.poll() is None, proc.communicate()[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = count_lines(run / "results.jsonl")
    assert 3 <= before < 9
    (gate / "release").write_text("go")
    resumed = subprocess.run(command, env=env, capture_output=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    results = RunDir(run).results()
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys)) == 9
    assert all(r.error is None for r in results)


def test_outputs_cut_by_the_budget_are_counted_in_the_results_and_the_summary(tmp_path):
    """Issue 11: the results say when the generation budget cut an output (finish_reason
    'length', as both policies report it), per episode and in the run's summary line."""
    from agent.runner import print_summary
    from trajectories.store import RunDir

    cut = out(CLICK).model_copy(update={"finish_reason": "length"})
    whole = out(CLICK).model_copy(update={"finish_reason": "stop"})
    suite = ScriptedSuite(tasks=("long-3", "a"))
    console = Console(file=io.StringIO(), width=200)
    summary = run_suite(RunConfig(
        suite=suite.name, policy="scripted", tasks=["long-3"], episodes_per_task=1, seed=0,
        output={"out_dir": tmp_path / "run"},
    ), suite=suite, policy=ScriptedPolicy([cut, whole, cut]), console=console)
    summary_b = run_suite(RunConfig(
        suite=suite.name, policy="scripted", tasks=["a"], episodes_per_task=1, seed=0,
        output={"out_dir": tmp_path / "run-b"},
    ), suite=suite, policy=ScriptedPolicy([whole]), console=Console(file=io.StringIO()))
    assert [r.cut_outputs for r in summary.results] == [2]
    assert [r.cut_outputs for r in summary_b.results] == [0]
    assert RunDir(tmp_path / "run").results()[0].cut_outputs == 2  # in results.jsonl
    print_summary(summary, console)
    printed = console.file.getvalue()
    assert "2 model outputs in 1 episodes were cut by the generation budget" in printed
    quiet = Console(file=io.StringIO(), width=200)
    print_summary(summary_b, quiet)
    assert "cut by the generation budget" not in quiet.file.getvalue()


class _AnswersPrompts:
    """A policy that answers prebuilt prompts (a grounding profile's) and counts its calls."""

    name = "answers"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def act(self, states):
        raise AssertionError("prebuilt prompts go to answer(), not act()")

    def answer(self, prompts):
        self.calls.append(list(prompts))
        return [PolicyOutput(raw_text=f"to {p}") for p in prompts]


def test_prebuilt_prompts_go_through_the_policy_service_batched_or_concurrent():
    """The grounding runner's single step: one batched call in-process, one request per
    prompt for a served model — the services episode steps use; outputs keep their order."""
    from agent.engine.policy_service import BatchingPolicy, ConcurrentPolicy, PolicyClient

    local = _AnswersPrompts()
    client = PolicyClient(local)
    try:
        assert isinstance(client.service, BatchingPolicy)
        assert [o.raw_text for o in client.answer(["a", "b", "c"])] == ["to a", "to b", "to c"]
        assert local.calls == [["a", "b", "c"]] and client.service.batch_sizes == [3]
    finally:
        client.close()
    served = _AnswersPrompts()
    client = PolicyClient(served, calls="concurrent")
    try:
        assert isinstance(client.service, ConcurrentPolicy)
        assert [o.raw_text for o in client.answer(["a", "b"])] == ["to a", "to b"]
        assert sorted(served.calls) == [["a"], ["b"]]
    finally:
        client.close()
