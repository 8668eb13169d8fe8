"""verl's agent loop (`agent.trainers.verl_loop.GUIAgentLoop`) with the tiny Qwen3-VL.

verl 0.9.1 requires transformers<5.11 and this project runs a newer one, so verl lives in
its own venv (.venv-verl, made by scripts/install.sh: verl 0.9.1, transformers 5.10.4,
torch 2.13.0): `test_under_real_verl_0_9_1` runs tests/verl_venv/check_verl_0_9_1.py there
against verl's own classes. The other tests here run in the main venv, where the loop
falls back to our copy of verl's interface (agent/trainers/verl_interface.py), which the
verl-venv check compares with the real classes.

What is real: the environment (MiniWoB in Chromium behind `cua serve-env` on loopback),
the tokens and logprobs (the tiny Qwen3-VL generating), the image processor. The stand-in
is the server manager (as in verl's own CPU tests of agent loops): it speaks verl's
`generate(request_id, *, prompt_ids, sampling_params, image_data) -> TokenOutput`
signature with the tiny model behind it. Qwen3VLProcessor itself cannot be built here
(its video processor needs torchvision), so the loop gets an object with the processor's
`tokenizer`, `image_processor` and `chat_template`, which is all it reads.

Parity facts (verl 0.9.1, verl/experimental/agent_loop/agent_loop.py,
AgentLoopWorker._compute_multi_modal_inputs): verl rebuilds the training inputs by running
the processor on `multi_modal_data["images"]` and keeps only pixel_values and
image_grid_thw; the training forward pass then needs, per image and in order, a run of
`grid_t*grid_h*grid_w // merge_size**2` image pads in prompt_ids + response_ids
(transformers processing_qwen3_vl.py, Qwen3VLProcessor.replace_image_token).
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from agent.trainers import verl_interface
from agent.trainers.episodes import RowTask
from agent.trainers.processors import image_only_processor
from agent.trainers.verl_loop import AGENT_NAME, GUIAgentLoop
from tests.conftest_env_service import TOKEN, running_service
from tests.conftest_policy import one_torch_thread, tiny_model_dir  # noqa: F401
from tests.verl_venv.tiny_server import FORCED_FIRST_TURN, TinyServerManager, image_pad_runs

# verl 0.9.1 (PyPI wheel), verl/experimental/agent_loop/agent_loop.py: the pydantic fields
# of AgentLoopOutput / AgentLoopMetrics in declaration order, and AgentLoopBase.__init__.
VERL_0_9_1_OUTPUT_FIELDS = [
    "prompt_ids", "response_ids", "response_mask", "response_logprobs", "routed_experts",
    "multi_modal_data", "reward_score", "num_turns", "metrics", "extra_fields",
    "mm_processor_kwargs", "mm_processor_output",
]
VERL_0_9_1_METRICS_FIELDS = ["generate_sequences", "tool_calls", "compute_score", "num_preempted"]
VERL_0_9_1_BASE_INIT = ["self", "trainer_config", "server_manager", "tokenizer", "processor",
                        "dataset_cls", "data_config", "hf_model_type", "kwargs"]


def test_interface_copy_matches_verl_0_9_1():
    assert list(verl_interface.AgentLoopOutput.model_fields) == VERL_0_9_1_OUTPUT_FIELDS
    assert list(verl_interface.AgentLoopMetrics.model_fields) == VERL_0_9_1_METRICS_FIELDS
    assert list(inspect.signature(verl_interface.AgentLoopBase.__init__).parameters) == \
        VERL_0_9_1_BASE_INIT
    try:
        from verl.experimental.agent_loop import agent_loop as real
    except ImportError:
        return
    assert set(VERL_0_9_1_OUTPUT_FIELDS) <= set(real.AgentLoopOutput.model_fields)
    assert issubclass(GUIAgentLoop, real.AgentLoopBase)


def test_the_config_file_registers_the_loop_as_verl_loads_it():
    """verl loads the file with OmegaConf and instantiates `_target_` with every other key
    as a keyword argument (AgentLoopWorker.__init__ / _run_agent_loop in verl 0.9.1)."""
    import importlib

    import agent.trainers

    path = Path(agent.trainers.__file__).parent / "verl_agent_loops.yaml"
    entries = yaml.safe_load(path.read_text())
    entry = next(e for e in entries if e["name"] == AGENT_NAME)
    module, _, name = entry["_target_"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is GUIAgentLoop
    accepted = inspect.signature(GUIAgentLoop.__init__).parameters
    assert set(entry) - {"_target_"} <= set(accepted)


def test_the_dataset_row_names_the_task():
    assert RowTask.of({"task_id": "click-test", "seed": 3}).seed == 3
    row = RowTask.of({"raw_prompt": [], "extra_info": {"task_id": "enter-text",
                                                       "max_steps": 4}})
    request = row.request()
    assert (request.task_id, request.seed, request.overrides.max_steps) == ("enter-text", 0, 4)
    with pytest.raises(ValueError, match="task_id"):
        RowTask.of({"raw_prompt": []})


def _loop(url: str, server: TinyServerManager, response_length: int) -> GUIAgentLoop:
    rollout = SimpleNamespace(response_length=response_length, prompt_length=4096)
    trainer_config = SimpleNamespace(config=SimpleNamespace(
        actor_rollout_ref=SimpleNamespace(rollout=rollout)))
    return GUIAgentLoop(trainer_config=trainer_config, server_manager=server,
                        tokenizer=server.tokenizer, processor=server.processor, dataset_cls=None,
                        data_config=SimpleNamespace(config={}), name=AGENT_NAME,
                        env_url=url, env_token=TOKEN, max_new_tokens=64)


@pytest.mark.slow
def test_a_miniwob_episode_through_the_verl_loop(tiny_model_dir, one_torch_thread):  # noqa: F811
    """Parity with verl's re-processing (pad runs per image) and with the trainer's own
    logprob recomputation; plumbing of request ids, masks, rewards against the stand-in."""
    from policies.qwen3vl import QwenVLPromptEncoder

    server = TinyServerManager(tiny_model_dir, image_only_processor(tiny_model_dir),
                               max_new_tokens=12)
    encoder = QwenVLPromptEncoder.from_pretrained(str(tiny_model_dir))
    with running_service(max_envs=1) as (url, app):
        loop = _loop(url, server, response_length=2048)
        row = {"raw_prompt": [], "task_id": "click-test", "seed": 0, "max_steps": 2,
               "index": 0, "agent_name": AGENT_NAME}
        output = asyncio.run(loop.run({"temperature": 1.0, "top_p": 1.0, "logprobs": True},
                                      **row))
        assert app.state.pool.slots[0].episodes == 1 and app.state.pool.leases == {}

    images = output.multi_modal_data["images"]
    assert len(images) == 2 and output.num_turns == 4  # user, assistant, user, assistant
    assert output.extra_fields["gui_steps"] == 2
    assert output.extra_fields["gui_terminated_by"] == "max_steps"  # the row's max_steps
    assert output.reward_score == output.extra_fields["gui_reward_terms"]["outcome"]
    assert output.reward_score in (0.0, 1.0)
    n = len(output.response_ids)
    assert len(output.response_mask) == n == len(output.response_logprobs) and n <= 2048

    # One request id for the episode; each turn sends the whole sequence so far and every
    # screenshot so far.
    assert len({c["request_id"] for c in server.calls}) == 1 and len(server.calls) == 2
    assert server.calls[0]["prompt_ids"] == output.prompt_ids
    sequence = output.prompt_ids + output.response_ids
    for call, n_images in zip(server.calls, (1, 2), strict=True):
        assert sequence[:len(call["prompt_ids"])] == call["prompt_ids"]
        assert call["images"] == n_images and call["sampling_params"]["max_tokens"] <= 64

    # Generated tokens have mask 1 and their logprobs; observation tokens mask 0, 0.0.
    forced = encoder.tokenizer.encode(FORCED_FIRST_TURN, add_special_tokens=False)
    assert output.response_ids[:len(forced)] == forced
    assert output.response_mask[:len(forced)] == [1] * len(forced)
    observation = [i for i, m in enumerate(output.response_mask) if m == 0]
    assert observation == list(range(len(forced), observation[-1] + 1))  # one block
    assert all(output.response_logprobs[i] == 0.0 for i in observation)
    assert output.response_mask[observation[-1] + 1:] == [1] * (n - observation[-1] - 1)

    # verl's re-processing: the processor on multi_modal_data["images"] gives the grids;
    # each image's run of pads must match, in order.
    grids = encoder.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
    expected = [int(g.prod()) // encoder.merge_size ** 2 for g in grids]
    assert image_pad_runs(sequence, encoder.image_token_id) == expected

    # The trainer's recomputation of logprobs over the whole sequence (one forward pass,
    # as verl's actor does) matches the rollout's for every generated token.
    recomputed = server.logprobs(sequence, images, len(output.prompt_ids))
    for index, mask in enumerate(output.response_mask):
        if mask:
            assert recomputed[index] == pytest.approx(output.response_logprobs[index], abs=2e-3)

    # Up to the second generation, the tokens are exactly what the chat template and the
    # processor make of the conversation: the policy's first prompt, the assistant's
    # answer, the next screenshot as a user turn, the assistant header.
    import io

    from actions.contracts import EpisodeState, Task
    from actions.observation import Observation, Size
    from policies.prompting import build_prompt

    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG")
    size = Size(width=images[0].width, height=images[0].height)
    first_observation = Observation(screenshot_png=buffer.getvalue(), screen_size=size,
                                    screenshot_size=size)
    instruction = "Click the button."  # click-test's page
    loop_task = Task(suite="miniwob", task_id="click-test", max_steps=2)
    first = build_prompt(EpisodeState(episode_id="e", task=loop_task, instruction=instruction,
                                      observation=first_observation, platform="web"),
                         loop.prompt_config("web"))
    conversation = first.messages + [
        {"role": "assistant", "content": FORCED_FIRST_TURN.removesuffix("<|im_end|>")},
        {"role": "user", "content": [{"type": "image", "image": images[1]}]}]
    rendered = encoder.encode(conversation, [images[0], images[1]])["input_ids"]
    assert server.calls[1]["prompt_ids"] == rendered


REPO_ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = REPO_ROOT / ".venv-verl" / "bin" / "python"


@pytest.mark.slow
def test_under_real_verl_0_9_1():
    """tests/verl_venv/check_verl_0_9_1.py, run by .venv-verl's pytest (verl 0.9.1,
    transformers 5.10.4, made by scripts/install.sh) against a MiniWoB service started
    here: GUIAgentLoop under verl's own AgentLoopBase/AgentLoopOutput, registered through
    its config loader, post-processed by its AgentLoopWorker (padding, masks, image grids
    with and without mm_processor_kwargs, position ids), an over-long prompt refused as
    verl's own builder refuses it, and our fallback copy of the interface against the real
    one."""
    import os
    import subprocess

    if not VERL_PYTHON.exists():
        pytest.fail(f"{VERL_PYTHON} is missing: run scripts/install.sh (it makes the verl "
                    "0.9.1 venv these tests need)")
    with running_service(max_envs=2) as (url, _):
        env = {**os.environ, "CUA_ENV_URL": url, "CUA_ENV_TOKEN": TOKEN,
               "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [str(VERL_PYTHON), "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider",
             "-p", "no:warnings", "tests/verl_venv/check_verl_0_9_1.py"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "4 passed" in done.stdout
