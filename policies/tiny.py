"""Build a tiny Qwen3-VL checkpoint fully offline, for tests and benchmarks.

The result is a real checkpoint folder: the real `Qwen3VLConfig` /
`Qwen3VLForConditionalGeneration` classes with a few small layers and random weights, a
byte-level BPE tokenizer trained here with `tokenizers` (Qwen's pre-tokenizer regex, the
Qwen special tokens, the Qwen3-VL chat template) and the processor configs of a released
Qwen3-VL checkpoint (image processor with patch 16 / merge 2, video processor), written
with `save_pretrained`. Load it exactly as a user's checkpoint:
`Qwen3VLForConditionalGeneration.from_pretrained(folder)`, `AutoTokenizer` and
`AutoImageProcessor` (or simply `Qwen3VLPolicy(model=folder)`).

Usage: `python -m policies.tiny OUT_DIR [--seed N]` (takes a few seconds on a CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

# The special tokens of the Qwen3-VL tokenizer, in Qwen's order. The first group is
# "special" (skipped by decode(skip_special_tokens=True)); the second are added tokens
# that stay in decoded text (tool calls and thinking are part of the answer).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
TEXT_ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)

# Qwen2/Qwen3's pre-tokenizer split: digits one by one, words with their leading space.
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat template shipped with Qwen3-VL Instruct checkpoints (system prompt, `tools`
# section, user turns with <|vision_start|><|image_pad|><|vision_end|>, assistant tool
# calls, tool responses, generation prompt).
QWEN3_VL_CHAT_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' }}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


class TinyQwen3VLSpec(BaseModel):
    """Sizes of the tiny model. Defaults build in a few seconds and run fast on a CPU.

    The image budget (`min_pixels`..`max_pixels`, pixels of the resized image) is small on
    purpose: a 160x210 MiniWoB page becomes a handful of vision tokens. The architecture
    constants that matter for prompts (patch 16, spatial merge 2, temporal patch 2) are
    those of the real Qwen3-VL.
    """

    vocab_target: int = Field(1200, ge=400, description="BPE vocabulary size before added tokens.")
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_head_dim: int = 16
    text_intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 64
    vision_position_grid: int = Field(16, description="Learned position grid side (squared).")
    vision_patch_bias_std: float | None = Field(None, ge=0, description=(
        "Initialise the patch projection's bias from N(0, std) instead of zeros. With a "
        "zero bias the LayerNorm that follows is blind to brightness: a uniformly white and "
        "a uniformly grey patch project to parallel vectors and normalise to the same "
        "feature, so a model trained from scratch cannot see a light-grey button on a white "
        "page (benchmarks/perf/learning.py, docs/training.md)."))
    vision_position_std: float | None = Field(None, ge=0, description=(
        "Initialise the vision tower's learned position embeddings from N(0, std) "
        "(transformers' default is the initializer range, 0.02, which the patch features "
        "drown out: where a patch lies is then nearly invisible to the language model)."))
    min_pixels: int = 32 * 32 * 4
    max_pixels: int = 32 * 32 * 80
    seed: int = 0
    architecture: Literal["qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen3_5"] = Field(
        "qwen3_vl", description="qwen3_vl_moe builds the mixture-of-experts variant (4 "
        "experts, 2 per token); qwen2_5_vl a tiny Qwen2.5-VL (patch 14, window attention) "
        "for the qwen25 dialect path; qwen3_5 a tiny Qwen3.5 (Qwen3_5ForConditionalGeneration:"
        " one Gated DeltaNet linear-attention layer, one full-attention layer, the same "
        "patch-16 / merge-2 vision tower).")


def _corpus() -> list[str]:
    """Text the tokenizer learns from: chat scaffolding, tool-call JSON, GUI instructions."""
    lines: list[str] = [
        "You are a helpful assistant.",
        "# Tools\n\nYou may call one or more functions to assist with the user query.",
        "You are provided with function signatures within <tools></tools> XML tags:",
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:",
        '{"name": <function-name>, "arguments": <args-json-object>}',
        "Click the button. Click on the link. Select the option and press Submit.",
        "Enter the text into the field and click Submit. Type the password. Scroll down.",
        "Previous actions: Step 1: I will click the button. The screen's resolution is 1000x1000.",
        "Your previous response could not be parsed: no valid tool call was found.",
        "Use a mouse and keyboard to interact with a computer, and take screenshots.",
        "Use a touchscreen to interact with a mobile device, and take screenshots.",
    ]
    actions = (
        "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click",
        "middle_click", "double_click", "triple_click", "scroll", "hscroll", "wait",
        "terminate", "answer", "click", "long_press", "swipe", "system_button", "open",
    )
    for action in actions:
        lines.append(
            '<tool_call>\n{"name": "computer_use", "arguments": {"action": "' + action
            + '", "coordinate": [500, 250]}}\n</tool_call>'
        )
        lines.append('{"name": "mobile_use", "arguments": {"action": "' + action + '"}}')
    lines.append(
        '{"type": "function", "function": {"name": "computer_use", "description": "", '
        '"parameters": {"properties": {"action": {"description": "", "enum": [], '
        '"type": "string"}, "coordinate": {"type": "array"}, "text": {"type": "string"}, '
        '"pixels": {"type": "number"}, "time": {"type": "number"}, "status": {"type": '
        '"string", "enum": ["success", "failure"]}}, "required": ["action"], "type": "object"}}}'
    )
    lines.append("0 1 2 3 4 5 6 7 8 9 [0, 0] [1000, 1000] true false null")
    from actions.dialects import Dialect
    from actions.observation import Size
    from actions.schemas import computer_use_tool, mobile_use_tool

    screen = Size(width=1280, height=720)
    for tool in (computer_use_tool(Dialect.QWEN3, screen), mobile_use_tool(Dialect.QWEN3, screen)):
        lines.append(json.dumps(tool, ensure_ascii=False))
    return lines


def build_tokenizer(spec: TinyQwen3VLSpec):
    """Train a byte-level BPE tokenizer with the Qwen pre-tokenizer and special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_target,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_corpus() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        padding_side="left",
    )
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    fast.add_tokens(list(TEXT_ADDED_TOKENS), special_tokens=False)
    fast.chat_template = QWEN3_VL_CHAT_TEMPLATE
    return fast


def processor_files(spec: TinyQwen3VLSpec) -> dict[str, dict]:
    """The image/video processor configs, shaped like a released Qwen3-VL checkpoint's.

    Written as JSON rather than through `Qwen3VLProcessor.save_pretrained`: transformers
    can only instantiate Qwen3-VL's video processor with torchvision, which has no build
    for this project's CPU torch. The files are the same ones a real checkpoint ships, so
    `AutoImageProcessor` (and, where torchvision exists, `AutoProcessor`) load them.
    """
    if spec.architecture == "qwen2_5_vl":
        clip_mean = [0.48145466, 0.4578275, 0.40821073]
        clip_std = [0.26862954, 0.26130258, 0.27577711]
        return {"preprocessor_config.json": {
            "size": {"longest_edge": spec.max_pixels, "shortest_edge": spec.min_pixels},
            "min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels,
            "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
            "image_mean": clip_mean, "image_std": clip_std,
            "processor_class": "Qwen2_5_VLProcessor",
            "image_processor_type": "Qwen2VLImageProcessor",
        }}
    common = {
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor",
    }
    return {
        "preprocessor_config.json": {
            "size": {"longest_edge": spec.max_pixels, "shortest_edge": spec.min_pixels},
            **common, "image_processor_type": "Qwen2VLImageProcessorFast",
        },
        "video_preprocessor_config.json": {
            "size": {"longest_edge": spec.max_pixels * 4, "shortest_edge": spec.min_pixels},
            **common, "video_processor_type": "Qwen3VLVideoProcessor",
        },
    }


def build_model(spec: TinyQwen3VLSpec, tokenizer):
    """A randomly initialised Qwen3VLForConditionalGeneration of the given sizes."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
    )

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    half_dim = spec.text_head_dim // 2
    mrope_section = [half_dim - 2 * (half_dim * 3 // 8), half_dim * 3 // 8, half_dim * 3 // 8]
    moe_text = ({"num_experts": 4, "num_experts_per_tok": 2, "decoder_sparse_step": 1,
                 "moe_intermediate_size": spec.text_intermediate_size // 2}
                if spec.architecture == "qwen3_vl_moe" else {})
    config_class: Any = Qwen3VLMoeConfig if spec.architecture == "qwen3_vl_moe" else Qwen3VLConfig
    config = config_class(
        text_config={
            **moe_text,
            "vocab_size": len(tokenizer),
            "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_head_dim,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default", "rope_theta": 5_000_000.0,
                "mrope_section": mrope_section, "mrope_interleaved": True,
            },
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": spec.vision_layers,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.text_hidden_size,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": spec.vision_position_grid ** 2,
            "deepstack_visual_indexes": [spec.vision_layers - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    if spec.architecture == "qwen2_5_vl":
        config = _qwen25_config(spec, tokenizer, ids, mrope_section)
        model_class: Any = Qwen2_5_VLForConditionalGeneration
    elif spec.architecture == "qwen3_5":
        from transformers import Qwen3_5ForConditionalGeneration

        config = _qwen35_config(spec, tokenizer, ids)
        model_class = Qwen3_5ForConditionalGeneration
    elif spec.architecture == "qwen3_vl_moe":
        model_class = Qwen3VLMoeForConditionalGeneration
    else:
        model_class = Qwen3VLForConditionalGeneration
    torch.manual_seed(spec.seed)
    model = model_class(config)
    visual = getattr(getattr(model, "model", model), "visual", None)
    with torch.no_grad():
        if spec.vision_patch_bias_std is not None and visual is not None:
            visual.patch_embed.proj.bias.normal_(0.0, spec.vision_patch_bias_std)
        if spec.vision_position_std is not None and getattr(visual, "pos_embed", None) is not None:
            visual.pos_embed.weight.normal_(0.0, spec.vision_position_std)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.0,
    )
    return model


def _qwen25_config(spec: TinyQwen3VLSpec, tokenizer, ids: dict[str, int], mrope_section):
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size,
            "num_hidden_layers": spec.text_layers, "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads, "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                "mrope_section": mrope_section},
            "pad_token_id": ids["<|endoftext|>"], "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": spec.vision_layers, "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size, "num_heads": spec.vision_heads,
            "out_hidden_size": spec.text_hidden_size, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [spec.vision_layers - 1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def _qwen35_config(spec: TinyQwen3VLSpec, tokenizer, ids: dict[str, int]):
    """A tiny Qwen3_5Config: layers alternate linear (Gated DeltaNet) and full attention
    as the released models do (3:1 there, 1:1 here); rotary on a quarter of each head
    (partial_rotary_factor 0.25, Qwen3.5's), split over (t, h, w) like Qwen3-VL's mrope."""
    from transformers import Qwen3_5Config

    rotary_half = int(spec.text_head_dim * 0.25) // 2
    mrope_section = [rotary_half - 2 * (rotary_half * 3 // 8), rotary_half * 3 // 8,
                     rotary_half * 3 // 8]
    layer_types = ["linear_attention" if i % 2 == 0 else "full_attention"
                   for i in range(spec.text_layers)]
    return Qwen3_5Config(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size,
            "num_hidden_layers": spec.text_layers, "layer_types": layer_types,
            "num_attention_heads": spec.text_heads, "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_head_dim, "linear_key_head_dim": spec.text_head_dim,
            "linear_value_head_dim": spec.text_head_dim,
            "linear_num_key_heads": spec.text_kv_heads, "linear_num_value_heads": spec.text_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000.0,
                                "partial_rotary_factor": 0.25, "mrope_section": mrope_section,
                                "mrope_interleaved": True},
            "pad_token_id": ids["<|endoftext|>"], "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": spec.vision_layers, "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size, "num_heads": spec.vision_heads,
            "out_hidden_size": spec.text_hidden_size, "patch_size": 16, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "num_position_embeddings": spec.vision_position_grid ** 2,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_qwen3vl(out_dir: str | Path, spec: TinyQwen3VLSpec | None = None) -> Path:
    """Build the tiny checkpoint and save it (model, tokenizer, processor) to `out_dir`."""
    spec = spec or TinyQwen3VLSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    model = build_model(spec, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN3_VL_CHAT_TEMPLATE)
    for name, content in processor_files(spec).items():
        (out / name).write_text(json.dumps(content, indent=2) + "\n")
    logger.info(
        "tiny Qwen3-VL saved to %s (%d parameters, vocabulary %d)",
        out, sum(p.numel() for p in model.parameters()), len(tokenizer),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    parser.add_argument("--architecture",
                        choices=["qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen3_5"],
                        default="qwen3_vl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = build_tiny_qwen3vl(args.out_dir, TinyQwen3VLSpec(seed=args.seed,
                                                            architecture=args.architecture))
    print(path)


if __name__ == "__main__":
    main()
