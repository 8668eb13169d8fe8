"""The reward terms (`agent.trainers.rewards`): outcome, tool-call count against a
per-task target, and a judge model behind the openai SDK.

The judge is a loopback HTTP server speaking the chat-completions protocol (a stand-in for
vLLM/SGLang serving a judge model): the openai SDK sends it real requests, the test reads
what arrived and scripts the answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from actions.contracts import PolicyOutput, StepHistory, Task
from actions.models import Click, Terminate
from agent.trainers.rewards import (
    JudgeConfig,
    RewardConfig,
    parse_judge_score,
    reward_terms,
    targets_from_run,
    tool_call_reward,
    tool_call_target,
)
from tests.conftest_policy import observation
from trajectories.record import EpisodeResult
from trajectories.store import RunWriter

TASK = Task(suite="miniwob", task_id="click-test", seed=3, config={"tool_call_target": 5})


def _result(task_id: str = "click-test", reward: float = 1.0, steps: int = 2,
            seed: int = 3, episode_id: str = "e") -> EpisodeResult:
    return EpisodeResult(episode_id=episode_id, suite="miniwob", task_id=task_id, seed=seed,
                         instruction="Click the button.", success=reward >= 1.0,
                         reward=reward, steps=steps, terminated_by="done",
                         wall_time_s=1.0, started_at=time.time())


def _history() -> list[StepHistory]:
    first = PolicyOutput(raw_text="I click the grey button.\n<tool_call>...</tool_call>",
                         actions=[Click(x=30, y=70), Click(x=31, y=71)])
    second = PolicyOutput(raw_text="Done.", actions=[Terminate(status="success")])
    return [StepHistory(index=0, observation=observation(20), output=first,
                        feedback="Action 2 (click) failed: element moved"),
            StepHistory(index=1, observation=observation(60), output=second)]


def test_the_tool_call_term():
    assert [tool_call_reward(n, 4) for n in (0, 2, 4, 6, 8, 12)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="at least 1"):
        tool_call_reward(3, 0)
    config = RewardConfig(tool_call_targets={"miniwob/click-test/3": 2, "click-test": 7})
    assert tool_call_target(TASK, config, row_target=9) == 9  # the row's column first
    assert tool_call_target(TASK, config) == 2  # then the config by key
    assert tool_call_target(TASK.model_copy(update={"seed": 4}), config) == 7  # by task id
    assert tool_call_target(TASK, RewardConfig()) == 5  # then the task's config
    assert tool_call_target(Task(suite="s", task_id="t"), RewardConfig()) is None


def test_targets_from_an_expert_run(tmp_path):
    """The fewest steps among each task's successful episodes."""
    run = RunWriter(tmp_path / "oracle", {"policy": "oracle"})
    for index, (task_id, reward, steps) in enumerate([
            ("click-test", 1.0, 3), ("click-test", 1.0, 2), ("enter-text", 1.0, 4),
            ("enter-text", 0.0, 1), ("click-tab", 0.0, 5)]):
        run.append_result(_result(task_id, reward, steps, seed=index, episode_id=f"e{index}"))
    assert targets_from_run(tmp_path / "oracle") == {"click-test": 2, "enter-text": 4}


def test_terms_and_weights_without_a_judge():
    config = RewardConfig(outcome_weight=1.0, tool_call_weight=0.5)
    terms = asyncio.run(reward_terms(config, result=_result(reward=1.0), task=TASK,
                                     history=_history()))
    assert (terms.outcome, terms.tool_calls, terms.tool_call_target) == (1.0, 3, 5)
    assert terms.tool_call == pytest.approx(0.6) and terms.judge is None
    assert terms.total == pytest.approx(1.3)
    with pytest.raises(ValueError, match="no judge is configured"):
        RewardConfig(judge_weight=0.3)


def test_success_outcome_ranks_no_answer_with_a_wrong_one():
    """MiniWoB scores a wrong submission -1 and an episode cut by the step limit 0, so on
    the score, not finishing beats trying; on success (the report's right-or-wrong
    accuracy) both are 0 and only a success counts."""
    def totals(config: RewardConfig) -> list[float]:
        return [asyncio.run(reward_terms(config, result=_result(reward=reward), task=TASK,
                                         history=_history())).total
                for reward in (-1.0, 0.0, 0.5, 1.0)]

    assert totals(RewardConfig()) == [-1.0, 0.0, 0.5, 1.0]
    assert totals(RewardConfig(outcome="success", outcome_weight=2.0)) == [0.0, 0.0, 0.0, 2.0]
    with pytest.raises(ValueError):
        RewardConfig(outcome="accuracy")


@contextmanager
def judge_server(answer: str, status: int = 200) -> Iterator[tuple[str, list[dict]]]:
    """A chat-completions endpoint on loopback that answers `answer` and keeps requests."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "body": body,
                             "auth": self.headers.get("Authorization")})
            payload = {"id": "x", "object": "chat.completion", "created": 0,
                       "model": body["model"], "choices": [{
                           "index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": answer}}]}
            if status != 200:
                payload = {"error": {"message": "judge down", "type": "server_error"}}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_the_judge_term_through_an_openai_compatible_server(tmp_path):
    """The prompt file is filled with the instruction and the turns (what the agent wrote,
    what the environment answered), the latest screenshots follow as images, the answer's
    last SCORE line is the term, and the weights compose the total."""
    prompt = tmp_path / "judge.txt"
    prompt.write_text("Task: {instruction}\nTurns:\n{transcript}\nEnd with SCORE: x")
    judge = JudgeConfig(base_url="", model="judge-72b", api_key="k", prompt_file=prompt,
                        max_images=1)
    with judge_server("The agent misread step 1.\nSCORE: 0.2\nNo wait.\nSCORE: 0.4") as (
            url, received):
        config = RewardConfig(judge_weight=0.5, tool_call_weight=0.0,
                              judge=judge.model_copy(update={"base_url": url}))
        terms = asyncio.run(reward_terms(config, result=_result(reward=0.0), task=TASK,
                                         history=_history()))
    assert terms.judge == pytest.approx(0.4) and terms.total == pytest.approx(0.2)
    [request] = received
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k"
    body = request["body"]
    assert body["model"] == "judge-72b" and body["temperature"] == 0.0
    [message] = body["messages"]
    text = message["content"][0]["text"]
    assert text.startswith("Task: Click the button.\nTurns:\nTurn 1, the agent wrote:\n"
                           "I click the grey button.")
    assert "Turn 1, the environment answered:\nAction 2 (click) failed: element moved" in text
    images = [part for part in message["content"] if part["type"] == "image_url"]
    assert len(images) == 1 and images[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert message["content"][-2]["text"] == "Screenshot before turn 2:"


def test_a_failing_judge_counts_zero_and_says_why(tmp_path):
    with judge_server("", status=500) as (url, _):
        config = RewardConfig(judge_weight=1.0, judge=JudgeConfig(
            base_url=url, model="j", api_key="k", max_images=0, timeout_s=5))
        config = config.model_copy(update={"judge": config.judge.model_copy(
            update={"base_url": url})})
        terms = asyncio.run(reward_terms(config, result=_result(reward=1.0), task=TASK,
                                         history=_history()))
    assert terms.judge is None and "judge down" in terms.judge_error
    assert terms.total == 1.0
    with judge_server("no score here") as (url, _):
        config = RewardConfig(judge_weight=1.0, judge=JudgeConfig(
            base_url=url, model="j", api_key="k", max_images=0))
        terms = asyncio.run(reward_terms(config, result=_result(), task=TASK,
                                         history=_history()))
    assert "SCORE" in terms.judge_error
    assert parse_judge_score("SCORE: 7") == 1.0 and parse_judge_score("score: -1") == 0.0


def test_a_bad_prompt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholders")
    with pytest.raises(ValueError, match=r"no \{instruction\} placeholder"):
        JudgeConfig(base_url="u", model="m", prompt_file=bad).prompt_template()
    with pytest.raises(ValueError, match="cannot read the judge prompt file"):
        JudgeConfig(base_url="u", model="m", prompt_file=tmp_path / "none.txt").prompt_template()
    assert "{transcript}" in JudgeConfig(base_url="u", model="m").prompt_template()
