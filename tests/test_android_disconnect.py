"""A device lost mid-episode: the episode is recorded as an error, the run goes on, and
the environment picks the device up again once it is back."""

from __future__ import annotations

import pytest
from conftest_engine import run_episode

from actions.contracts import EnvironmentCrashed
from benchmarks.android import AndroidSuite
from benchmarks.android.virtual_device import VirtualDeviceProcess
from tests.conftest_android import *  # noqa: F401,F403
from tests.conftest_android import adb_cli


class KillAfter:
    """Expert policy that kills the device (power loss) before its `n`-th action."""

    def __init__(self, policy, device: VirtualDeviceProcess, n: int) -> None:
        self.policy, self.device, self.n, self.calls = policy, device, n, 0
        self.name = "kill-after"

    def act(self, states):
        self.calls += 1
        if self.calls == self.n:
            self.device.kill()
        return self.policy.act(states)

    def close(self) -> None:
        self.policy.close()


@pytest.mark.slow
def test_device_lost_mid_episode_is_an_error_and_the_run_goes_on(adb_port):
    device = VirtualDeviceProcess()
    replacement = None
    suite = AndroidSuite(serial=device.address, adb_port=adb_port, reconnect_timeout_s=2.0)
    env = suite.make_environment()
    try:
        expert = suite.make_expert(env)
        task = suite.make_task("ContactsAddContact", seed=5)
        lost = run_episode(env, KillAfter(expert, device, n=3), task, platform="mobile")
        assert lost.terminated_by == "error" and not lost.success
        assert lost.error.startswith("EnvironmentCrashed")
        assert device.address in lost.error and "reconnect failed" in lost.error
        assert lost.steps == 3

        # While the device is gone, a new episode fails at reset, again as an error.
        gone = run_episode(env, expert, suite.make_task("TasksAddTask", seed=1),
                           platform="mobile")
        assert gone.terminated_by == "error" and "not available" in gone.error

        # The phone comes back on the same address: the next reset reconnects.
        replacement = VirtualDeviceProcess(port=device.port)
        back = run_episode(env, expert, suite.make_task("TasksAddTask", seed=1),
                           platform="mobile")
        assert back.success, back
        assert f"{device.address}\tdevice" in adb_cli(adb_port, "devices")
    finally:
        env.close()
        device.stop()
        if replacement is not None:
            replacement.stop()


def test_lost_device_raises_environment_crashed_from_step(adb_port):
    from actions.models import Wait
    from environments.android import AndroidEnvironment
    from tests.conftest_android import android_task

    with VirtualDeviceProcess() as device:
        env = AndroidEnvironment(serial=device.address, adb_port=adb_port,
                                 reconnect_timeout_s=1.0)
        env.reset(android_task())
        device.kill()
        with pytest.raises(EnvironmentCrashed, match="lost during"):
            env.step(Wait(seconds=0))
