"""The AndroidWorld adapter against a stand-in: a recording AsyncEnv (AndroidWorld's
AsyncEnv methods) and a recording device controller; android_world itself is not
installed here. These tests prove plumbing; the gesture semantics they rely on are
checked against AndroidWorld's actuation.py facts in tests/test_actions_exporters.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from actions.contracts import PolicyOutput
from actions.exporters import AdbSwipe
from actions.models import (
    Answer,
    Click,
    LongPress,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    Type,
    Wait,
)
from benchmarks.android_world_adapter import (
    HAVE_ANDROID_WORLD,
    JSONActionRecord,
    QwenCuaAgent,
    describe_ui_elements,
    make_json_action,
)


class RecordingAsyncEnv:
    """AndroidWorld's AsyncEnv surface: records executed actions like its actuation would
    see them, and keeps `interaction_cache` the way AsyncAndroidEnv does for answers."""

    logical_screen_size = (1080, 2400)

    def __init__(self) -> None:
        self.executed: list = []
        self.interaction_cache = ""
        self.resets: list[bool] = []
        self.stabilize_flags: list[bool] = []

    def reset(self, go_home: bool = False) -> None:
        self.resets.append(go_home)
        self.interaction_cache = ""

    def get_state(self, wait_to_stabilize: bool = False):
        self.stabilize_flags.append(wait_to_stabilize)
        box = SimpleNamespace(x_min=10, y_min=20, x_max=110, y_max=70)
        element = SimpleNamespace(class_name="android.widget.Button", text="Save",
                                  content_description=None, resource_name="save",
                                  bbox_pixels=box)
        return SimpleNamespace(pixels=np.zeros((1200, 540, 3), dtype=np.uint8),
                               ui_elements=[element])

    def execute_action(self, action) -> None:
        self.executed.append(action)
        if action.action_type == "answer":
            self.interaction_cache = action.text


class ScriptedPolicy:
    name = "scripted"

    def __init__(self, steps: list[list]) -> None:
        self.steps = list(steps)
        self.seen: list = []

    def act(self, states):
        self.seen.extend(states)
        return [PolicyOutput(raw_text="", actions=self.steps.pop(0)) for _ in states]

    def close(self) -> None:
        pass


class RecordingDevice:
    """The adapter's device controller (AndroidWorldDevice), recording what it is asked."""

    def __init__(self, fail_on_type: bool = False) -> None:
        self.calls: list = []
        self.fail_on_type = fail_on_type

    def swipe(self, gesture: AdbSwipe) -> None:
        self.calls.append(("swipe", gesture.adb_args()))

    def type_text(self, text: str) -> None:
        if self.fail_on_type:
            raise RuntimeError("adb: device offline")
        self.calls.append(("type", text))


def steps_of(*actions_per_step: list) -> ScriptedPolicy:
    return ScriptedPolicy(list(actions_per_step))


def test_gestures_and_text_go_through_the_device_exactly():
    env, device, slept = RecordingAsyncEnv(), RecordingDevice(), []
    policy = steps_of(
        [Click(x=100, y=200)],
        [LongPress(x=5, y=6, duration_s=2.0), Type(text="héllo 'x'")],
        [Swipe(start_x=500, start_y=2000, end_x=500, end_y=400, duration_s=0.3),
         Scroll(direction="down", amount=3, x=540, y=1200)],
        [SystemButton(button="back"), SystemButton(button="home"), SystemButton(button="enter")],
        [OpenApp(name="Contacts"), Wait(seconds=2.5)],
    )
    agent = QwenCuaAgent(env, policy, device=device, sleep=slept.append)
    results = [agent.step("do it") for _ in range(5)]
    assert not any(r.done for r in results)
    assert device.calls == [
        ("swipe", ["shell", "input", "swipe", "5", "6", "5", "6", "2000"]),
        ("type", "héllo 'x'"),
        ("swipe", ["shell", "input", "swipe", "500", "2000", "500", "400", "300"]),
        ("swipe", ["shell", "input", "swipe", "540", "1560", "540", "840", "400"]),
    ]
    # no input_text (it would press Enter), no edge-to-edge swipe, no 1 s wait
    assert env.executed == [
        JSONActionRecord(action_type="click", x=100, y=200),
        JSONActionRecord(action_type="navigate_back"),
        JSONActionRecord(action_type="navigate_home"),
        JSONActionRecord(action_type="keyboard_enter"),
        JSONActionRecord(action_type="open_app", app_name="Contacts"),
    ]
    assert slept == [2.5]
    assert env.stabilize_flags == [True] * 5  # no fixed transition pause


def test_without_a_device_actions_are_json_actions():
    assert not HAVE_ANDROID_WORLD  # else the adapter would pick android_world's adb_utils
    env, slept = RecordingAsyncEnv(), []
    policy = steps_of([Swipe(start_x=500, start_y=2000, end_x=500, end_y=400),
                       LongPress(x=5, y=6), Type(text="hi"), Wait(seconds=0.5)])
    agent = QwenCuaAgent(env, policy, sleep=slept.append)
    agent.step("do it")
    assert env.executed == [
        JSONActionRecord(action_type="scroll", direction="down"),  # finger up = scroll down
        JSONActionRecord(action_type="long_press", x=5, y=6),
        JSONActionRecord(action_type="input_text", text="hi"),
    ]
    assert slept == [0.5]


def test_a_failing_action_fails_its_step_not_the_task():
    env = RecordingAsyncEnv()
    policy = steps_of([Type(text="x"), Click(x=1, y=1)], [Click(x=2, y=2)])
    agent = QwenCuaAgent(env, policy, device=RecordingDevice(fail_on_type=True))
    first = agent.step("type")
    assert not first.done and first.data["actions"] == []
    assert first.data["feedback"] == ["Action 1 (type) failed: RuntimeError: adb: device offline"]
    assert env.executed == []  # the step's later click was not run
    second = agent.step("type")
    assert second.data["actions"] == [{"action_type": "click", "x": 2, "y": 2}]
    assert "device offline" in policy.seen[1].history[0].feedback


def test_observation_states_logical_and_pixel_sizes_and_elements():
    env = RecordingAsyncEnv()
    policy = ScriptedPolicy([[Click(x=1, y=1)], [Click(x=2, y=2)]])
    agent = QwenCuaAgent(env, policy)
    agent.step("goal A")
    agent.step("goal A")
    first, second = policy.seen
    obs = first.observation
    assert (obs.screen_size.width, obs.screen_size.height) == (1080, 2400)
    assert (obs.screenshot_size.width, obs.screenshot_size.height) == (540, 1200)
    assert obs.image().size == (540, 1200)
    assert 'text="Save"' in obs.a11y_tree and "bounds=[10,20][110,70]" in obs.a11y_tree
    assert first.platform == "mobile" and first.instruction == "goal A"
    assert len(second.history) == 1 and second.episode_id == first.episode_id


def test_answer_fills_interaction_cache_and_the_episode_goes_on():
    """Parity with AndroidWorld's M3A (google-research/android_world
    android_world/agents/m3a.py @ 0549c0a764f465fc1b8797205ed90df67061ee87, `step`): only
    `action_type == 'status'` returns AgentInteractionResult(True, ...); an `answer` is
    printed, executed with env.execute_action (the interaction cache) and the step returns
    done=False. The episode ends at the status that follows."""
    env = RecordingAsyncEnv()
    agent = QwenCuaAgent(env, ScriptedPolicy([[Answer(text="555-0100"), Click(x=1, y=1)],
                                              [Terminate(status="success")]]))
    result = agent.step("What is Ada's number?")
    assert not result.done and env.interaction_cache == "555-0100"
    assert [a.action_type for a in env.executed] == ["answer", "click"]
    assert agent.step("What is Ada's number?").done
    assert env.executed[-1] == JSONActionRecord(action_type="status", goal_status="complete")


def test_terminate_is_a_status_action_and_reset_starts_a_new_episode():
    env = RecordingAsyncEnv()
    policy = ScriptedPolicy([[Terminate(status="failure")], [Click(x=3, y=4)]])
    agent = QwenCuaAgent(env, policy)
    result = agent.step("impossible")
    assert result.done
    assert env.executed == [JSONActionRecord(action_type="status", goal_status="infeasible")]
    first_id = policy.seen[0].episode_id
    agent.reset(go_home=True)
    assert env.resets == [True]
    agent.step("next")
    assert policy.seen[1].episode_id != first_id and policy.seen[1].history == []


def test_unsupported_actions_are_reported_not_executed():
    """The engine's rule for a failed action: fed back, the step's later actions skipped."""
    env = RecordingAsyncEnv()
    policy = ScriptedPolicy([[SystemButton(button="menu"), Click(x=7, y=8)], [Click(x=7, y=8)]])
    agent = QwenCuaAgent(env, policy)
    result = agent.step("menu")
    assert env.executed == [] and not result.done
    assert result.data["feedback"][0].startswith("Action 1 (system_button) failed: not executed")
    assert "menu" in result.data["feedback"][0]
    agent.step("menu")
    assert [a.action_type for a in env.executed] == ["click"]
    assert "not executed" in policy.seen[1].history[0].feedback


def test_unparsable_output_does_not_end_the_episode_and_a_policy_fault_does():
    env = RecordingAsyncEnv()
    agent = QwenCuaAgent(env, ScriptedPolicy([[]] * 5))  # five outputs without an action
    results = [agent.step("goal") for _ in range(5)]
    assert not any(r.done for r in results)
    assert results[-1].data["feedback"][0].startswith("Your last output had no valid action")

    class Broken(ScriptedPolicy):
        def act(self, states):
            raise ConnectionError("server down")

    agent = QwenCuaAgent(RecordingAsyncEnv(), Broken([]))
    result = agent.step("goal")
    assert result.done and result.data["error"] == "ConnectionError: server down"
    agent.close()


def test_a_recorder_gets_the_episode_in_our_trajectory_format(tmp_path):
    from trajectories.store import RunDir, RunWriter

    writer = RunWriter(tmp_path / "run", {"suite": "android_world"})
    env = RecordingAsyncEnv()
    policy = ScriptedPolicy([[Click(x=1, y=2)], [Terminate(status="success")]])
    agent = QwenCuaAgent(env, policy, recorder=writer.start_episode("e0"))
    assert not agent.step("goal").done and agent.step("goal").done
    steps = RunDir(tmp_path / "run").steps("e0")
    assert [s.output.actions[0].type for s in steps] == ["click", "terminate"]
    assert steps[0].observation.screen_size.width == 1080


def test_ui_element_description_and_json_action_factory():
    assert describe_ui_elements([]) == ""
    action = make_json_action({"action_type": "click", "x": 1, "y": 2})
    assert (action.action_type, action.x, action.y) == ("click", 1, 2)
