"""Run AndroidWorld's official suite with a qwen-cua policy, on your own emulator.

`QwenCuaAgent` has the interface AndroidWorld's runner (`suite_utils.run`) expects of
an `EnvironmentInteractingAgent`: `reset(go_home)`, `step(goal) -> AgentInteractionResult`,
`name`, `transition_pause`, `set_max_steps`. Each step it reads AndroidWorld's state
(screenshot pixels, UI elements), asks our policy for actions as for any mobile episode,
and executes each one:

- a swipe, drag, long press or scroll as its exact `adb shell input swipe` gesture
  (`actions.exporters.to_adb_swipe`) through the environment's controller, as the
  GUI-Owl AndroidWorld runner (X-PLUG/MobileAgent, Mobile-Agent-v3.5/android_world_v3.5)
  patches actuation to do: AndroidWorld's own `swipe` is an edge-to-edge gesture named
  opposite to the finger horizontally, and its `scroll` loses position and amount;
- text with AndroidWorld's `adb_utils.type_text`, without the Enter that its
  `input_text` action presses afterwards;
- a wait by sleeping its seconds (AndroidWorld's `wait` is always 1 s);
- everything else as AndroidWorld's `JSONAction` (`actions.exporters.to_android_world`)
  with `env.execute_action` (an `answer` sets the environment's `interaction_cache`, which
  AndroidWorld's question tasks grade, and the episode goes on, as in M3A and T3A; only
  a `status` ends it).

Without a device controller (android_world not installed and none given) gestures and
text fall back to JSONActions, with the losses `to_android_world` lists. An action that
raises fails its step (the error is fed back to the policy, the step's remaining actions
are skipped), as AndroidWorld's M3A agent does, not the task. Coordinates need no
conversion: our input space is AndroidWorld's logical screen (`env.logical_screen_size`),
which the observation states.

With `android_world` installed (its own repository: `pip install -e .` in a checkout) and
an emulator set up as its README says:

    python -m benchmarks.android_world_adapter --policy openai \\
        --policy-option base_url=http://127.0.0.1:8000/v1 \\
        --policy-option model=Qwen/Qwen3-VL-8B-Instruct \\
        --suite-family android_world --tasks ContactsAddContact --console-port 5554

Without `android_world` the agent still works against any object with the AsyncEnv
methods it uses (`reset`, `get_state`, `execute_action`, `logical_screen_size`); actions
are then built as `JSONActionRecord`s with JSONAction's fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from actions.contracts import EpisodeState, Policy, PolicyOutput, Task
from actions.exporters import AdbSwipe, UnsupportedActionError, to_adb_swipe, to_android_world
from actions.models import Action, Type, Wait
from actions.observation import Observation, Size
from agent.engine.episode import EpisodeRun, LoopOptions, format_error
from agent.engine.policy_service import PolicyClient
from trajectories.store import EpisodeRecorder, NullRecorder

logger = logging.getLogger(__name__)

# The actions that end an AndroidWorld episode (task.config['terminal_actions'] of the
# engine): only `terminate` (AndroidWorld's `status`); an `answer` is executed (it fills the
# interaction cache the question tasks grade) and the episode goes on, as in M3A and T3A.
TERMINAL_ACTIONS = ("terminate",)

try:  # AndroidWorld's own classes when it is installed
    from android_world.agents.base_agent import AgentInteractionResult
    from android_world.agents.base_agent import EnvironmentInteractingAgent as _AgentBase
    from android_world.env.json_action import JSONAction as _JSONAction
    HAVE_ANDROID_WORLD = True
except ImportError:  # pragma: no cover - exercised where android_world is absent
    HAVE_ANDROID_WORLD = False

    @dataclasses.dataclass()
    class AgentInteractionResult:  # type: ignore[no-redef]
        """Same fields as android_world.agents.base_agent.AgentInteractionResult."""

        done: bool
        data: dict[str, Any]

    class _AgentBase:  # type: ignore[no-redef]
        """The parts of android_world's EnvironmentInteractingAgent the runner uses."""

        def __init__(self, env: Any, name: str = "", transition_pause: float | None = 1.0):
            self._env = env
            self._name = name
            self._transition_pause = transition_pause
            self._max_steps: int | None = None

        @property
        def env(self) -> Any:
            return self._env

        @property
        def name(self) -> str:
            return self._name

        @name.setter
        def name(self, name: str) -> None:
            self._name = name

        @property
        def transition_pause(self) -> float | None:
            return self._transition_pause

        @transition_pause.setter
        def transition_pause(self, value: float | None) -> None:
            self._transition_pause = value

        def set_max_steps(self, max_steps: int) -> None:
            self._max_steps = max_steps

        def reset(self, go_home: bool = False) -> None:
            self._env.reset(go_home=go_home)

    _JSONAction = None


@dataclasses.dataclass(frozen=True)
class JSONActionRecord:
    """AndroidWorld's JSONAction fields, for use where android_world is not installed."""

    action_type: str | None = None
    index: int | None = None
    x: int | None = None
    y: int | None = None
    text: str | None = None
    direction: str | None = None
    goal_status: str | None = None
    app_name: str | None = None
    keycode: str | None = None
    clear_text: bool | None = None


class AndroidWorldDevice(Protocol):
    """What the adapter does on the device beyond a JSONAction."""

    def swipe(self, gesture: AdbSwipe) -> None:
        """Run `adb shell input swipe` with the gesture's points and duration."""

    def type_text(self, text: str) -> None:
        """Type `text` into the focused field, and nothing else (no Enter)."""


class AdbUtilsDevice:
    """AndroidWorldDevice through android_world's own adb_utils on `env.controller`."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def swipe(self, gesture: AdbSwipe) -> None:  # pragma: no cover - needs android_world
        from android_world.env import adb_utils

        adb_utils.issue_generic_request(gesture.adb_args(), self.env.controller)

    def type_text(self, text: str) -> None:  # pragma: no cover - needs android_world
        from android_world.env import adb_utils

        adb_utils.type_text(text, self.env.controller, timeout_sec=10)


def make_json_action(fields: dict[str, Any]) -> Any:
    """AndroidWorld's JSONAction (or a JSONActionRecord) from `to_android_world`'s dict."""
    cls = _JSONAction if _JSONAction is not None else JSONActionRecord
    return cls(**fields)


def describe_ui_elements(elements: list[Any]) -> str:
    """AndroidWorld UI elements as text lines (index, class, text, description, bounds)."""
    lines = []
    for index, element in enumerate(elements or []):
        box = getattr(element, "bbox_pixels", None)
        bounds = (f" bounds=[{box.x_min:.0f},{box.y_min:.0f}][{box.x_max:.0f},{box.y_max:.0f}]"
                  if box is not None else "")
        parts = [f"{index}: {getattr(element, 'class_name', None) or 'element'}"]
        for attr in ("text", "content_description", "resource_name"):
            value = getattr(element, attr, None)
            if value:
                parts.append(f'{attr}="{value}"')
        lines.append(" ".join(parts) + bounds)
    return "\n".join(lines)


class QwenCuaAgent(_AgentBase):
    """An AndroidWorld agent backed by a qwen-cua `Policy` (see the module docstring).

    `transition_pause=None` lets AndroidWorld wait for a stable screen itself
    (`get_state(wait_to_stabilize=True)`) instead of sleeping a fixed time. `device` runs
    exact gestures and text (default: android_world's adb_utils when it is installed,
    else None: JSONActions only). `sleep` performs Wait actions. `recorder` records the
    episode in our trajectory format (e.g. a RunWriter's `start_episode(id)`).

    Each step goes through the engine's episode code and the policy service, as every
    episode of ours does; what ends an episode here: the actions in `TERMINAL_ACTIONS`,
    a policy fault (`done` with `error` in the step's data). Unparsable output does not
    (AndroidWorld's runner steps on to its budget).
    """

    def __init__(self, env: Any, policy: Policy, name: str = "qwen-cua",
                 transition_pause: float | None = None,
                 device: AndroidWorldDevice | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 recorder: EpisodeRecorder | None = None) -> None:
        super().__init__(env, name, transition_pause)
        self.policy = policy
        if device is None and HAVE_ANDROID_WORLD:
            device = AdbUtilsDevice(env)
        if device is None:
            logger.warning("no device controller: swipes, scrolls and long presses go as "
                           "AndroidWorld JSONActions (points, amounts and durations are "
                           "lost) and typed text is followed by Enter")
        self.device = device
        self.sleep = sleep
        self.recorder = recorder
        self._episode_id = uuid.uuid4().hex[:12]
        self._episode: EpisodeRun | None = None
        self._host = _AndroidWorldHost(self)
        self._client = PolicyClient(policy)
        self._client.service.episodes_active(1)  # one episode: its request leaves at once

    def reset(self, go_home: bool = False) -> None:
        super().reset(go_home)
        self._episode = None
        self._episode_id = uuid.uuid4().hex[:12]

    def _state(self) -> Any:
        if self.transition_pause is None:
            return self.env.get_state(wait_to_stabilize=True)
        time.sleep(self.transition_pause)  # the runner's own setting, kept as it asks
        return self.env.get_state(wait_to_stabilize=False)

    def observation(self, state: Any) -> Observation:
        """Our Observation of AndroidWorld's State (pixels: H x W x 3 uint8 array)."""
        from PIL import Image

        image = Image.fromarray(state.pixels)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        width, height = self.env.logical_screen_size
        return Observation(
            screenshot_png=buffer.getvalue(), screen_size=Size(width=width, height=height),
            screenshot_size=Size(width=image.width, height=image.height),
            a11y_tree=describe_ui_elements(getattr(state, "ui_elements", None) or []) or None,
        )

    def execute(self, action: Action) -> dict[str, Any]:
        """Perform one action (see the module docstring); returns what was sent.

        Raises UnsupportedActionError when AndroidWorld cannot express the action, and
        whatever the device or AndroidWorld raises when executing it fails.
        """
        if isinstance(action, Wait):
            self.sleep(action.seconds)
            return {"action_type": "wait", "seconds": action.seconds}
        if self.device is not None:
            width, height = self.env.logical_screen_size
            gesture = to_adb_swipe(action, width, height)
            if gesture is not None:
                self.device.swipe(gesture)
                return {"action_type": action.type, "adb": gesture.adb_args()}
            if isinstance(action, Type):
                self.device.type_text(action.text)
                return {"action_type": "type", "text": action.text}
        fields = to_android_world(action)
        self.env.execute_action(make_json_action(fields))
        return fields

    def step(self, goal: str) -> AgentInteractionResult:
        """One step of AndroidWorld's runner: observe, ask the policy, execute — the
        engine's episode code (agent.engine.episode.EpisodeRun) decides what the output
        does, as for every episode of ours; AndroidWorld's runner owns the step budget."""
        observation = self.observation(self._state())
        return self._client.run(self._step(goal, observation))

    async def _step(self, goal: str, observation: Observation) -> AgentInteractionResult:
        host = self._host
        host.current = observation
        host.executed = []
        if self._episode is None or self._episode.ended:
            task = Task(suite="android_world", task_id="android_world", instruction=goal,
                        config={"terminal_actions": list(TERMINAL_ACTIONS),
                                "max_parse_failures": None})
            self._episode = EpisodeRun(
                task=task, episode_id=self._episode_id, sample=0, host=host,
                recorder=self.recorder or NullRecorder(),
                options=LoopOptions(platform="mobile"), policy_name=self._client.name)
            await self._episode.begin()  # host.reset: the observation just taken
        else:
            self._episode.observe(observation)
        episode = self._episode
        step_started_at, asked_at = time.time(), time.monotonic()
        try:
            output = await self._client.service.act(episode.state(), host)
        except Exception as exc:  # noqa: BLE001 - as the engine: a policy fault ends the episode
            episode.end("error", format_error(exc))
            return AgentInteractionResult(done=True, data={
                "raw_response": None, "thought": None, "actions": [],
                "feedback": [], "error": episode.error})
        await episode.apply(output, step_started_at=step_started_at,
                            policy_s=time.monotonic() - asked_at)
        feedback = episode.history[-1].feedback
        return AgentInteractionResult(done=episode.ended, data={
            "raw_response": output.raw_text, "thought": output.thought,
            "actions": list(host.executed),
            "feedback": feedback.split("\n") if feedback else [],
            "terminated_by": episode.terminated_by, "error": episode.error,
        })

    def close(self) -> None:
        """Close the policy service and its event loop (not the policy)."""
        self._client.close()


class _AndroidWorldHost:
    """The engine's EnvironmentHost (agent.engine.hosts) over AndroidWorld's env, for the
    adapter: `reset` and `step` give the observation the adapter took at the start of the
    step (AndroidWorld's runner reads the screen once per step, after its own transition
    wait); an action that raises or that AndroidWorld cannot express comes back as the
    observation's `action_error`, so the engine feeds it back and skips the step's
    remaining actions — the step fails, not the task, as AndroidWorld's M3A agent does."""

    index = 0
    name = "android_world"
    has_notify_terminal = True  # terminal actions reach AndroidWorld without a new look
    has_expert = False
    alive = True

    def __init__(self, agent: QwenCuaAgent) -> None:
        self.agent = agent
        self.current: Observation | None = None
        self.executed: list[dict[str, Any]] = []

    async def reset(self, task: Task) -> Observation:
        assert self.current is not None
        return self.current

    async def step(self, action: Action) -> Observation:
        assert self.current is not None
        try:
            self.executed.append(self.agent.execute(action))
        except UnsupportedActionError as exc:
            return self.current.model_copy(update={"action_error": f"not executed: {exc}"})
        except Exception as exc:  # noqa: BLE001 - any failure fails this step only
            logger.warning("executing %r failed: %s", action, exc)
            return self.current.model_copy(update={"action_error": format_error(exc)})
        return self.current

    async def notify_terminal(self, action: Action) -> None:
        self.executed.append(self.agent.execute(action))

    async def evaluate(self) -> float:
        return 0.0  # AndroidWorld's runner scores the task itself

    async def expert_act(self, state: EpisodeState) -> PolicyOutput:
        raise NotImplementedError("AndroidWorld tasks have no scripted expert here")

    async def restart(self) -> None:
        return None

    async def close(self) -> None:
        return None


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - needs an emulator
    """Run AndroidWorld's suite with a qwen-cua policy (mirrors android_world's run.py)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="qwen3vl or openai")
    parser.add_argument("--policy-option", action="append", default=[],
                        help="KEY=VALUE passed to the policy (repeatable)")
    parser.add_argument("--suite-family", default="android_world")
    parser.add_argument("--tasks", default=None, help="comma-separated task names")
    parser.add_argument("--n-task-combinations", type=int, default=1)
    parser.add_argument("--task-random-seed", type=int, default=30)
    parser.add_argument("--console-port", type=int, default=5554)
    parser.add_argument("--adb-path", default="adb")
    parser.add_argument("--output-path", default="runs/android_world")
    args = parser.parse_args(argv)
    if not HAVE_ANDROID_WORLD:
        raise SystemExit("android_world is not installed: clone "
                         "github.com/google-research/android_world and `pip install -e .` it")
    from android_world import checkpointer, registry, suite_utils
    from android_world.env import env_launcher

    from policies.registry import make_policy

    options = dict(option.split("=", 1) for option in args.policy_option)
    env = env_launcher.load_and_setup_env(console_port=args.console_port,
                                          emulator_setup=False, adb_path=args.adb_path)
    suite = suite_utils.create_suite(
        registry.TaskRegistry().get_registry(family=args.suite_family),
        n_task_combinations=args.n_task_combinations, seed=args.task_random_seed,
        tasks=args.tasks.split(",") if args.tasks else None)
    suite.suite_family = args.suite_family
    agent = QwenCuaAgent(env, make_policy(args.policy, **options))
    directory = checkpointer.create_run_directory(args.output_path)
    try:
        suite_utils.run(suite, agent,
                        checkpointer=checkpointer.IncrementalCheckpointer(directory),
                        demo_mode=False)
    finally:
        agent.close()
        agent.policy.close()
        env.close()
    print(f"results in {directory}")


if __name__ == "__main__":  # pragma: no cover
    main()
