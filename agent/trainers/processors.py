"""A Qwen3-VL processor for machines whose torch has no torchvision build.

transformers builds Qwen3VLProcessor's video processor only with torchvision, which has
no build for the CPU torch pinned here (torch==2.13.0). GUI episodes carry images only,
so the trainers (TRL's GRPOTrainer, verl's agent loop) can use the checkpoint's tokenizer
and image processor with no video processor at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def image_only_processor(model_dir: str | Path, chat_template: str | None = None, *,
                         image_processor: Any = None) -> Any:
    """A Qwen3VLProcessor of the checkpoint at `model_dir` without its video processor,
    with `chat_template` (default: the tokenizer's own) and `image_processor` (default:
    the checkpoint's, through AutoImageProcessor)."""
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
        def __init__(self, image_processor, tokenizer, chat_template=None):
            ProcessorMixin.__init__(self, image_processor, tokenizer,
                                    chat_template=chat_template)
            self.video_processor = None
            for kind in ("image", "video"):
                setattr(self, f"{kind}_token", f"<|{kind}_pad|>")
                setattr(self, f"{kind}_token_id",
                        tokenizer.convert_tokens_to_ids(f"<|{kind}_pad|>"))
            for edge in ("start", "end"):
                setattr(self, f"vision_{edge}_token", f"<|vision_{edge}|>")
                setattr(self, f"vision_{edge}_token_id",
                        tokenizer.convert_tokens_to_ids(f"<|vision_{edge}|>"))

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if image_processor is None:
        image_processor = AutoImageProcessor.from_pretrained(model_dir)
    return ImageOnlyQwen3VLProcessor(image_processor, tokenizer,
                                     chat_template or tokenizer.chat_template)
