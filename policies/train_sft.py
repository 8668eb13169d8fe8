"""Supervised fine-tuning of a Qwen-VL checkpoint on `cua export sft` data, with TRL.

`train_sft(TrainSFTOptions(data_dir=..., model=..., out=...))` loads the checkpoint with
the class its config names (like `Qwen3VLPolicy`), reads an export directory (format
``qwen`` or ``trl``), and trains with TRL's `SFTTrainer` (LoRA through peft as an option)
using our own collator:

- each sample is rendered with the checkpoint's chat template and tokenized with its
  tokenizer, and each image's ``<|image_pad|>`` is expanded to as many pad tokens as the
  image has merged patches: the same steps as `QwenVLPromptEncoder.encode`, so the prompt
  part of a sample is token for token what the policy feeds the model;
- labels are set on assistant tokens only (every assistant turn, with its end-of-turn
  token), -100 elsewhere; the assistant spans come from rendering the conversation
  prefix by prefix, so no chat-template generation markers are needed.

Why a collator of our own rather than TRL's vision collator: TRL's needs an
`AutoProcessor`, and transformers builds Qwen3-VL's processor only with torchvision
(for its video processor), which has no build for this project's CPU torch. The
trainer, optimiser, schedule, LoRA wrapping and checkpointing are TRL's / transformers'.

The output folder is a complete checkpoint (weights merged when LoRA was used, plus
tokenizer, image processor and chat template) that `--policy qwen3vl --model OUT` loads.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
_PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json",
                    "chat_template.jinja", "chat_template.json")


class TrainingDataError(ValueError):
    """The data directory is not a usable `cua export sft` export."""


class TrainSFTOptions(BaseModel):
    """Options of `cua train sft`.

    data_dir: a `cua export sft --format qwen|trl` directory.
    model: checkpoint folder or hub id to start from. out: where the trained checkpoint goes.
    epochs: passes over the data. learning_rate: peak AdamW learning rate (`lr_scheduler`
    shape, linear decay by default; `warmup_ratio` of the steps warming up). batch_size: samples per device per step;
    grad_accum: steps accumulated per optimiser update.
    lora: train LoRA adapters (rank `lora_r`, scale `lora_alpha`, on `lora_targets`
    modules of the language model) and merge them into the saved weights.
    freeze_vision: keep the vision tower's weights fixed (full fine-tuning only).
    device: "auto" (CUDA when available), "cpu", "cuda". dtype: "auto" (bf16 on CUDA,
    fp32 on CPU), "bfloat16", "float32". min_pixels / max_pixels: image budget
    override (pixels of the resized image), as for the policy.
    max_samples: use only the first N samples (smoke tests). seed: data order and init.
    """

    model_config = ConfigDict(frozen=True)

    data_dir: Path
    model: str
    out: Path
    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lr_scheduler: str = Field("linear", description="transformers scheduler name: linear, "
                              "cosine, constant, constant_with_warmup, ...")
    weight_decay: float = Field(0.0, ge=0)
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj",
                                     "gate_proj", "up_proj", "down_proj")
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    device: str = "auto"
    dtype: str = "auto"
    min_pixels: int | None = Field(None, gt=0)
    max_pixels: int | None = Field(None, gt=0)
    max_samples: int | None = Field(None, ge=1)
    logging_steps: int = Field(10, ge=1)
    progress_bar: bool = Field(False, description="transformers' progress bar over the "
                               "steps (off by default: the loss is logged every "
                               "logging_steps)")
    seed: int = 0


class TrainSFTResult(BaseModel):
    """What a training run did: samples, optimiser steps, first/last logged loss, seconds."""

    out: Path
    samples: int
    steps: int
    first_loss: float | None
    final_loss: float | None
    train_s: float


# ---------------------------------------------------------------------------- data


def load_samples(data_dir: Path) -> list[dict[str, Any]]:
    """Samples of an export as {"messages": chat-template messages with {"type": "image"}
    items, "images": [absolute image paths in order]}."""
    report_path = data_dir / "export.json"
    if not report_path.exists():
        raise TrainingDataError(f"{data_dir} has no export.json: make it with `cua export sft "
                                "RUN_DIR --format qwen --out DIR`")
    report = json.loads(report_path.read_text())
    fmt = report.get("format")
    if report.get("kind") != "sft" or fmt not in ("qwen", "trl"):
        raise TrainingDataError(f"{data_dir} is a {report.get('kind')}/{fmt} export; the "
                                "trainer reads SFT exports in the 'qwen' or 'trl' format")
    samples: list[dict[str, Any]] = []
    for line in (data_dir / report["data_file"]).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        messages, images = [], []
        for message in row["messages"]:
            content = message["content"]
            if isinstance(content, list):
                items = []
                for item in content:
                    if item.get("type") == "image":
                        if fmt == "qwen":
                            images.append(str(data_dir / item["image"]))
                        items.append({"type": "image"})
                    else:
                        items.append({"type": "text", "text": item.get("text", "")})
                if fmt == "trl" and message["role"] != "user":
                    # TRL wraps every content in a list; the template takes plain strings
                    # for system/assistant turns, exactly as the policy sends them.
                    content = "".join(i.get("text", "") for i in items)
                else:
                    content = items
            messages.append({"role": message["role"], "content": content})
        if fmt == "trl":
            images = [str(data_dir / p) for p in row["images"]]
        if not messages or messages[-1]["role"] != "assistant":
            raise TrainingDataError(f"{data_dir}: a sample does not end with an assistant turn")
        samples.append({"messages": messages, "images": images})
    if not samples:
        raise TrainingDataError(f"{data_dir} holds no samples")
    return samples


class SFTCollator:
    """Turns samples into model inputs with assistant-only labels (see the module docstring).

    `encoder` is a `policies.qwen3vl.QwenVLPromptEncoder` of the checkpoint being trained.
    """

    def __init__(self, encoder, max_length: int | None = None):
        self.encoder = encoder
        self.max_length = max_length

    def _render(self, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
        return self.encoder.tokenizer.apply_chat_template(
            messages, chat_template=self.encoder.chat_template, tokenize=False,
            add_generation_prompt=generation_prompt)

    def assistant_spans(self, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
        """The full conversation text and the [start, end) character spans of assistant
        answers (content through the end-of-turn token)."""
        text = self._render(messages, False)
        spans: list[tuple[int, int]] = []
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prefix = self._render(messages[:k], True)
            upto = self._render(messages[:k + 1], False)
            if not text.startswith(prefix) or not text.startswith(upto):
                raise TrainingDataError("the chat template does not render conversations "
                                        "prefix by prefix; cannot locate assistant turns")
            end = upto.rfind("<|im_end|>", len(prefix))
            end = end + len("<|im_end|>") if end >= 0 else len(upto.rstrip())
            spans.append((len(prefix), end))
        return text, spans

    def encode(self, sample: dict[str, Any]) -> dict[str, Any]:
        """input_ids and labels (lists, image pads expanded), pixel_values, image_grid_thw."""
        from PIL import Image

        tokenizer = self.encoder.tokenizer
        text, spans = self.assistant_spans(sample["messages"])
        tokens = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = tokens["input_ids"]
        labels = [token if any(start <= offset[0] < end for start, end in spans) else IGNORE_INDEX
                  for token, offset in zip(ids, tokens["offset_mapping"], strict=True)]
        images = []
        for path in sample["images"]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        pad = self.encoder.image_token_id
        n_pads = sum(1 for token in ids if token == pad)
        if n_pads != len(images):
            raise TrainingDataError(f"sample has {n_pads} image placeholders but "
                                    f"{len(images)} images")
        pixel_values = grid = None
        if images:
            kwargs = {"size": self.encoder.size_override} if self.encoder.size_override else {}
            vision = self.encoder.image_processor(images=images, return_tensors="pt", **kwargs)
            pixel_values, grid = vision["pixel_values"], vision["image_grid_thw"]
            counts = iter(int(g.prod().item()) // (self.encoder.merge_size ** 2) for g in grid)
            expanded_ids: list[int] = []
            expanded_labels: list[int] = []
            for token, label in zip(ids, labels, strict=True):
                n = next(counts) if token == pad else 1
                expanded_ids += [token] * n
                expanded_labels += [label if token != pad else IGNORE_INDEX] * n
            ids, labels = expanded_ids, expanded_labels
        if self.max_length is not None and len(ids) > self.max_length:
            raise TrainingDataError(f"a sample has {len(ids)} tokens > max_length "
                                    f"{self.max_length}; raise it or lower the image budget")
        return {"input_ids": ids, "labels": labels, "pixel_values": pixel_values,
                "image_grid_thw": grid}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        encoded = [self.encode({"messages": json.loads(r["messages_json"]),
                                "images": list(r["image_files"])}) for r in rows]
        length = max(len(e["input_ids"]) for e in encoded)
        pad_id = self.encoder.pad_token_id
        input_ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, e in enumerate(encoded):  # right padding for training
            n = len(e["input_ids"])
            input_ids[row, :n] = torch.tensor(e["input_ids"])
            labels[row, :n] = torch.tensor(e["labels"])
            attention[row, :n] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention,
                                 "labels": labels,
                                 "mm_token_type_ids": self.encoder.mm_token_type_ids(input_ids)}
        with_images = [e for e in encoded if e["pixel_values"] is not None]
        if with_images:
            batch["pixel_values"] = torch.cat([e["pixel_values"] for e in with_images])
            batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in with_images])
        return batch


# ---------------------------------------------------------------------------- training


def _save_processor_files(encoder, source: str, out: Path) -> None:
    encoder.tokenizer.save_pretrained(out)
    encoder.image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(encoder.chat_template)
    folder = Path(source)
    for name in _PROCESSOR_FILES:
        if folder.is_dir() and (folder / name).is_file() and not (out / name).exists():
            shutil.copyfile(folder / name, out / name)


def _sft_config(config_class, options: TrainSFTOptions, out: Path, bf16: bool, use_cpu: bool):
    return config_class(
        output_dir=str(out / "trainer"), num_train_epochs=options.epochs,
        learning_rate=options.learning_rate, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum, warmup_steps=options.warmup_ratio,
        weight_decay=options.weight_decay, lr_scheduler_type=options.lr_scheduler,
        logging_steps=options.logging_steps, save_strategy="no", report_to=[],
        remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True},
        gradient_checkpointing=options.gradient_checkpointing, use_cpu=use_cpu,
        bf16=bf16, fp16=False, seed=options.seed, data_seed=options.seed,
        max_length=None, dataloader_num_workers=0, disable_tqdm=not options.progress_bar,
    )


def train_sft(options: TrainSFTOptions) -> TrainSFTResult:
    """Train and save; returns what happened (see TrainSFTResult)."""
    import datasets
    import torch
    import transformers
    from transformers import AutoConfig, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from policies.qwen3vl import (
        MODEL_CLASSES,
        PolicyLoadError,
        QwenVLPromptEncoder,
        _resolve_device,
        _resolve_dtype,
    )

    samples = load_samples(Path(options.data_dir))
    if options.max_samples:
        samples = samples[: options.max_samples]
    config = AutoConfig.from_pretrained(options.model)
    if config.model_type not in MODEL_CLASSES:
        raise PolicyLoadError(f"model type {config.model_type!r} is not a supported Qwen-VL "
                              f"model ({', '.join(sorted(MODEL_CLASSES))})")
    device, _ = _resolve_device(options.device)
    dtype = _resolve_dtype(options.dtype, device)
    model_class = getattr(transformers, MODEL_CLASSES[config.model_type][0])
    model = model_class.from_pretrained(options.model, dtype=dtype)
    encoder = QwenVLPromptEncoder.from_pretrained(options.model, min_pixels=options.min_pixels,
                                                  max_pixels=options.max_pixels)
    if options.freeze_vision and not options.lora:
        for name, parameter in model.named_parameters():
            if ".visual." in f".{name}" or name.startswith("model.visual"):
                parameter.requires_grad_(False)
    peft_config = None
    if options.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
            # only the language model's projections (the vision tower's blocks are named
            # differently: attn.qkv, mlp.linear_fc1, ...)
            target_modules=r".*language_model.*\.(" + "|".join(options.lora_targets) + r")$",
            task_type="CAUSAL_LM")

    dataset = datasets.Dataset.from_list([
        {"messages_json": json.dumps(s["messages"], ensure_ascii=False),
         "image_files": s["images"]} for s in samples])
    collator = SFTCollator(encoder)
    collator.encode(samples[0])  # fail early on a bad sample (missing image, template)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    use_cpu = not device.startswith("cuda")
    with warnings.catch_warnings():
        # TRL turns gradient checkpointing on by default; transformers 5 warns that the
        # flag is being renamed when we pass it (its new name is not a TRL field yet).
        warnings.simplefilter("ignore", FutureWarning)
        args = _sft_config(SFTConfig, options, out, dtype == torch.bfloat16, use_cpu)
    losses: list[float] = []

    class _LossLog(TrainerCallback):
        def on_log(self, _args, _state, _control, logs=None, **_kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                logger.info("step %s loss %.4f", _state.global_step, logs["loss"])

    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                         processing_class=encoder.tokenizer, peft_config=peft_config,
                         callbacks=[_LossLog()])
    started = time.monotonic()
    state = trainer.train()
    train_s = time.monotonic() - started
    trained = trainer.model
    if options.lora:
        trained = trained.merge_and_unload()
    trained.save_pretrained(out)
    _save_processor_files(encoder, options.model, out)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    result = TrainSFTResult(out=out, samples=len(samples), steps=int(state.global_step),
                            first_loss=losses[0] if losses else None,
                            final_loss=losses[-1] if losses else None, train_s=train_s)
    (out / "train_sft.json").write_text(json.dumps(
        {"options": options.model_dump(mode="json"), "result": result.model_dump(mode="json"),
         "losses": losses}, indent=2))
    return result


__all__ = ["IGNORE_INDEX", "SFTCollator", "TrainSFTOptions", "TrainSFTResult",
           "TrainingDataError", "load_samples", "train_sft"]
