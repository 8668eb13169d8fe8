"""The environment service (`cua serve-env`) on loopback: auth, bad requests, a killed
browser, reclaimed leases, and real MiniWoB episodes through it.

These prove our plumbing against the real environments (Chromium via Playwright): the
service is the real FastAPI app under uvicorn, the client speaks real HTTP; no stand-ins
except the hung environment (a scripted stand-in whose step blocks until the test
releases it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from actions.contracts import Environment
from actions.models import Click
from agent.service.client import (
    EnvServiceClient,
    EnvServiceError,
    RemoteEnvironment,
    RemoteEnvironmentCrashed,
)
from agent.service.protocol import ErrorCode, ResetRequest
from benchmarks.miniwob import MiniWoBSuite
from tests.conftest_env_service import TOKEN, running_service
from tests.conftest_loop import ScriptedEnv, wait_for
from tests.conftest_miniwob import miniwob_env, miniwob_suite, run_oracle  # noqa: F401

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _code(response: httpx.Response) -> str:
    return response.json()["error"]


def test_health_is_open_and_every_other_route_needs_the_token():
    with running_service(max_envs=2) as (url, app):
        health = httpx.get(f"{url}/health").json()
        assert (health["suite"], health["platform"], health["max_envs"]) == ("miniwob", "web", 2)
        assert health["environments"] == []  # built on demand, not at start
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                        {"Authorization": TOKEN}):
            response = httpx.post(f"{url}/leases", headers=headers)
            assert response.status_code == 401 and _code(response) == ErrorCode.UNAUTHORIZED
            assert "Bearer" in response.json()["detail"]
        assert httpx.post(f"{url}/leases/x/evaluate").status_code == 401
        assert app.state.pool.slots == []  # refused requests started nothing


def test_bad_requests_get_clear_errors_and_lose_nothing():
    with running_service(max_envs=1, max_request_bytes=4096) as (url, _), \
            httpx.Client(base_url=url, headers=AUTH, timeout=120) as http:
        assert _code(http.post("/leases/nope/step", json={"type": "wait"})) == \
            ErrorCode.UNKNOWN_LEASE
        lease = http.post("/leases")
        assert lease.status_code == 201
        path = f"/leases/{lease.json()['lease_id']}"
        assert _code(http.post("/leases")) == ErrorCode.NO_CAPACITY  # max_envs=1
        # Step before any reset.
        response = http.post(f"{path}/step", json={"type": "wait", "seconds": 0.1})
        assert response.status_code == 409 and _code(response) == ErrorCode.NOT_RESET
        # Bodies that do not validate.
        for body, needle in ((b"{not json", "reset request"),
                             (b'{"task_id": "click-test", "config": {"x": 1}}', "config"),
                             (b'{"task_id": "click-test", "seed": "three"}', "seed")):
            response = http.post(f"{path}/reset", content=body)
            assert response.status_code == 422 and _code(response) == ErrorCode.BAD_REQUEST
            assert needle in response.json()["detail"]
        response = http.post(f"{path}/reset", json={"task_id": "no-such-task"})
        assert response.status_code == 404 and _code(response) == ErrorCode.UNKNOWN_TASK
        assert "click-test" in response.json()["detail"]  # names the suite's tasks
        # A body above the limit is refused before it is read.
        response = http.post(f"{path}/reset", content=b"x" * 5000)
        assert response.status_code == 413 and _code(response) == ErrorCode.TOO_LARGE
        # The lease still works after all of that.
        reset = http.post(f"{path}/reset", json={"task_id": "click-test", "seed": 1})
        assert reset.status_code == 200, reset.text
        assert reset.json()["task"]["task_id"] == "click-test"
        for action, needle in (({"type": "teleport"}, "teleport"),
                               ({"type": "click", "x": "left"}, "x")):
            response = http.post(f"{path}/step", json=action)
            assert response.status_code == 422 and needle in response.json()["detail"]
        png = http.get(f"{path}/screenshot")
        assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
        assert http.delete(path).status_code == 204
        assert "closed by its client" in http.post(f"{path}/evaluate").json()["detail"]


@pytest.mark.slow
def test_a_real_miniwob_episode_through_the_service_matches_in_process(
        miniwob_env, miniwob_suite):  # noqa: F811
    """Parity with in-process: the oracle solves the task locally; replaying its actions
    through the service's environment with the same seed gives the same reward."""
    task = miniwob_suite.make_task("click-button", 5)
    reward, steps = run_oracle(miniwob_env, miniwob_suite.make_expert(miniwob_env), task)
    assert reward > 0
    with running_service(max_envs=1) as (url, _):
        remote = RemoteEnvironment(url, TOKEN)
        try:
            assert isinstance(remote, Environment)
            first = remote.reset(task)
            assert first.instruction and first.screenshot_png[:4] == b"\x89PNG"
            assert first.screen_size == miniwob_env.screen_size
            assert remote.task == task
            for output, _local in steps:
                observation = remote.step(output.actions[0])
            assert observation.done
            assert remote.evaluate() == reward
            health = remote.health()
            assert health.environments[0].episodes == 1 and health.leases == 1
        finally:
            remote.close()


def test_a_killed_browser_is_reported_and_the_environment_comes_back():
    with running_service(max_envs=1) as (url, app):
        remote = RemoteEnvironment(url, TOKEN)
        try:
            remote.reset(ResetRequest(task_id="click-test", seed=0))
            env = app.state.pool.slots[0].env
            os.kill(env.browser_pid, signal.SIGKILL)
            with pytest.raises(RemoteEnvironmentCrashed) as crashed:
                remote.step(Click(x=10, y=10))
            assert crashed.value.code == ErrorCode.ENVIRONMENT_CRASHED
            assert "browser" in str(crashed.value)
            with pytest.raises(EnvServiceError) as not_reset:  # the episode is over
                remote.step(Click(x=10, y=10))
            assert not_reset.value.code == ErrorCode.NOT_RESET
            status = remote.health().environments[0]
            assert status.crashes == 1 and "browser" in (status.last_error or "")
            observation = remote.reset(ResetRequest(task_id="click-test", seed=0))
            assert observation.instruction
            assert remote.step(Click(x=10, y=10)).screenshot_png[:4] == b"\x89PNG"
            assert env.browser_pid is not None and app.state.pool.slots[0].env is env
        finally:
            remote.close()


def test_an_idle_lease_is_reclaimed_and_a_client_leases_again():
    with running_service(max_envs=1, idle_timeout_s=2.0) as (url, app):
        remote = RemoteEnvironment(url, TOKEN)
        try:
            remote.reset(ResetRequest(task_id="click-test", seed=0))
            wait_for(lambda: remote.health().reclaimed_leases == 1, 30, "the idle lease to go")
            with pytest.raises(RemoteEnvironmentCrashed) as lost:
                remote.step(Click(x=10, y=10))
            assert lost.value.code == ErrorCode.UNKNOWN_LEASE and lost.value.lease_lost
            assert "reclaimed after 2 s" in str(lost.value)
            # The freed environment is leased again (no new browser) by the next reset.
            assert remote.reset(ResetRequest(task_id="click-test", seed=1)).instruction
            assert len(app.state.pool.slots) == 1 and remote.health().leases == 1
        finally:
            remote.close()


class _HangingSuite(MiniWoBSuite):
    """MiniWoB's tasks on a scripted stand-in environment whose step() blocks until
    `release` is set (a real hang cannot be produced on demand)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def make_environment(self, **options):
        env = ScriptedEnv()
        original_step = env.step

        def step(action):
            self.release.wait(60)
            return original_step(action)

        env.step = step
        return env


def test_a_hung_environment_is_replaced_and_its_lease_ended():
    release = threading.Event()

    async def scenario(url: str) -> None:
        async with EnvServiceClient(url, TOKEN) as client:
            env = await client.lease()
            await env.reset(ResetRequest(task_id="click-test"))
            with pytest.raises(RemoteEnvironmentCrashed) as hung:
                await env.step(Click(x=10, y=10))
            assert hung.value.code == ErrorCode.ENVIRONMENT_HUNG and hung.value.lease_lost
            health = await client.health()
            assert health.environments == [] and health.leases == 0  # the hung one is gone
            release.set()
            again = await client.lease()  # a fresh environment
            assert (await again.reset(ResetRequest(task_id="click-test"))).instruction
            await again.close()

    try:
        with running_service(suite=_HangingSuite(release), max_envs=1,
                             call_timeout_s=1.0) as (url, _):
            # A thread of its own: the session's sync Playwright holds this thread's loop.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, scenario(url)).result()
    finally:
        release.set()


def test_cua_serve_env_serves_with_the_token_from_the_environment(tmp_path):
    """The command as a user runs it: a separate process, the token from $CUA_ENV_TOKEN."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    cua = str(Path(sys.executable).parent / "cua")
    with socket.socket() as probe:  # a free port from the OS, released for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CUA_ENV_TOKEN": TOKEN}
    unknown = subprocess.run([cua, "serve-env", "--suite", "nope"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "miniwob" in unknown.stderr
    server = subprocess.Popen([cua, "serve-env", "--suite", "miniwob", "--port", str(port), "--max-envs", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()
                return False

        wait_for(healthy, 60, "cua serve-env to answer /health")
        assert httpx.post(f"http://127.0.0.1:{port}/leases").status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def test_the_engine_runs_episodes_on_remote_hosts_and_leases_again_after_a_lost_lease():
    """The episode engine (agent.engine.episode) on RemoteHosts (agent.service.remote_host): episodes run
    on the service's environments (a scripted suite: the engine is under test, not the
    browser), a crashed environment ends only its episode, and a lease the service ended
    kills the host for that episode; the pool leases again for the next one."""
    from agent.engine.episode import EpisodeSpec, LoopOptions, run_engine
    from agent.engine.hosts import HostPool
    from agent.engine.policy_service import ConcurrentPolicy
    from agent.service.client import EnvServiceClient
    from agent.service.remote_host import RemoteHost
    from tests.conftest_loop import CLICK, ScriptedPolicy, ScriptedSuite, out

    suite = ScriptedSuite()

    def spec(task_id: str, seed: int = 0) -> EpisodeSpec:
        return EpisodeSpec(suite.make_task(task_id, seed), f"{task_id}-{seed}")

    async def main(url: str):
        hosts = [await RemoteHost.start(i, EnvServiceClient(url, TOKEN)) for i in range(2)]
        service = ConcurrentPolicy(ScriptedPolicy([out(CLICK)]))
        try:
            first = await run_engine(HostPool.of(hosts), service,
                                     [spec("a"), spec("long-3"), spec("crash"), spec("b")],
                                     options=LoopOptions())
            async with httpx.AsyncClient(headers=AUTH) as http:  # the service ends a lease
                await http.delete(f"{url}/leases/{hosts[0].env.info.lease_id}")
            second = await run_engine(HostPool.of(hosts[:1]), service,
                                      [spec("a", 1), spec("b", 1)], options=LoopOptions())
            return first, second, hosts[0].alive
        finally:
            await service.close()
            await asyncio.gather(*(h.close() for h in hosts))
            await asyncio.gather(*(h.client.aclose() for h in hosts))

    with running_service(suite_name="unit", suite=suite, max_envs=2) as (url, app), \
            ThreadPoolExecutor(1) as pool:
        first, second, alive = pool.submit(asyncio.run, main(url)).result()
        assert app.state.pool.leases == {}  # every host gave its lease back

    results = {r.episode_id: r for r in first.results}
    assert [r.reward for r in (results["a-0"], results["long-3-0"], results["b-0"])] == [1.0] * 3
    assert sum(len(env.resets) for env in suite.environments) == 5  # the lost one never reset
    assert results["crash-0"].terminated_by == "error"
    assert "EnvironmentCrashed" in results["crash-0"].error
    lost, after = second.results
    assert lost.terminated_by == "error" and "unknown_lease" in lost.error
    assert "closed by its client" in lost.error
    assert after.error is None and after.reward == 1.0 and alive
