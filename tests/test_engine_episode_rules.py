"""The agent loop: every way an episode ends, feedback to the policy, batching, recording."""

from __future__ import annotations

import errno
import hashlib

import pytest
from conftest_engine import run_episode, run_episodes_batched
from conftest_loop import ANSWER, CLICK, TERMINATE, ScriptedEnv, ScriptedPolicy, out, task

from actions.contracts import EnvironmentCrashed, Policy
from actions.models import Type
from agent.engine.episode import EpisodeSpec, LoopOptions
from trajectories.store import NullRecorder, RunDir, RunWriter


def test_terminate_ends_episode_with_reward_and_agent_status():
    env = ScriptedEnv(reward=0.8)
    policy = ScriptedPolicy([out(CLICK), out(CLICK), out(TERMINATE)])
    assert isinstance(policy, Policy)
    result = run_episode(env, policy, task(), episode_id="e1")
    assert result.terminated_by == "terminate"
    assert result.agent_status == "success"
    assert result.steps == 3
    assert result.reward == pytest.approx(0.8) and not result.success  # a partial score
    assert result.error is None
    assert env.executed == [CLICK, CLICK, TERMINATE]  # terminal actions reach the env too
    assert result.instruction == "do the thing"  # the reset observation's instruction wins


def test_answer_ends_episode_and_keeps_text():
    result = run_episode(ScriptedEnv(), ScriptedPolicy([out(CLICK, ANSWER)]), task())
    assert (result.terminated_by, result.answer, result.steps) == ("answer", "42", 1)


class _HookEnv(ScriptedEnv):
    def __init__(self):
        super().__init__()
        self.notified = []

    def notify_terminal(self, action):
        self.notified.append(action)


def test_terminal_actions_use_the_notify_terminal_hook_when_present(tmp_path):
    env = _HookEnv()
    run = RunWriter(tmp_path, {})
    result = run_episode(env, ScriptedPolicy([out(CLICK, ANSWER)]), task(), episode_id="h",
                         recorder=run.start_episode("h"))
    assert result.answer == "42" and env.notified == [ANSWER] and env.executed == [CLICK]
    (step,) = RunDir(tmp_path).steps("h")
    assert step.executions[1].action == ANSWER and step.executions[1].observation is None


def test_environment_done_ends_episode():
    env = ScriptedEnv(done_after=2, reward=-1.0)
    result = run_episode(env, ScriptedPolicy([out(CLICK)]), task())
    assert result.terminated_by == "done"
    assert result.steps == 2
    assert not result.success and result.reward == -1.0


def test_done_stops_remaining_actions_of_the_same_output():
    env = ScriptedEnv(done_after=1)
    result = run_episode(env, ScriptedPolicy([out(CLICK, Type(text="x"), CLICK)]), task())
    assert result.terminated_by == "done" and env.executed == [CLICK]


def test_max_steps_from_argument_and_from_task():
    result = run_episode(ScriptedEnv(), ScriptedPolicy([out(CLICK)]), task(), max_steps=4)
    assert (result.terminated_by, result.steps) == ("max_steps", 4)
    result = run_episode(ScriptedEnv(), ScriptedPolicy([out(CLICK)]), task(max_steps=2))
    assert (result.terminated_by, result.steps) == ("max_steps", 2)


def test_time_limit_is_checked_before_each_policy_call():
    policy = ScriptedPolicy([out(CLICK)])
    result = run_episode(ScriptedEnv(), policy, task(), time_limit_s=1e-9)
    assert (result.terminated_by, result.steps) == ("time_limit", 0)
    assert policy.batches == []


def test_parse_errors_are_fed_back_and_end_after_the_limit():
    policy = ScriptedPolicy([out(errors=["no <tool_call> block"], raw="I think...")])
    result = run_episode(ScriptedEnv(), policy, task(), max_steps=10)
    assert result.terminated_by == "parse_errors"
    assert result.steps == 3 and result.parse_errors == 3
    assert result.error is None and result.reward == 1.0  # still evaluated
    # The 2nd and 3rd prompts saw the previous step's feedback.
    last_state = policy.batches[-1][0]
    assert len(last_state.history) == 2
    assert "no <tool_call> block" in (last_state.history[-1].feedback or "")


def test_parse_failure_counter_resets_after_a_valid_action():
    bad = out(errors=["bad json"])
    policy = ScriptedPolicy([bad, bad, out(CLICK), bad, bad, out(TERMINATE)])
    result = run_episode(ScriptedEnv(), policy, task(), max_parse_failures=3)
    assert result.terminated_by == "terminate"
    assert result.parse_errors == 4 and result.steps == 6


def test_custom_parse_failure_limit():
    result = run_episode(ScriptedEnv(), ScriptedPolicy([out(errors=["x"])]), task(),
                         max_parse_failures=1)
    assert (result.terminated_by, result.steps) == ("parse_errors", 1)


def test_action_errors_are_counted_fed_back_and_the_episode_goes_on():
    env = ScriptedEnv(refuse=lambda a: a.type == "type")
    policy = ScriptedPolicy([out(Type(text="secret"), CLICK), out(CLICK), out(TERMINATE)])
    result = run_episode(env, policy, task())
    assert result.terminated_by == "terminate" and result.action_errors == 1
    # The click after the refused action in the same output was not executed.
    assert env.executed == [CLICK, TERMINATE]
    feedback = policy.batches[1][0].history[0].feedback
    assert feedback is not None and "refused type" in feedback


def test_environment_crash_in_step_ends_episode_as_error():
    env = ScriptedEnv(crash_on_step=2)
    result = run_episode(env, ScriptedPolicy([out(CLICK)]), task())
    assert result.terminated_by == "error"
    assert result.error == "EnvironmentCrashed: browser process exited (signal 9)"
    assert result.steps == 2 and not result.success and result.reward == 0.0


def test_environment_crash_in_reset_ends_episode_as_error():
    policy = ScriptedPolicy([out(CLICK)])
    result = run_episode(ScriptedEnv(crash_on_reset=True), policy, task())
    assert (result.terminated_by, result.steps) == ("error", 0)
    assert result.error.startswith("EnvironmentCrashed")
    assert result.instruction == "fallback" and policy.batches == []


def test_policy_exception_ends_episode_as_error():
    policy = ScriptedPolicy([out(CLICK)], raise_on_call=(2, RuntimeError("CUDA out of memory")))
    result = run_episode(ScriptedEnv(), policy, task())
    assert (result.terminated_by, result.steps) == ("error", 1)
    assert result.error == "RuntimeError: CUDA out of memory"


def test_policy_returning_too_few_outputs_is_an_error():
    result = run_episode(ScriptedEnv(), ScriptedPolicy([out(CLICK)], short_by=1), task())
    assert result.terminated_by == "error" and result.error.startswith("PolicyContractError")


def test_policy_backend_error_without_actions_ends_episode():
    failing = out()
    failing = failing.model_copy(update={"error": "HTTP 500 from server"})
    result = run_episode(ScriptedEnv(), ScriptedPolicy([failing]), task())
    assert result.terminated_by == "error"
    assert result.error == "PolicyBackendError: HTTP 500 from server"


def test_evaluate_failure_is_an_error():
    env = ScriptedEnv(evaluate_error=EnvironmentCrashed("page hung"))
    result = run_episode(env, ScriptedPolicy([out(TERMINATE)]), task())
    assert result.terminated_by == "error" and result.error == "EnvironmentCrashed: page hung"
    assert not result.success


def test_success_threshold_from_argument_and_task_config():
    env = ScriptedEnv(reward=0.5)
    policy = ScriptedPolicy([out(TERMINATE)])
    # default: a partial score (a fuzzy ratio, an averaged `and`) is no success
    assert not run_episode(env, policy, task()).success
    assert run_episode(env, policy, task(), success_threshold=0.5).success
    assert not run_episode(env, policy, task(config={"success_threshold": 0.6})).success
    assert run_episode(env, policy, task(config={"success_threshold": 0.4})).success
    assert run_episode(ScriptedEnv(reward=1.0), policy, task()).success


def test_batched_calls_policy_once_per_round_for_all_live_episodes():
    envs = [ScriptedEnv(), ScriptedEnv(), ScriptedEnv()]
    # Episode lengths differ through max_steps on the task.
    tasks = [task(f"t{i}", max_steps=1 + i % 3) for i in range(5)]
    policy = ScriptedPolicy([out(CLICK)])
    finished: list[str] = []
    results = run_episodes_batched(envs, policy, tasks, on_result=lambda r: finished.append(
        r.task_id))
    assert [r.task_id for r in results] == [f"t{i}" for i in range(5)]
    assert [r.steps for r in results] == [1, 2, 3, 1, 2]
    assert max(len(b) for b in policy.batches) == 3  # three environments, three live episodes
    assert sum(len(b) for b in policy.batches) == sum(r.steps for r in results)
    assert sorted(finished) == sorted(r.task_id for r in results)
    # Every environment was used and no episode state in a batch is duplicated.
    assert all(env.resets for env in envs)
    assert all(len({s.episode_id for s in b}) == len(b) for b in policy.batches)


def test_batched_policy_exception_ends_only_the_live_episodes():
    envs = [ScriptedEnv(), ScriptedEnv()]
    policy = ScriptedPolicy([out(CLICK), out(TERMINATE)], raise_on_call=(1, ValueError("bad")))
    results = run_episodes_batched(envs, policy, [task("a"), task("b"), task("c")])
    assert [r.terminated_by for r in results] == ["error", "error", "terminate"]


def test_batched_rejects_no_environments_and_mixed_options():
    with pytest.raises(ValueError):
        run_episodes_batched([], ScriptedPolicy([out(CLICK)]), [task()])
    with pytest.raises(TypeError):
        run_episodes_batched([ScriptedEnv()], ScriptedPolicy([out(CLICK)]), [task()],
                             options=LoopOptions(), max_steps=3)


def test_recorded_episode_matches_what_happened(tmp_path):
    run = RunWriter(tmp_path / "run", {"suite": "unit"})
    env = ScriptedEnv(refuse=lambda a: a.type == "type")
    policy = ScriptedPolicy([out(CLICK), out(errors=["oops"]), out(Type(text="x")),
                             out(CLICK, TERMINATE)])
    result = run_episode(env, policy, task("rec", seed=3), episode_id="rec-3",
                         recorder=run.start_episode("rec-3"))
    reader = RunDir(tmp_path / "run")
    assert reader.results() == [result]
    assert reader.result("rec-3") == result
    record = reader.episode("rec-3")
    assert record.key == "unit/rec/3" and record.policy == "scripted"
    assert record.initial_observation is not None
    steps = reader.steps("rec-3")
    assert [s.index for s in steps] == [0, 1, 2, 3]
    assert steps[0].observation == record.initial_observation
    assert steps[1].executions == [] and "oops" in steps[1].feedback
    assert steps[2].executions[0].observation.action_error == "refused type"
    assert [e.action.type for e in steps[3].executions] == ["click", "terminate"]
    # The screen after a step is the next step's observation.
    assert steps[0].executions[-1].observation == steps[1].observation
    # Screenshots are stored under their content hash, bytes unchanged.
    for step in steps:
        sha = step.observation.screenshot_sha256
        assert hashlib.sha256(reader.screenshot(sha)).hexdigest() == sha
    # Steps 1, 2 and 3 saw the same screen (nothing executed): stored once.
    assert len({s.observation.screenshot_sha256 for s in steps}) == 2
    # initial, after the click, after the 2nd click, after terminate
    assert len(list((tmp_path / "run" / "screenshots").glob("*.png"))) == 4


class _FullDisk(NullRecorder):
    def step(self, record):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_storage_failure_stops_the_run_instead_of_being_an_episode_error():
    with pytest.raises(OSError, match="No space left"):
        run_episode(ScriptedEnv(), ScriptedPolicy([out(CLICK)]), task(), recorder=_FullDisk())


def test_episode_spec_carries_sample_index():
    (result,) = run_episodes_batched([ScriptedEnv()], ScriptedPolicy([out(TERMINATE)]),
                                     [EpisodeSpec(task=task("s", seed=4), episode_id="x",
                                                  sample=2)])
    assert result.sample == 2 and result.key == "unit/s/4/2"


def test_non_finite_reward_is_an_error():
    result = run_episode(ScriptedEnv(reward=float("nan")), ScriptedPolicy([out(TERMINATE)]),
                         task())
    assert result.terminated_by == "error" and "non-finite reward" in result.error
    assert result.reward == 0.0 and not result.success


def test_non_finite_numbers_and_lone_surrogates_are_recorded_readably(tmp_path):
    weird = out(CLICK, raw="bad \udc80 bytes").model_copy(update={
        "response_logprobs": [float("-inf"), float("nan"), -0.5],
        "response_token_ids": [1, 2, 3], "latency_s": float("inf")})
    run = RunWriter(tmp_path, {})
    run_episode(ScriptedEnv(), ScriptedPolicy([weird, out(TERMINATE)]), task(),
                episode_id="w", recorder=run.start_episode("w"))
    (step, _) = RunDir(tmp_path).steps("w")
    logprobs = step.output.response_logprobs
    assert logprobs[0] == float("-inf") and logprobs[1] != logprobs[1] and logprobs[2] == -0.5
    assert step.output.latency_s == float("inf")
    assert step.output.raw_text == "bad \ufffd bytes"
