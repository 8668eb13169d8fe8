"""GUIAgentLoop under verl 0.9.1's own classes (runs in .venv-verl, not in the main venv).

`tests/test_verl_loop.py::test_under_real_verl_0_9_1` starts a `cua serve-env` service
(MiniWoB in Chromium, main venv) and runs this file with .venv-verl's pytest (verl 0.9.1,
transformers 5.10.4, torch 2.13.0; see scripts/install.sh), the service's address in
$CUA_ENV_URL / $CUA_ENV_TOKEN.

Real here: verl's AgentLoopBase / AgentLoopOutput, its agent-loop config loader (the
registry lines of AgentLoopWorker.__init__, then the real AgentLoopWorker._run_agent_loop:
hydra instantiation, run, and `_agent_loop_postprocess` with its padding, masks,
`_compute_multi_modal_inputs` and position ids), verl's own initial-token builder
(`ct_build_initial_tokens`), the tiny Qwen3-VL (transformers 5.10.4) generating real
tokens and logprobs, MiniWoB. Stand-ins: the server manager (verl's LLMServerClient
fronts vLLM/SGLang; here the tiny model generates behind its `generate` signature), and
the processor: Qwen3VLProcessor with the PIL image processor and no video processor
(transformers 5.10's fast image/video processors need torchvision, which has no build for
the CPU torch 2.13.0), its get_rope_index bound as verl's `hf_processor` binds it.
AgentLoopWorker is built without its __init__ (which loads a checkpoint through
AutoProcessor, i.e. torchvision): the attributes its methods read are set as __init__
sets them.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from tiny_server import (  # beside this file
    FORCED_FIRST_TURN,
    TinyServerManager,
    image_pad_runs,
)
from verl.experimental.agent_loop import agent_loop as verl_agent_loop

import agent.trainers
from agent.trainers import verl_interface
from agent.trainers.verl_loop import AGENT_NAME, VERL_AVAILABLE, GUIAgentLoop, PromptTooLong

CONFIG_FILE = Path(agent.trainers.__file__).parent / "verl_agent_loops.yaml"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from policies.tiny import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny"))


def make_processor(model_dir: Path):
    from transformers import AutoConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )
    from transformers.models.qwen3_vl import Qwen3VLModel

    from agent.trainers.processors import image_only_processor

    processor = image_only_processor(
        model_dir, image_processor=Qwen2VLImageProcessorPil.from_pretrained(model_dir))
    # verl/utils/tokenizer/tokenizer.py hf_processor (0.9.1): bind the model's rope index.
    processor.config = AutoConfig.from_pretrained(model_dir)
    processor.get_rope_index = types.MethodType(Qwen3VLModel.get_rope_index, processor)
    if hasattr(Qwen3VLModel, "get_vision_position_ids"):
        processor.get_vision_position_ids = types.MethodType(Qwen3VLModel.get_vision_position_ids,
                                                             processor)
    return processor


def make_worker(processor, server, *, prompt_length=4096, response_length=2048,
                mm_processor_kwargs=None):
    """A real AgentLoopWorker with the attributes its __init__ would set, the agent loops
    registered from our config file by the lines of its __init__."""
    config = OmegaConf.create({
        "actor_rollout_ref": {"rollout": {"prompt_length": prompt_length,
                                          "response_length": response_length}},
        "data": {"mm_processor_kwargs": mm_processor_kwargs or {}},
    })
    worker = object.__new__(verl_agent_loop.AgentLoopWorker)
    worker.config = config
    worker.llm_client = server
    worker.rollout_config = SimpleNamespace(prompt_length=prompt_length,
                                            response_length=response_length)
    worker.tokenizer = processor.tokenizer
    worker.processor = processor
    worker.hf_model_type = "qwen3_vl"
    worker.dataset_cls = None
    worker.tools = []
    worker.mm_processor_kwargs = config.data.get("mm_processor_kwargs", {})
    worker.reward_loop_worker_handles = None
    worker.distillation_enabled = False
    worker.teacher_client = None
    # AgentLoopWorker.__init__ (verl 0.9.1): load custom agent loops from the config path.
    from verl.utils.import_utils import resolve_config_path

    for entry in OmegaConf.load(resolve_config_path(str(CONFIG_FILE))):
        if entry.name == AGENT_NAME:
            entry.env_url = os.environ["CUA_ENV_URL"]
            entry.env_token = os.environ["CUA_ENV_TOKEN"]
            entry.max_new_tokens = 64
        verl_agent_loop._agent_loop_registry[entry.name] = entry
    return worker


ROW = {"raw_prompt": [{"role": "user", "content": "miniwob click-test"}],
       "task_id": "click-test", "seed": 0, "max_steps": 2, "index": 0}
TRAJECTORY = {"step": 0, "sample_index": 0, "rollout_n": 0, "validate": False}


def run_loop(worker):
    return asyncio.run(worker._run_agent_loop(
        {"temperature": 1.0, "top_p": 1.0, "logprobs": True}, TRAJECTORY,
        agent_name=AGENT_NAME, **ROW))


def test_the_loop_is_verl_s_own_subclass_and_the_fallback_matches_it():
    assert VERL_AVAILABLE and issubclass(GUIAgentLoop, verl_agent_loop.AgentLoopBase)
    for ours, real in ((verl_interface.AgentLoopOutput, verl_agent_loop.AgentLoopOutput),
                       (verl_interface.AgentLoopMetrics, verl_agent_loop.AgentLoopMetrics)):
        assert list(ours.model_fields) == list(real.model_fields)
        for name, field in real.model_fields.items():
            assert ours.model_fields[name].is_required() == field.is_required(), name
    assert (list(inspect.signature(verl_interface.AgentLoopBase.__init__).parameters)
            == list(inspect.signature(verl_agent_loop.AgentLoopBase.__init__).parameters))


@pytest.mark.parametrize("mm_processor_kwargs", [None, {"size": {"shortest_edge": 1024,
                                                                  "longest_edge": 12000}}],
                         ids=["default", "mm_processor_kwargs"])
def test_an_episode_through_verl_s_worker(model_dir, mm_processor_kwargs):
    """verl's postprocessing of our output: prompt left-padded and response right-padded to
    the rollout lengths, response_mask = our mask x attention, input_ids their
    concatenation, M-RoPE position ids; verl's recomputed image grids (with and without
    data.mm_processor_kwargs) match our image pads run for run; the reward is ours."""
    processor = make_processor(model_dir)
    server = TinyServerManager(model_dir, processor, mm_processor_kwargs)
    worker = make_worker(processor, server, mm_processor_kwargs=mm_processor_kwargs)
    out = run_loop(worker)

    assert out.extra_fields["gui_steps"] == 2 and out.extra_fields["gui_terminated_by"] == \
        "max_steps"
    assert out.extra_fields["raw_prompt"] == ROW["raw_prompt"]
    assert out.reward_score == out.extra_fields["gui_reward_terms"]["total"]
    prompt_len, response_len = 4096, 2048
    assert out.prompt_ids.shape == (1, prompt_len) and out.response_ids.shape == (1, response_len)
    n_prompt = int(out.attention_mask[0, :prompt_len].sum())
    n_response = int(out.attention_mask[0, prompt_len:].sum())
    assert out.attention_mask[0, :prompt_len - n_prompt].sum() == 0  # left padding
    assert out.attention_mask[0, prompt_len + n_response:].sum() == 0  # right padding
    prompt = out.prompt_ids[0, prompt_len - n_prompt:].tolist()
    assert prompt == server.calls[0]["prompt_ids"]
    sequence = out.input_ids[0][out.attention_mask[0].bool()].tolist()
    assert sequence[:len(server.calls[1]["prompt_ids"])] == server.calls[1]["prompt_ids"]
    assert torch.equal(out.input_ids, torch.cat([out.prompt_ids, out.response_ids], dim=1))
    mask = out.response_mask[0].tolist()
    forced = processor.tokenizer.encode(FORCED_FIRST_TURN, add_special_tokens=False)
    assert mask[:len(forced)] == [1] * len(forced)
    assert 0 in mask[:n_response] and mask[n_response:] == [0] * (response_len - n_response)
    logprobs = out.response_logprobs[0].tolist()
    assert all(logprobs[i] == 0.0 for i, m in enumerate(mask) if not m)
    assert out.position_ids.shape == (1, 4, prompt_len + response_len)

    grids = out.multi_modal_inputs["image_grid_thw"]
    assert grids.shape[0] == len(out.multi_modal_data["images"]) == 2
    merge = processor.image_processor.merge_size
    assert image_pad_runs(sequence, processor.image_token_id) == [int(g.prod()) // merge ** 2
                                                           for g in grids]
    default_grid = processor.image_processor(images=out.multi_modal_data["images"][:1],
                                             return_tensors="pt")["image_grid_thw"][0]
    assert torch.equal(grids[0], default_grid) == (mm_processor_kwargs is None)
    assert out.mm_processor_kwargs == (mm_processor_kwargs or None)


def test_an_over_long_prompt_is_refused_as_verl_s_builder_refuses_it(model_dir):
    """rollout.prompt_length smaller than the first prompt: our loop raises, and verl's
    own initial-token builder raises on the same messages and image."""
    processor = make_processor(model_dir)
    server = TinyServerManager(model_dir, processor)
    worker = make_worker(processor, server, prompt_length=256)
    with pytest.raises(PromptTooLong, match="rollout.prompt_length=256"):
        run_loop(worker)

    import io

    from PIL import Image

    from actions.contracts import EpisodeState, Task
    from actions.observation import Observation, Size
    from agent.trainers.episodes import episode_prompt, prompt_config

    buffer = io.BytesIO()
    Image.new("RGB", (160, 210), "white").save(buffer, format="PNG")
    size = Size(width=160, height=210)
    state = EpisodeState(episode_id="e", task=Task(suite="miniwob", task_id="click-test"),
                         instruction="Click the button.", platform="web",
                         observation=Observation(screenshot_png=buffer.getvalue(),
                                                 screen_size=size, screenshot_size=size))
    prompt = episode_prompt(state, prompt_config(None, "web"))  # what our loop sends first
    messages, [image] = prompt.messages, prompt.pil_images()

    async def verl_s_builder() -> list[int]:
        loop = GUIAgentLoop(trainer_config=verl_agent_loop.DictConfigWrap(worker.config),
                            server_manager=server, tokenizer=processor.tokenizer,
                            processor=processor, dataset_cls=None,
                            data_config=verl_agent_loop.DictConfigWrap(worker.config.data),
                            env_url="http://unused", env_token="t")
        return await loop.ct_build_initial_tokens(messages, images=[image])

    with pytest.raises(ValueError, match="exceeding rollout.prompt_length=256"):
        asyncio.run(verl_s_builder())
