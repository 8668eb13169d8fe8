"""Sampling: a reference profile's request carries only what its reference sends; the
Qwen3-VL report's per-size sampling is a named preset, recorded in the manifest.

Reference facts:
- OSWorld mm_agents/qwen3vl_agent.py `_call_llm_openai` (karakuri-ai/OSWorld-JP @
  3301bf9fd54cef911c6788543fba9da99bd4bfcf; the same file in the desktop-env 1.0.2 wheel):
  `client.chat.completions.create(model=model, messages=messages,
  max_tokens=self.max_tokens)` with `# temperature=...` and `# top_p=...` commented out.
- X-PLUG/MobileAgent Mobile-Agent-v3.5/computer_use/utils.py @
  04f5e082d9a7fb4669a3f0197e9967b627565985 `GUIOwlWrapper.predict_mm`:
  `self.bot.chat.completions.create(model=self.model, messages=payload, **{})`.
- The Qwen3-VL Technical Report (../shared/published-results.md, "Sampling settings the
  report states"): Instruct 235B-A22B / 32B / 30B-A3B: temperature 0.7, top-p 0.8,
  top-k 20, presence penalty 1.5; Instruct 8B / 4B / 2B: 1.0, 1.0, 40, 2.0; Thinking MoE
  (235B-A22B, 30B-A3B): 0.6, 0.95, 20; the dense Thinking models' setting is cut off.
"""

from __future__ import annotations

import pytest
import typer

from agent.cli.eval import policy_options_from
from policies.openai_compat import OpenAICompatPolicy
from policies.profiles import PROFILES
from policies.prompting import UnknownSamplingPreset, build_prompt, preset_sampling
from tests.conftest_policy import episode_state

SAMPLING_KEYS = {"temperature", "top_p", "top_k", "presence_penalty", "repetition_penalty"}


def body(**options) -> dict:
    policy = OpenAICompatPolicy.from_options(base_url="http://127.0.0.1:9/v1",
                                             check_model=False, **options)
    return policy.request_body(build_prompt(episode_state(), policy.prompt_config))


@pytest.mark.parametrize("profile", sorted(set(PROFILES) - {"qwen-cua"}))
def test_reference_profiles_send_no_sampling(profile: str) -> None:
    """Parity: none of the reference runners sends a sampling setting; the server's
    generation defaults apply. qwen-cua's own profile keeps sending its settings."""
    assert SAMPLING_KEYS.isdisjoint(body(model="Qwen/Qwen3-VL-8B-Instruct",
                                         prompt_profile=profile))
    own = body(model="Qwen/Qwen3-VL-8B-Instruct", prompt_profile="qwen-cua")
    assert {k: own[k] for k in ("temperature", "top_p", "top_k", "presence_penalty")} == {
        "temperature": 0.7, "top_p": 0.8, "top_k": 20, "presence_penalty": 1.5}
    explicit = body(model="m", prompt_profile=profile, temperature=0.2)
    assert explicit["temperature"] == 0.2 and "top_p" not in explicit


@pytest.mark.parametrize(("model", "expected"), [
    ("Qwen/Qwen3-VL-235B-A22B-Instruct", (0.7, 0.8, 20, 1.5)),
    ("/models/Qwen3-VL-32B-Instruct", (0.7, 0.8, 20, 1.5)),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct", (0.7, 0.8, 20, 1.5)),
    ("Qwen/Qwen3-VL-8B-Instruct", (1.0, 1.0, 40, 2.0)),
    ("Qwen/Qwen3-VL-4B-Instruct", (1.0, 1.0, 40, 2.0)),
    ("Qwen/Qwen3-VL-2B-Instruct", (1.0, 1.0, 40, 2.0)),
    ("Qwen/Qwen3-VL-30B-A3B-Thinking", (0.6, 0.95, 20, None)),
    ("Qwen/Qwen3-VL-235B-A22B-Thinking", (0.6, 0.95, 20, None)),
])
def test_report_preset_by_model_size_is_sent_and_recorded(model: str, expected: tuple) -> None:
    """Parity with the report's table: the preset is chosen by size and variant, sent
    under a reference profile, and expanded where the manifest's options are built."""
    options = policy_options_from(model, None, None, ["sampling_preset=qwen3vl-report"],
                                  prompt_profile="osworld-qwen3vl")
    sent = body(**{k: v for k, v in options.items() if k != "base_url"})
    got = (sent.get("temperature"), sent.get("top_p"), sent.get("top_k"),
           sent.get("presence_penalty"))
    assert got == expected
    assert tuple(options.get(k) for k in ("temperature", "top_p", "top_k",
                                          "presence_penalty")) == expected
    assert options["sampling_preset"] == "qwen3vl-report"


def test_preset_refuses_what_the_report_does_not_give() -> None:
    with pytest.raises(UnknownSamplingPreset, match="no sampling for 8B thinking"):
        preset_sampling("qwen3vl-report", "Qwen/Qwen3-VL-8B-Thinking")
    with pytest.raises(UnknownSamplingPreset, match="names none"):
        preset_sampling("qwen3vl-report", "/models/my-finetune")
    with pytest.raises(typer.BadParameter, match="unknown sampling preset"):
        policy_options_from("m", None, None, ["sampling_preset=fastest"])
    options = policy_options_from("Qwen/Qwen3-VL-8B-Instruct", None, None,
                                  ["sampling_preset=qwen3vl-report", "temperature=0.3"])
    assert options["temperature"] == 0.3 and options["top_k"] == 40  # explicit wins
