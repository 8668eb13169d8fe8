"""The Ray backend on a local Ray (`ray.init()` on this machine): the same eval as the
process backend gives identical results for the oracle; a killed actor is replaced."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from conftest_loop import CLICK, ScriptedPolicy, out
from conftest_workers import WorkerSuite, signature
from rich.console import Console

from agent.config import RunConfig
from agent.engine.episode import EpisodeSpec, LoopOptions, run_blocking
from agent.engine.hosts import HostPool
from agent.engine.policy_service import make_policy_service
from agent.engine.workers import EnvironmentFactory, WorkerHost, run_on_worker_hosts
from agent.runner import run_suite
from trajectories.store import RunDir, RunWriter

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
MINIWOB_TASKS = ["click-button", "click-test", "enter-text"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module; its workers can import the test helpers."""
    import ray

    path = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=150)


def _actions(run) -> dict[str, list]:
    reader = RunDir(run)
    return {r.episode_id: [[a.model_dump() for a in s.output.actions]
                           for s in reader.steps(r.episode_id)] for r in reader.results()}


def test_ray_backend_matches_process_backend_on_miniwob(tmp_path, local_ray):

    process = run_suite(RunConfig(
        suite="miniwob", policy="oracle", tasks=MINIWOB_TASKS, episodes_per_task=2, seed=3,
        engine={"workers": 2}, output={"out_dir": tmp_path / "process"},
    ), console=_quiet())
    ray_run = run_suite(RunConfig(
        suite="miniwob", policy="oracle", tasks=MINIWOB_TASKS, episodes_per_task=2, seed=3,
        engine={"workers": 2, "backend": "ray", "options": {"actor_options": {"num_cpus": 1}}},
        output={"out_dir": tmp_path / "ray"},
    ), console=_quiet())
    assert all(r.success for r in process.results) and len(process.results) == 6
    assert signature(ray_run.results) == signature(process.results)
    assert _actions(tmp_path / "ray") == _actions(tmp_path / "process")
    reader = RunDir(tmp_path / "ray")
    for result in reader.results():
        for step in reader.steps(result.episode_id):
            assert reader.screenshot_path(step.observation.screenshot_sha256).exists()
    assert local_ray.is_initialized()  # an existing Ray is joined, not shut down


class _KillsAnActor(ScriptedPolicy):
    """Clicks; on its 2nd call kills the actor of worker 0 (mid-episode)."""

    workers: list = []

    def act(self, states):
        outputs = super().act(states)
        if len(self.batches) == 2:
            import ray

            ray.kill(self.workers[0].actor, no_restart=True)
        return outputs


def test_killed_actor_ends_its_episode_and_is_replaced(tmp_path, local_ray):
    from agent.engine.ray_host import RaySession

    suite = WorkerSuite()
    session = RaySession()
    workers = session.start_workers(2, EnvironmentFactory(suite.make_environment))
    policy = _KillsAnActor([out(CLICK)], name="model")
    policy.workers = workers
    writer = RunWriter(tmp_path / "run", {"test": True})
    specs = [EpisodeSpec(task=suite.make_task("long-3", seed), episode_id=f"e{seed}",
                         recorder=writer.start_episode(f"e{seed}")) for seed in range(4)]
    hosts = [WorkerHost(worker, tmp_path / "run" / "screenshots") for worker in workers]

    async def main():
        service = make_policy_service(policy)
        try:
            return await run_on_worker_hosts(HostPool.of(list(hosts)), hosts, service, specs,
                                             options=LoopOptions())
        finally:
            await service.close()

    try:
        report = run_blocking(main)
    finally:
        for worker in workers:
            worker.close()
        session.close()
    results = {r.episode_id: r for r in writer.finished_results()}
    assert len(results) == 4
    errors = [r for r in results.values() if r.error]
    assert len(errors) == 1 and errors[0].error.startswith("WorkerDied: Ray actor 0")
    assert sum(r.success for r in results.values()) == 3
    assert report.workers[0].restarts == 1
