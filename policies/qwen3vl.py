"""Qwen3-VL (and Qwen2.5-VL) in-process through transformers, batched.

`Qwen3VLPolicy(Qwen3VLOptions(model="Qwen/Qwen3-VL-8B-Instruct"))` loads a checkpoint from
a hub id or a local folder with the model class its config names (`qwen3_vl`,
`qwen3_vl_moe`, `qwen2_5_vl`), picks dtype and device (bf16 on CUDA, fp32 on CPU), and
answers `act(states)` for several episodes with ONE left-padded `generate` call.

Inputs are built by `QwenVLPromptEncoder`: the checkpoint's chat template renders the
messages from `policies.prompting`, the checkpoint's image processor turns screenshots into
patches, and each `<|image_pad|>` becomes as many pad tokens as the image has merged
patches, with `mm_token_type_ids` marking them: exactly what `Qwen3VLProcessor` does for
images. It is done here rather than through `AutoProcessor` because transformers builds
Qwen3-VL's processor only with torchvision installed (for its video processor), and
torchvision has no build for this project's CPU torch. The encoder is public so training
exports can re-tokenize a recorded prompt the same way.

Every `PolicyOutput` carries the prompt messages (image references), the prompt token ids
as fed to the model (padding removed), the response token ids as generated (up to and
including the end-of-turn token), the log-probability of each sampled token under the
model's distribution (log-softmax of the raw logits, before temperature / top-k / top-p,
as vLLM reports by default), token counts and the wall time of the batched call.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EpisodeState, PolicyOutput
from actions.dialects import Dialect
from policies.profiles import DEFAULT_PROFILE, get_profile
from policies.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    BuiltPrompt,
    ImageBudget,
    PromptConfig,
    SamplingParams,
    apply_sampling_preset,
    build_prompt,
    generation_budget,
    is_thinking_checkpoint,
    parse_output,
    prompt_config_for,
)
from policies.registry import PolicyUnavailable

logger = logging.getLogger(__name__)

# config.model_type -> (transformers class name, coordinate dialect)
MODEL_CLASSES: dict[str, tuple[str, Dialect]] = {
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", Dialect.QWEN3),
    "qwen3_vl_moe": ("Qwen3VLMoeForConditionalGeneration", Dialect.QWEN3),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", Dialect.QWEN25),
    # Qwen3.5 (natively multimodal successors; transformers >= 5.23): the same vision
    # inputs (patch 16, merge 2, <|image_pad|>) and the same 0..1000 computer_use grid.
    "qwen3_5": ("Qwen3_5ForConditionalGeneration", Dialect.QWEN3),
    "qwen3_5_moe": ("Qwen3_5MoeForConditionalGeneration", Dialect.QWEN3),
}


class PolicyLoadError(PolicyUnavailable):
    """The checkpoint could not be loaded (missing folder, unsupported model type, ...)."""


class Qwen3VLOptions(BaseModel):
    """Options of the transformers policy (the CLI's `--policy qwen3vl` flags).

    model: hub id (e.g. "Qwen/Qwen3-VL-8B-Instruct") or local checkpoint folder.
    dialect: coordinate dialect; None = from the model type (qwen3 for Qwen3-VL, qwen25
        for Qwen2.5-VL).
    device: "auto" (CUDA when available, spread over GPUs with device_map="auto"),
        "cpu", "cuda", "cuda:1", ...
    dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float16", "float32".
    attn_implementation: None (transformers' default, sdpa), "sdpa", "eager",
        "flash_attention_2".
    max_new_tokens: bound on the response length in tokens; None = 32768 for a Thinking
        checkpoint (see prompting.is_thinking_checkpoint), else the prompt profile's.
    prompt_profile: the prompt profile (policies.profiles); None = qwen-cua. A profile
        sets the grid and replayed screenshots unless dialect / history_images are given.
    history_images: previous steps replayed with their screenshots (see PromptConfig).
    min_pixels / max_pixels: image budget, area of the resized screenshot in pixels;
        None = the checkpoint's preprocessor_config.json.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    dialect: Dialect | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=32768)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    prompt_profile: str | None = None
    history_images: int = Field(2, ge=0)
    max_text_steps: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    include_extensions: bool = False
    min_pixels: int | None = Field(None, gt=0)
    max_pixels: int | None = Field(None, gt=0)
    name: str | None = Field(None, description="Name recorded in outputs; default: model.")


def _resolve_device(device: str) -> tuple[str, Any]:
    """(torch device for inputs, device_map for from_pretrained)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda", "auto"
        return "cpu", None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolicyLoadError(f"device {device!r} requested but torch sees no CUDA device")
    return device, (None if device == "cpu" else device)


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, bfloat16, float16 or float32") from None


VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
                 "<|video_pad|>")


def vision_token_ids(tokenizer: Any) -> list[int]:
    """The ids of the tokens that stand for image or video input (`VISION_TOKENS` the
    tokenizer has): a reply must never contain one. Sampled at temperature 1, a small model
    does emit them; the next forward pass over prompt + reply then fails (a video token
    with no video: transformers' Qwen3-VL `get_rope_index` raises a TypeError — a GRPO run
    crashed so, docs/training.md). TRL's GRPOTrainer suppresses the image token only."""
    ids = (tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS)
    return sorted({i for i in ids if i is not None and i != tokenizer.unk_token_id})


class QwenVLPromptEncoder:
    """Turns chat messages + images into Qwen-VL model inputs, like Qwen3VLProcessor does.

    tokenizer / image_processor: loaded from the checkpoint (AutoTokenizer,
    AutoImageProcessor). chat_template: the checkpoint's (tokenizer's, or the folder's
    chat_template.jinja / chat_template.json). size_override: {"shortest_edge": min_pixels,
    "longest_edge": max_pixels} for the image processor, or None for its own.
    """

    def __init__(self, tokenizer, image_processor, chat_template: str | None = None,
                 size_override: dict[str, int] | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template or tokenizer.chat_template
        if not self.chat_template:
            raise PolicyLoadError("the checkpoint has no chat template (tokenizer_config.json "
                                  "chat_template or chat_template.jinja)")
        self.size_override = size_override
        self.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise PolicyLoadError("the tokenizer has no <|image_pad|> token: not a Qwen-VL checkpoint")
        self.vision_token_ids = vision_token_ids(tokenizer)
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        self.pad_token_id = tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    @classmethod
    def from_pretrained(cls, path: str, *, min_pixels: int | None = None,
                        max_pixels: int | None = None, **kwargs: Any) -> QwenVLPromptEncoder:
        """Load the tokenizer, image processor and chat template of a checkpoint."""
        import warnings

        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torchvision missing, using the PIL backend"
            image_processor = AutoImageProcessor.from_pretrained(path, **kwargs)
        template = tokenizer.chat_template or _folder_chat_template(path)
        size = None
        if min_pixels is not None or max_pixels is not None:
            current = _processor_size(image_processor)
            size = {"shortest_edge": min_pixels or current[0],
                    "longest_edge": max_pixels or current[1]}
        return cls(tokenizer, image_processor, template, size)

    @property
    def budget(self) -> ImageBudget:
        """The image budget in effect (factor = patch size x merge size)."""
        shortest, longest = (
            (self.size_override["shortest_edge"], self.size_override["longest_edge"])
            if self.size_override else _processor_size(self.image_processor)
        )
        factor = int(getattr(self.image_processor, "patch_size", 16)) * self.merge_size
        return ImageBudget(factor=factor, min_pixels=shortest, max_pixels=longest)

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text (with one <|image_pad|> per image) ending in the assistant header,
        or, when the last message is the assistant's (a prefill), in that unfinished turn."""
        prefill = bool(messages) and messages[-1].get("role") == "assistant"
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False,
            add_generation_prompt=not prefill, continue_final_message=prefill,
        )

    def encode(self, messages: list[dict[str, Any]], images: list[Any]) -> dict[str, Any]:
        """Unpadded inputs of one prompt: input_ids (list), pixel_values, image_grid_thw."""
        import torch

        text = self.render(messages)
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        n_pads = sum(1 for i in ids if i == self.image_token_id)
        if n_pads != len(images):
            raise ValueError(f"prompt has {n_pads} image placeholders but {len(images)} images")
        if images:
            kwargs = {"size": self.size_override} if self.size_override else {}
            vision = self.image_processor(images=images, return_tensors="pt", **kwargs)
            grid = vision["image_grid_thw"]
            counts = [int(g.prod().item()) // (self.merge_size ** 2) for g in grid]
            expanded: list[int] = []
            image_index = 0
            for token in ids:
                if token == self.image_token_id:
                    expanded.extend([self.image_token_id] * counts[image_index])
                    image_index += 1
                else:
                    expanded.append(token)
            ids = expanded
            return {"input_ids": ids, "pixel_values": vision["pixel_values"],
                    "image_grid_thw": grid}
        return {"input_ids": ids, "pixel_values": None,
                "image_grid_thw": torch.zeros((0, 3), dtype=torch.long)}

    def mm_token_type_ids(self, input_ids):
        """1 where a token is an image placeholder, 2 for video, 0 elsewhere."""
        import torch

        types = torch.zeros_like(input_ids)
        types[input_ids == self.image_token_id] = 1
        types[input_ids == self.video_token_id] = 2
        return types

    def collate(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        """Left-pad several encoded prompts into one batch of tensors."""
        import torch

        length = max(len(e["input_ids"]) for e in encoded)
        input_ids = torch.full((len(encoded), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, e in enumerate(encoded):
            n = len(e["input_ids"])
            input_ids[row, length - n:] = torch.tensor(e["input_ids"], dtype=torch.long)
            attention[row, length - n:] = 1
        batch: dict[str, Any] = {
            "input_ids": input_ids, "attention_mask": attention,
            "mm_token_type_ids": self.mm_token_type_ids(input_ids),
        }
        pixel_values = [e["pixel_values"] for e in encoded if e["pixel_values"] is not None]
        if pixel_values:
            batch["pixel_values"] = torch.cat(pixel_values, dim=0)
            batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in encoded], dim=0)
        return batch


def _processor_size(image_processor) -> tuple[int, int]:
    size = getattr(image_processor, "size", None)
    shortest = getattr(size, "shortest_edge", None) if size is not None else None
    longest = getattr(size, "longest_edge", None) if size is not None else None
    if isinstance(size, dict):
        shortest, longest = size.get("shortest_edge"), size.get("longest_edge")
    shortest = shortest or getattr(image_processor, "min_pixels", None) or 65_536
    longest = longest or getattr(image_processor, "max_pixels", None) or 16_777_216
    return int(shortest), int(longest)


def _folder_chat_template(path: str) -> str | None:
    folder = Path(path)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text()).get("chat_template")
    try:  # hub checkpoints keep the template beside the processor files
        from huggingface_hub import hf_hub_download

        for name in ("chat_template.jinja", "chat_template.json"):
            try:
                file = Path(hf_hub_download(path, name))
            except Exception:  # noqa: BLE001 - try the next name
                continue
            text = file.read_text()
            return text if name.endswith(".jinja") else json.loads(text).get("chat_template")
    except ImportError:
        pass
    return None


def _presence_penalty_processor(penalty: float, prompt_length: int):
    """Subtract `penalty` from the logits of tokens already in the response (once each)."""
    import torch
    from transformers import LogitsProcessor

    class PresencePenalty(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
            generated = input_ids[:, prompt_length:]
            if generated.shape[1] == 0:
                return scores
            seen = torch.zeros_like(scores, dtype=torch.bool)
            seen.scatter_(1, generated, True)
            return scores - penalty * seen.to(scores.dtype)

    return PresencePenalty()


class Generation(BaseModel):
    """One generated response: token ids as generated (ending with the end-of-turn token
    when the model stopped by itself), their log-probabilities, the decoded text (without
    the end-of-turn token) and the prompt token ids fed to the model (no padding)."""

    prompt_token_ids: list[int]
    response_token_ids: list[int]
    response_logprobs: list[float]
    text: str
    finished: bool = Field(..., description="Stopped at an end-of-turn token (not max_new_tokens).")


class QwenVLGenerator:
    """A loaded Qwen-VL checkpoint that generates for batches of (messages, images).

    Shared by `Qwen3VLPolicy` and the test/demo chat server (`policies.chat_server`).
    """

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto",
                 attn_implementation: str | None = None, min_pixels: int | None = None,
                 max_pixels: int | None = None):
        import torch
        import transformers
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise PolicyLoadError(
                f"cannot load a model config from {model!r}: give a local checkpoint folder "
                f"(with config.json) or a hub id that is cached or downloadable ({exc})"
            ) from exc
        if config.model_type not in MODEL_CLASSES:
            raise PolicyLoadError(
                f"model type {config.model_type!r} of {model!r} is not supported: "
                f"use one of {', '.join(sorted(MODEL_CLASSES))}"
            )
        class_name, self.default_dialect = MODEL_CLASSES[config.model_type]
        self.model_id = model
        self.model_type = config.model_type
        self.device, device_map = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        load_kwargs: dict[str, Any] = {"dtype": self.dtype}
        if device_map is not None:
            load_kwargs["device_map"] = device_map
        if attn_implementation:
            load_kwargs["attn_implementation"] = attn_implementation
        started = time.monotonic()
        self.model = getattr(transformers, class_name).from_pretrained(model, **load_kwargs)
        if device_map is None:
            self.model.to(self.device)
        self.model.eval()
        self.encoder = QwenVLPromptEncoder.from_pretrained(
            model, min_pixels=min_pixels, max_pixels=max_pixels)
        generation = self.model.generation_config
        eos = generation.eos_token_id if generation is not None else None
        eos_ids = set(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        eos_ids.add(self.encoder.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.eos_token_ids = sorted(i for i in eos_ids if i is not None)
        self._torch = torch
        logger.info("loaded %s (%s, %s on %s) in %.1f s", model, class_name,
                    str(self.dtype).replace("torch.", ""), self.device, time.monotonic() - started)

    def _generate_kwargs(self, sampling: SamplingParams, max_new_tokens: int,
                         prompt_length: int) -> dict[str, Any]:
        from transformers import LogitsProcessorList

        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.encoder.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
            "do_sample": sampling.do_sample,
            # never sampled: a reply holding one would not encode again (the next step's
            # prompt carries the reply)
            "suppress_tokens": self.encoder.vision_token_ids,
        }
        if sampling.do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k if sampling.top_k > 0 else None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = sampling.repetition_penalty
        if sampling.presence_penalty:
            kwargs["logits_processor"] = LogitsProcessorList(
                [_presence_penalty_processor(sampling.presence_penalty, prompt_length)])
        return kwargs

    def generate(self, prompts: list[tuple[list[dict[str, Any]], list[Any]]],
                 sampling: SamplingParams, max_new_tokens: int,
                 min_new_tokens: int | None = None) -> list[Generation]:
        """Generate for every (messages, PIL images) prompt in ONE left-padded call.

        min_new_tokens: suppress the end-of-turn token until this many tokens exist
        (benchmarks use it to compare equal amounts of work)."""
        if not prompts:
            return []
        torch = self._torch
        encoded = [self.encoder.encode(messages, images) for messages, images in prompts]
        batch = self.encoder.collate(encoded)
        prompt_length = batch["input_ids"].shape[1]
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            kwargs = self._generate_kwargs(sampling, max_new_tokens, prompt_length)
            if min_new_tokens:
                kwargs["min_new_tokens"] = min_new_tokens
            out = self.model.generate(**batch, **kwargs)
        sequences = out.sequences[:, prompt_length:].cpu()
        logits = torch.stack(out.logits, dim=1).float().cpu() if out.logits else None
        eos = set(self.eos_token_ids)
        results: list[Generation] = []
        for row, enc in enumerate(encoded):
            generated = sequences[row].tolist()
            length, finished = len(generated), False
            for position, token in enumerate(generated):
                if token in eos:
                    length, finished = position + 1, True  # the end-of-turn token was generated
                    break
            response_ids = generated[:length]
            logprobs: list[float] = []
            if logits is not None and length:
                row_logprobs = torch.log_softmax(logits[row, :length], dim=-1)
                index = torch.tensor(response_ids, dtype=torch.long).unsqueeze(1)
                logprobs = row_logprobs.gather(1, index).squeeze(1).tolist()
            text_ids = response_ids[:-1] if finished else response_ids
            results.append(Generation(
                prompt_token_ids=list(enc["input_ids"]), response_token_ids=response_ids,
                response_logprobs=logprobs, finished=finished,
                text=self.encoder.tokenizer.decode(text_ids, skip_special_tokens=False),
            ))
        return results

    def close(self) -> None:
        """Release the model (and its GPU memory)."""
        self.model = None  # type: ignore[assignment]
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


class Qwen3VLPolicy:
    """A Qwen-VL checkpoint answering batches of episode states in one generate call."""

    def __init__(self, options: Qwen3VLOptions):
        self.options = options
        self.name = options.name or f"qwen3vl:{options.model}"
        profile = get_profile(options.prompt_profile or DEFAULT_PROFILE)
        self.generator = QwenVLGenerator(
            options.model, device=options.device, dtype=options.dtype,
            attn_implementation=options.attn_implementation,
            min_pixels=options.min_pixels,
            max_pixels=options.max_pixels or profile.image_max_pixels,
        )
        checkpoint_dialect = (self.generator.default_dialect
                              if self.generator.default_dialect is Dialect.QWEN25 else None)
        self.prompt_config = prompt_config_for(options, self.generator.encoder.budget,
                                               dialect=options.dialect or checkpoint_dialect)
        self.dialect = self.prompt_config.dialect
        self.thinking = is_thinking_checkpoint(options.model, self.encoder.chat_template,
                                               self.generator.model.config)
        self.max_new_tokens = generation_budget(options.max_new_tokens, profile.name,
                                                self.thinking)

    @classmethod
    def from_options(cls, **options: Any) -> Qwen3VLPolicy:
        """Build from flat CLI-style options: temperature=, top_p=, top_k=, greedy=, seed=,
        repetition_penalty=, presence_penalty= are folded into `sampling`; None values
        mean "default"."""
        return cls(Qwen3VLOptions(**fold_sampling_options(options)))

    @property
    def encoder(self) -> QwenVLPromptEncoder:
        return self.generator.encoder

    def prompts(self, states: list[EpisodeState]) -> list[BuiltPrompt]:
        return [build_prompt(state, self.prompt_config) for state in states]

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        """One batched generate call for all `states`; one PolicyOutput per state, in order."""
        return self.answer(self.prompts(states))

    def answer(self, prompts: list[BuiltPrompt]) -> list[PolicyOutput]:
        """One batched generate call for prompts built elsewhere (e.g. a grounding profile,
        policies.grounding); one PolicyOutput per prompt, in order."""
        if not prompts:
            return []
        started = time.monotonic()
        generations = self.generator.generate(
            [(p.messages, p.pil_images()) for p in prompts], self.options.sampling,
            self.max_new_tokens)
        latency_s = time.monotonic() - started
        return [
            parse_output(
                g.text, prompt, prompt_token_ids=g.prompt_token_ids,
                response_token_ids=g.response_token_ids, response_logprobs=g.response_logprobs,
                prompt_tokens=len(g.prompt_token_ids), completion_tokens=len(g.response_token_ids),
                latency_s=latency_s, model=self.options.model,
                finish_reason="stop" if g.finished else "length",
            )
            for prompt, g in zip(prompts, generations, strict=True)
        ]

    def close(self) -> None:
        self.generator.close()


def fold_sampling_options(options: dict[str, Any]) -> dict[str, Any]:
    """Flat options -> options with a `sampling` SamplingParams (greedy=True picks
    SamplingParams.greedy_decoding); keys whose value is None are dropped."""
    options = apply_sampling_preset({k: v for k, v in options.items() if v is not None})
    options.pop("sampling_preset", None)
    sampling_args = {k: options.pop(k) for k in list(options) if k in SamplingParams.model_fields}
    if "sampling" not in options:
        greedy = bool(sampling_args.pop("greedy", False))
        options["sampling"] = (SamplingParams.greedy_decoding(**sampling_args) if greedy
                               else SamplingParams(**sampling_args))
    return options


def prompt_config_from(dialect: str | None, history_images: int | None, model: str | None,
                       min_pixels: int | None, max_pixels: int | None,
                       system_prompt: str | None = None,
                       profile: str | None = None) -> PromptConfig:
    """The PromptConfig that expert steps are rebuilt with: the prompt profile's settings
    (qwen-cua when None), `dialect` / `history_images` where given, and the image budget
    of a checkpoint's image processor when `model` is given (as the policy would use)."""
    chosen = get_profile(profile or DEFAULT_PROFILE)
    budget = ImageBudget()
    if model is not None:
        budget = QwenVLPromptEncoder.from_pretrained(
            model, min_pixels=min_pixels, max_pixels=max_pixels or chosen.image_max_pixels
        ).budget
    elif min_pixels is not None or max_pixels is not None or chosen.image_max_pixels:
        budget = ImageBudget(min_pixels=min_pixels or budget.min_pixels,
                             max_pixels=max_pixels or chosen.image_max_pixels
                             or budget.max_pixels)
    return PromptConfig.for_profile(
        chosen.name, dialect=dialect, history_images=history_images, image_budget=budget,
        system_prompt=system_prompt or DEFAULT_SYSTEM_PROMPT)


__all__ = [
    "MODEL_CLASSES", "Generation", "PolicyLoadError", "Qwen3VLOptions", "Qwen3VLPolicy",
    "QwenVLGenerator", "QwenVLPromptEncoder", "fold_sampling_options", "prompt_config_from",
]
