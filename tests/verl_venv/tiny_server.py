"""verl's server manager, standing in for the agent-loop tests of both venvs (main venv:
tests/test_verl_loop.py; .venv-verl: check_verl_0_9_1.py): torch and transformers only.

The tiny Qwen3-VL generates behind verl's `generate(request_id, *, prompt_ids,
sampling_params, image_data)` signature (real token ids and logprobs). The first turn of
each request id is FORCED_FIRST_TURN (so that a real click reaches the environment), its
logprobs from a forward pass, as a server scoring a forced continuation gives them; later
turns are sampled (at most `max_new_tokens`; vision tokens banned, as a trained model never
writes them). Images go through the processor with `processor_kwargs`, as vLLM applies
its mm_processor_kwargs.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

import torch

FORCED_FIRST_TURN = ('<tool_call>\n{"name": "computer_use", "arguments": {"action": '
                     '"left_click", "coordinate": [500, 500]}}\n</tool_call><|im_end|>')


class TinyServerManager:
    """verl's server manager, standing in: the tiny model generates behind `generate`.
    The first turn of a request is FORCED_FIRST_TURN (its logprobs from a forward pass);
    later turns are sampled (vision tokens banned)."""

    def __init__(self, model_dir: Path, processor, processor_kwargs=None,
                 max_new_tokens: int = 8) -> None:
        from transformers import Qwen3VLForConditionalGeneration

        self.model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir,
                                                                     dtype=torch.float32)
        self.processor = processor
        self.processor_kwargs = dict(processor_kwargs or {})  # vLLM's mm_processor_kwargs
        self.tokenizer = processor.tokenizer
        self.max_new_tokens = max_new_tokens
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def inputs(self, ids, images):
        input_ids = torch.tensor([ids], dtype=torch.long)
        vision = self.processor(text=["<|image_pad|>" * len(images)], images=images,
                                return_tensors="pt", **self.processor_kwargs)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "mm_token_type_ids": (input_ids == self.processor.image_token_id).long(),
                "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}

    def logprobs(self, ids, images, start):
        with torch.inference_mode():
            logits = self.model(**self.inputs(ids, images)).logits[0].float()
        logp = torch.log_softmax(logits[start - 1:-1], dim=-1)
        return logp.gather(1, torch.tensor(ids[start:]).unsqueeze(1)).squeeze(1).tolist()

    def _generate(self, request_id, prompt_ids, sampling_params, image_data):
        first = not any(c["request_id"] == request_id for c in self.calls)
        self.calls.append({"request_id": request_id, "prompt_ids": list(prompt_ids),
                           "images": len(image_data), "sampling_params": dict(sampling_params)})
        if first:
            tokens = self.tokenizer.encode(FORCED_FIRST_TURN, add_special_tokens=False)
            logprobs = self.logprobs(list(prompt_ids) + tokens, image_data, len(prompt_ids))
            return SimpleNamespace(token_ids=tokens, log_probs=logprobs, stop_reason="completed")
        banned = [[self.tokenizer.convert_tokens_to_ids(t)] for t in
                  ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")]
        torch.manual_seed(len(self.calls))
        with torch.inference_mode():
            out = self.model.generate(
                **self.inputs(list(prompt_ids), image_data), do_sample=True, top_k=None,
                top_p=None, bad_words_ids=banned,
                max_new_tokens=min(self.max_new_tokens, sampling_params["max_tokens"]),
                return_dict_in_generate=True, output_logits=True,
                pad_token_id=self.tokenizer.pad_token_id)
        tokens = out.sequences[0, len(prompt_ids):].tolist()
        logits = torch.stack(out.logits, dim=1)[0].float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(
            1, torch.tensor(tokens).unsqueeze(1)).squeeze(1).tolist()
        return SimpleNamespace(token_ids=tokens, log_probs=logprobs, stop_reason="completed")

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None,
                       **kwargs):
        with self.lock:
            return await asyncio.to_thread(self._generate, request_id, prompt_ids,
                                           sampling_params, image_data or [])


def image_pad_runs(ids: list[int], pad_id: int) -> list[int]:
    """Lengths of the runs of `pad_id` in `ids`: one run per image, as verl re-processes
    a sequence (both venvs' checks compare them with the image grids)."""
    runs, length = [], 0
    for token in list(ids) + [-1]:
        if token == pad_id:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs
