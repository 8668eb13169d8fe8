"""`osworld-qwen3vl` against the REAL reference agent: OSWorld's own
`mm_agents/qwen3vl_agent.py` from the desktop-env 1.0.2 wheel (.desktop-env-target) builds
its messages for six steps, and ours must match them turn for turn.

What is real: `Qwen3VLAgent.predict` and `parse_response` as shipped in the wheel (the same
text as karakuri-ai/OSWorld-JP @ 3301bf9fd54cef911c6788543fba9da99bd4bfcf, which the
profile cites). What stands in: its network call (`call_llm` returns canned responses and
keeps the payload), and the modules it imports that are not installed here or not shipped
in the wheel: `dashscope`, `backoff`, `google.api_core.exceptions` (names only: the openai
backend path does not use them) and `mm_agents.utils.qwen_vl_utils` (missing from the
wheel; its `smart_resize` is Qwen's algorithm, which actions.dialects.smart_resize is).
"""

from __future__ import annotations

import io
import json
import sys
import types
from typing import Any

import pytest
from PIL import Image

from actions.contracts import PolicyOutput, StepHistory
from actions.dialects import smart_resize
from actions.observation import Observation, Size
from policies.prompting import PromptConfig, build_prompt
from tests.conftest_policy import episode_state
from tests.conftest_real_osworld import real_desktop_env  # noqa: F401

RESPONSES = [
    "Action: Click the search box.\n<tool_call>\n" + json.dumps(
        {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 60]}})
    + "\n</tool_call>",
    'Action: Type "qwen" into it.\n<tool_call>\n' + json.dumps(
        {"name": "computer_use", "arguments": {"action": "type", "text": "qwen"}})
    + "\n</tool_call>",
    "Action: Press Enter.\n<tool_call>\n" + json.dumps(
        {"name": "computer_use", "arguments": {"action": "key", "keys": ["enter"]}})
    + "\n</tool_call>",
    "Action: Scroll down.\n<tool_call>\n" + json.dumps(
        {"name": "computer_use", "arguments": {"action": "scroll", "pixels": -5}})
    + "\n</tool_call>",
    "Action: Open the first result.\n<tool_call>\n" + json.dumps(
        {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [300, 400]}})
    + "\n</tool_call>",
]
INSTRUCTION = "Search for qwen and open the first result."


def screenshot(step: int, size: tuple[int, int] = (1280, 720)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10 * step, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def reference_agent(real_desktop_env, monkeypatch):  # noqa: F811
    class _Error(Exception):
        pass

    names = {
        "dashscope": {"MultiModalConversation": object, "base_http_api_url": "", "api_key": ""},
        "backoff": {"on_exception": lambda *a, **k: (lambda f: f), "constant": None},
        "google": {},
        "google.api_core": {},
        "google.api_core.exceptions": {n: _Error for n in (
            "InvalidArgument", "ResourceExhausted", "InternalServerError", "BadRequest")},
        "mm_agents.utils": {},
        "mm_agents.utils.qwen_vl_utils": {"smart_resize": (
            lambda height, width, factor=28, min_pixels=56 * 56, max_pixels=14 * 14 * 4 * 1280:
            smart_resize(height, width, factor, min_pixels, max_pixels))},
    }
    for name, attrs in names.items():
        module = types.ModuleType(name)
        module.__path__ = []  # type: ignore[attr-defined]
        for attr, value in attrs.items():
            setattr(module, attr, value)
        monkeypatch.setitem(sys.modules, name, module)
    from mm_agents.qwen3vl_agent import Qwen3VLAgent

    agent = Qwen3VLAgent(api_backend="openai")  # run_multienv_qwen3vl.py's defaults otherwise
    agent.reset()
    payloads: list[dict[str, Any]] = []

    def call_llm(payload: dict[str, Any], model: str) -> str:
        payloads.append(payload)
        return RESPONSES[len(payloads) - 1]

    agent.call_llm = call_llm
    return agent, payloads


def reference_turns(messages: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, Any]]]]:
    out = []
    for message in messages:
        items = []
        for part in message["content"]:
            if part["type"] == "text":
                items.append(("text", part["text"]))
            else:
                data = part["image_url"]["url"].split(",", 1)[1]
                import base64

                image = Image.open(io.BytesIO(base64.b64decode(data)))
                items.append(("image", image.size))
        out.append((message["role"], items))
    return out


def our_turns(prompt: Any) -> list[tuple[str, list[tuple[str, Any]]]]:
    size = prompt.converter.image_size
    out = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        items = [("text", part["text"]) if part["type"] == "text"
                 else ("image", (size.width, size.height)) for part in content]
        out.append((message["role"], items))
    return out


def test_osworld_profile_builds_the_reference_agents_messages(reference_agent) -> None:
    """Parity with the real agent: every step's messages (roles, order, every text, image
    positions and the size the images are sent at) equal what the agent builds."""
    agent, payloads = reference_agent
    config = PromptConfig.for_profile("osworld-qwen3vl")
    history: list[StepHistory] = []
    base = episode_state(instruction=INSTRUCTION)
    for step, response in enumerate(RESPONSES):
        png = screenshot(step)
        agent.predict(INSTRUCTION, {"screenshot": png})
        size = Size(width=1280, height=720)
        observation = Observation(screenshot_png=png, screen_size=size, screenshot_size=size)
        state = base.model_copy(update={"observation": observation, "history": list(history)})
        prompt = build_prompt(state, config)
        assert our_turns(prompt) == reference_turns(payloads[step]["messages"]), step
        history.append(StepHistory(index=step, observation=observation,
                                   output=PolicyOutput(raw_text=response)))
    assert len(payloads) == len(RESPONSES)
    # the request the agent makes: no sampling (the wheel's _call_llm_openai sends
    # model, messages, max_tokens; temperature/top_p are commented out there)
    assert payloads[0]["max_tokens"] == 32768
