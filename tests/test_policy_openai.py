"""OpenAICompatPolicy against a real HTTP server process on loopback serving the tiny model."""

from __future__ import annotations

import base64
import logging
import socket
import time
from pathlib import Path

import pytest

from policies.openai_compat import (
    ModelNotServed,
    OpenAICompatPolicy,
    ServerUnreachable,
    to_openai_messages,
)
from policies.prompting import PromptConfig, build_prompt
from policies.qwen3vl import Qwen3VLPolicy
from tests.conftest_policy import episode_state, set_faults

pytest_plugins = ["conftest_policy"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_images_travel_as_base64_png_data_urls() -> None:
    state = episode_state()
    prompt = build_prompt(state, PromptConfig())
    messages = to_openai_messages(prompt)
    part = messages[1]["content"][1]
    assert part["type"] == "image_url"
    header, payload = part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    assert base64.b64decode(payload) == state.observation.screenshot_png  # lossless


def test_client_records_what_the_server_generated(chat_server: str, tiny_model_dir: Path,
                                                  monkeypatch, caplog) -> None:
    monkeypatch.setenv("CUA_TEST_KEY", "sk-secret-value")
    base_url = chat_server
    policy = OpenAICompatPolicy.from_options(base_url=base_url, model="tiny", greedy=True,
                                             max_new_tokens=10, api_key_env="CUA_TEST_KEY",
                                             concurrency=3)
    states = [episode_state(20, "a"), episode_state(70, "b"), episode_state(110, "c")]
    with caplog.at_level(logging.DEBUG):
        outputs = policy.act(states)
    local = Qwen3VLPolicy.from_options(model=str(tiny_model_dir), greedy=True, max_new_tokens=10,
                                       device="cpu")
    for state, out in zip(states, outputs, strict=True):
        assert out.error is None
        assert out.response_token_ids and len(out.response_logprobs) == len(out.response_token_ids)
        assert out.completion_tokens == len(out.response_token_ids)
        assert out.prompt_tokens == len(out.prompt_token_ids)
        assert out.model == "tiny" and out.latency_s > 0
        assert out.messages[1]["content"][1]["type"] == "image"
        # Same prompt builder, same model: the server saw exactly the in-process prompt.
        expected = local.act([state])[0]
        assert out.prompt_token_ids == expected.prompt_token_ids
        assert out.response_token_ids == expected.response_token_ids
        assert out.raw_text == expected.raw_text
    assert "sk-secret-value" not in caplog.text
    policy.close()


def test_retries_after_server_errors(chat_server: str, caplog) -> None:
    base_url = chat_server
    set_faults(base_url, fail_next=2)
    policy = OpenAICompatPolicy.from_options(base_url=base_url, model="tiny", greedy=True,
                                             max_new_tokens=4, max_retries=3)
    with caplog.at_level(logging.WARNING):
        out = policy.act([episode_state()])[0]
    assert out.error is None and out.response_token_ids
    assert caplog.text.count("HTTP 500") == 2


def test_gives_up_with_an_error_output_after_timeouts(chat_server: str) -> None:
    base_url = chat_server
    set_faults(base_url, delay_s=3.0)
    policy = OpenAICompatPolicy.from_options(base_url=base_url, model="tiny", greedy=True,
                                             max_new_tokens=4, timeout_s=0.5, max_retries=1)
    started = time.monotonic()
    out = policy.act([episode_state()])[0]
    assert time.monotonic() - started < 3.0
    assert out.error is not None and "timed out" in out.error and "2 attempts" in out.error
    assert out.actions == [] and out.messages  # the prompt is still recorded


def test_wrong_model_name_lists_served_models(chat_server: str) -> None:
    base_url = chat_server
    with pytest.raises(ModelNotServed, match="does not serve model 'qwen3-vl-8b'.*serves: tiny"):
        OpenAICompatPolicy.from_options(base_url=base_url, model="qwen3-vl-8b")
    # without the startup check, the chat endpoint's 404 gives the same advice
    policy = OpenAICompatPolicy.from_options(base_url=base_url, model="qwen3-vl-8b",
                                             check_model=False, max_new_tokens=2)
    out = policy.act([episode_state()])[0]
    assert out.error and "serves: tiny" in out.error


def test_unreachable_server_names_the_url_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ServerUnreachable) as info:
        OpenAICompatPolicy.from_options(base_url=url, model="m", max_retries=0)
    assert url in str(info.value) and "vllm serve" in str(info.value)


def test_server_side_tool_and_reasoning_parsers_are_undone(chat_server: str) -> None:
    """vLLM/SGLang started with a tool-call or reasoning parser move the <tool_call> and
    <think> text into message fields; the record keeps the model's text form."""
    policy = OpenAICompatPolicy.from_options(base_url=chat_server, model="tiny")
    prompt = build_prompt(episode_state(), policy.prompt_config)
    answer = {"model": "tiny", "usage": {"prompt_tokens": 5, "completion_tokens": 3},
              "choices": [{"message": {
                  "role": "assistant", "content": "I click it.", "reasoning_content": "where?",
                  "tool_calls": [{"type": "function", "function": {
                      "name": "computer_use",
                      "arguments": '{"action": "left_click", "coordinate": [500, 500]}'}}]},
                  "logprobs": {"content": [{"token": "token_id:7", "logprob": -0.5},
                                           {"token": "token_id:9", "logprob": -0.25}]}}]}
    out = policy._output(answer, prompt, latency_s=0.1)
    assert out.think == "where?" and out.thought == "I click it."
    assert (out.actions[0].x, out.actions[0].y) == (80, 105)
    assert out.response_token_ids == [7, 9] and out.response_logprobs == [-0.5, -0.25]
    assert out.prompt_token_ids is None and out.prompt_tokens == 5


def test_a_misspelt_option_is_an_error_not_ignored() -> None:
    with pytest.raises(ValueError, match="backoff_s"):
        OpenAICompatPolicy.from_options(model="m", backoff_s=0.5, check_model=False)


def test_sdk_errors_become_one_line_messages_that_say_what_to_do() -> None:
    """The SDK's own exception types (as it raises them for these answers) -> our errors."""
    import httpx2
    import openai

    policy = OpenAICompatPolicy.from_options(base_url="http://127.0.0.1:9/v1", model="m",
                                             check_model=False, max_retries=2,
                                             api_key_env="CUA_TEST_KEY")
    url = "http://127.0.0.1:9/v1/chat/completions"
    request = httpx2.Request("POST", url)

    def status_error(cls, code: int, message: str) -> Exception:
        body = {"message": message, "type": cls.__name__}
        response = httpx2.Response(code, json={"error": body}, request=request)
        return cls(f"Error code: {code}", response=response, body=body)

    cases = [
        (status_error(openai.BadRequestError, 400, "image too large"),
         f"HTTP 400 from {url}: image too large"),
        (status_error(openai.AuthenticationError, 401, "bad key"),
         f"HTTP 401 from {url}: bad key (set the API key in $CUA_TEST_KEY)"),
        (status_error(openai.InternalServerError, 503, "overloaded"),
         f"giving up after 3 attempts: HTTP 503 from {url}: overloaded"),
        (openai.APITimeoutError(request=request),
         f"giving up after 3 attempts: timed out after 120 s waiting for {url}"),
    ]
    for exc, message in cases:
        failure = policy._failure(exc)
        assert str(failure) == message and "\n" not in message
    down = policy._failure(openai.APIConnectionError(request=request))
    assert isinstance(down, ServerUnreachable) and "vllm serve" in str(down)
