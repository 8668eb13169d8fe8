"""The one prompt builder shared by every Qwen-VL backend (transformers and OpenAI-compatible).

A prompt follows Qwen3-VL's computer-use / mobile-agent cookbooks:

- **system**: a short system prompt, then the `# Tools` section exactly as Qwen3's chat
  template writes it for `tools=[...]` (the function definition from `actions.schemas`
  inside `<tools></tools>`, then the `<tool_call>` answer format). It is rendered here as
  plain text so that both backends send the same characters; a test checks it equals
  the chat template's own rendering.
- **first user turn**: ``The user query: <instruction>``; when older steps exist, the
  cookbook's ``Task progress (You have done the following operation on the current
  device): Step 1: ...; Step 2: ...;`` line (the thought and the tool call of each step
  whose screenshot is no longer shown); then the first screenshot.
- the last `history_images` steps are replayed as turns: the screenshot the model saw
  (user), what it answered with `<think>` content removed (assistant), and the agent's
  feedback (parse or action errors) in the next user turn before the next screenshot.
- the current screenshot closes the last user turn.

`BuiltPrompt.messages` hold `{"type": "image", "image": <PIL image>}` items (what a chat
template and an image processor consume); `BuiltPrompt.record_messages()` is the same
list with each image replaced by `{"type": "image", "sha256": ...}`, which is what a
`PolicyOutput` records and what training exports re-render.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EpisodeState, ImageRef, PolicyOutput, StepHistory
from actions.dialects import CoordinateConverter, Dialect, model_image_size
from actions.observation import Observation, Size, png_sha256
from actions.parsing import parse_tool_calls
from policies.profiles import (
    DEFAULT_PROFILE,
    TOOLS_FOOTER,
    TOOLS_HEADER,
    PromptProfile,
    get_profile,
    strip_think,
)

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Qwen's control tokens (<|im_start|>, <|image_pad|>, <|vision_start|>, ...). Written as
# text by a model, a user or a web page they would be tokenized as the real tokens: an
# <|image_pad|> without its image breaks generation, an <|im_end|> ends the turn.
_CONTROL_TOKEN = re.compile(r"<\|([A-Za-z0-9_]+)\|>")


def defuse_control_tokens(text: str) -> str:
    """`text` with Qwen control tokens written as plain text (<|image_pad|> -> <image_pad>)."""
    return _CONTROL_TOKEN.sub(r"<\1>", text)


class ImageBudget(BaseModel):
    """How the Qwen-VL image processor resizes a screenshot (see actions.dialects.smart_resize).

    factor: pixels per vision token side (patch size x spatial merge: 32 for Qwen3-VL,
    28 for Qwen2.5-VL). min_pixels / max_pixels: bounds on the resized image's area in
    pixels. The `qwen25` dialect writes coordinates in pixels of that resized image.
    """

    model_config = ConfigDict(frozen=True)

    factor: int = Field(32, gt=0)
    min_pixels: int = Field(65_536, gt=0)
    max_pixels: int = Field(16_777_216, gt=0)

    def image_size(self, screenshot_size: Size) -> Size:
        """The size of the image the model sees for a screenshot of `screenshot_size`."""
        return model_image_size(screenshot_size, self.factor, self.min_pixels, self.max_pixels)

    def image_tokens(self, screenshot_size: Size) -> int:
        """Vision tokens one screenshot costs in the prompt (one per factor x factor block)."""
        size = self.image_size(screenshot_size)
        return (size.width // self.factor) * (size.height // self.factor)


class PromptConfig(BaseModel):
    """What a prompt contains.

    history_images: how many *previous* steps are replayed with their screenshots (as
    user/assistant turns); the current screenshot is always included, so a prompt holds
    at most `history_images + 1` images. Older steps appear as one text line each.
    max_text_steps: cap on those text lines (the most recent are kept); None = all.
    include_extensions: also advertise qwen-cua's extra actions (navigate) in the tool.
    profile: the prompt profile (policies.profiles) that decides the layout and wording;
        `system_prompt` is used by the `qwen-cua` profile only (the others reproduce a
        published system text). `for_profile()` gives a profile's own settings.
    """

    model_config = ConfigDict(frozen=True)

    profile: str = DEFAULT_PROFILE
    dialect: Dialect = Dialect.QWEN3
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history_images: int = Field(2, ge=0)
    max_text_steps: int | None = Field(None, ge=0)
    include_extensions: bool = False
    image_budget: ImageBudget = Field(default_factory=ImageBudget)

    @classmethod
    def for_profile(cls, name: str, **overrides: Any) -> PromptConfig:
        """A profile's own settings (grid, replayed screenshots, image budget) plus
        `overrides` (None values are ignored)."""
        profile = get_profile(name)
        budget = ImageBudget(factor=profile.image_factor,
                             **({"max_pixels": profile.image_max_pixels}
                                if profile.image_max_pixels else {}))
        values: dict[str, Any] = {"profile": profile.name, "dialect": profile.dialect,
                                  "history_images": profile.history_images,
                                  "image_budget": budget}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class SamplingParams(BaseModel):
    """Decoding settings shared by both backends.

    Defaults are the generation hyper-parameters the Qwen3-VL model cards give for the
    Instruct models (top_p 0.8, top_k 20, temperature 0.7, repetition_penalty 1.0,
    presence_penalty 1.5). `greedy()` decodes deterministically (argmax, no penalties);
    `thinking()` is the cards' setting for the Thinking models.
    presence_penalty is subtracted once from the logit of every token already generated
    in this response (OpenAI / vLLM semantics). top_k <= 0 disables top-k.
    """

    model_config = ConfigDict(frozen=True)

    greedy: bool = False
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.8, gt=0, le=1)
    top_k: int = 20
    repetition_penalty: float = Field(1.0, gt=0)
    presence_penalty: float = 1.5
    seed: int | None = None

    @classmethod
    def instruct(cls, **overrides: Any) -> SamplingParams:
        return cls(**overrides)

    @classmethod
    def thinking(cls, **overrides: Any) -> SamplingParams:
        return cls(**{"temperature": 1.0, "top_p": 0.95, "top_k": 20,
                      "presence_penalty": 0.0, **overrides})

    @classmethod
    def greedy_decoding(cls, **overrides: Any) -> SamplingParams:
        return cls(**{"greedy": True, "temperature": 0.0, "top_p": 1.0, "top_k": 0,
                      "repetition_penalty": 1.0, "presence_penalty": 0.0, **overrides})

    @property
    def do_sample(self) -> bool:
        return not self.greedy and self.temperature > 0

    def request_fields(self, everything: bool) -> dict[str, Any]:
        """The sampling fields of an OpenAI-style request body. `everything`: every field
        (qwen-cua's own profile); otherwise only those set explicitly (an option or a
        named preset), so that a reference profile sends what its reference sends and
        the server's own generation defaults apply to the rest."""
        chosen = set(type(self).model_fields) if everything else set(self.model_fields_set)
        fields: dict[str, Any] = {}
        if chosen & {"greedy", "temperature"}:
            fields["temperature"] = 0.0 if not self.do_sample else self.temperature
        if chosen & {"greedy", "top_p"}:
            fields["top_p"] = 1.0 if not self.do_sample else self.top_p
        if "top_k" in chosen and self.do_sample and self.top_k > 0:
            fields["top_k"] = self.top_k
        if "presence_penalty" in chosen:
            fields["presence_penalty"] = self.presence_penalty
        if "repetition_penalty" in chosen and self.repetition_penalty != 1.0:
            fields["repetition_penalty"] = self.repetition_penalty
        if self.seed is not None:
            fields["seed"] = self.seed
        return fields


class UnknownSamplingPreset(ValueError):
    """A sampling preset that does not exist, or has no setting for this model."""


# The Qwen3-VL Technical Report's evaluation sampling (its text-centric evaluation
# section; ../shared/published-results.md): per model size and variant. The report states
# no sampling for the GUI-agent rows, and the translation is cut off for the dense
# Thinking models, so those have none here.
REPORT_SAMPLING: dict[tuple[str, str], dict[str, float | int]] = {
    **{(size, "instruct"): {"temperature": 0.7, "top_p": 0.8, "top_k": 20,
                            "presence_penalty": 1.5} for size in ("235b", "32b", "30b")},
    **{(size, "instruct"): {"temperature": 1.0, "top_p": 1.0, "top_k": 40,
                            "presence_penalty": 2.0} for size in ("8b", "4b", "2b")},
    **{(size, "thinking"): {"temperature": 0.6, "top_p": 0.95, "top_k": 20}
       for size in ("235b", "30b")},
}
SAMPLING_PRESETS = ("qwen3vl-report",)


def preset_sampling(preset: str, model: str | None) -> dict[str, float | int]:
    """The sampling a named preset gives `model` (a hub id or a checkpoint path naming
    its size: Qwen3-VL-8B-Instruct, Qwen3-VL-30B-A3B-Thinking, ...)."""
    if preset not in SAMPLING_PRESETS:
        raise UnknownSamplingPreset(
            f"unknown sampling preset {preset!r}; presets: {', '.join(SAMPLING_PRESETS)}")
    name = (model or "").lower()
    size = re.search(r"(?<![\d.])(235|32|30|8|4|2)b", name)
    variant = "thinking" if "thinking" in name else "instruct"
    if size is None:
        raise UnknownSamplingPreset(
            f"sampling preset {preset!r} is chosen by model size, and {model!r} names none "
            "(2B, 4B, 8B, 30B-A3B, 32B or 235B-A22B)")
    values = REPORT_SAMPLING.get((size.group(1) + "b", variant))
    if values is None:
        raise UnknownSamplingPreset(
            f"the Qwen3-VL report gives no sampling for {size.group(1).upper()}B {variant} "
            "models: set temperature / top_p / top_k explicitly")
    return dict(values)


def apply_sampling_preset(options: dict[str, Any]) -> dict[str, Any]:
    """Flat policy options with `sampling_preset` expanded into explicit sampling keys
    (keys given explicitly win); the preset's name is kept."""
    preset = options.get("sampling_preset")
    if preset is None:
        return options
    values = preset_sampling(str(preset), options.get("model"))
    return {**values, **options}




def system_text(tool: dict[str, Any], system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The qwen-cua system message: `system_prompt`, then the tools section exactly as
    Qwen3's chat template renders it for `tools=[tool]`."""
    head = f"{system_prompt}\n\n" if system_prompt else ""
    return head + TOOLS_HEADER + "\n" + json.dumps(tool, ensure_ascii=False) + TOOLS_FOOTER


@dataclass
class BuiltPrompt:
    """A prompt ready for a backend.

    messages: chat messages; image items are {"type": "image", "image": PIL.Image}.
    image_pngs: the PNG bytes of those images, in prompt order.
    images: which screenshot each image is (step index and sha256), in prompt order.
    converter: maps the model's coordinates for the *current* screenshot to the screen.
    tool: the function definition shown to the model.
    profile: the prompt profile the prompt was built with (name) and its template hash.
    pointer: where the cursor is (input-space px): the observation's pointer when the
        environment reports it, else where the episode's last pointer action left it, if
        any: the start of a cookbook-style `left_click_drag` that names only its target.
    """

    messages: list[dict[str, Any]]
    image_pngs: list[bytes]
    images: list[ImageRef]
    converter: CoordinateConverter
    tool: dict[str, Any]
    platform: str
    pointer: tuple[int, int] | None = None
    profile: str = DEFAULT_PROFILE
    profile_hash: str | None = None
    _pil: list[Any] = field(default_factory=list, repr=False)

    def pil_images(self) -> list[Any]:
        """The images as RGB PIL images, in prompt order."""
        return list(self._pil)

    def record_messages(self) -> list[dict[str, Any]]:
        """`messages` with each image replaced by {"type": "image", "sha256": ...}."""
        shas = iter(ref.sha256 for ref in self.images)
        out: list[dict[str, Any]] = []
        for message in self.messages:
            content = message["content"]
            if isinstance(content, list):
                content = [
                    {"type": "image", "sha256": next(shas)} if item.get("type") == "image"
                    else dict(item)
                    for item in content
                ]
            out.append({"role": message["role"], "content": content})
        return out


def last_pointer(history: list[StepHistory]) -> tuple[int, int] | None:
    """The cursor position after the most recent action that moved it, if any."""
    for step in reversed(history):
        for action in reversed(step.output.actions):
            end = getattr(action, "end_x", None), getattr(action, "end_y", None)
            if None not in end:
                return end  # type: ignore[return-value]
            at = getattr(action, "x", None), getattr(action, "y", None)
            if None not in at:
                return at  # type: ignore[return-value]
    return None


def _rgb(observation: Observation):
    image = observation.image()
    return image if image.mode == "RGB" else image.convert("RGB")


def _system_message(profile: PromptProfile, tool: dict[str, Any], config: PromptConfig) -> str:
    if profile.name == DEFAULT_PROFILE:
        return system_text(tool, config.system_prompt)
    return profile.system_text(tool)


def build_prompt(state: EpisodeState, config: PromptConfig) -> BuiltPrompt:
    """The prompt for the next step of one episode, laid out by `config.profile`.

    The first user turn holds the instruction text (with the steps no longer shown as
    screenshots, in the profile's wording) and the oldest screenshot shown, in the
    profile's order; each replayed step adds (assistant: its response without think
    content) and, for profiles that send it, the agent's feedback; later user turns hold
    one screenshot each; the current screenshot closes the last user turn.
    """
    profile = get_profile(config.profile)
    obs = state.observation
    image_size = config.image_budget.image_size(obs.screenshot_size)
    converter = CoordinateConverter(config.dialect, obs.screen_size, image_size)
    tool = profile.tool(state.platform, converter.dialect, obs.screen_size, image_size,
                        config.include_extensions)
    history = list(state.history)
    n_images = min(config.history_images, len(history))
    as_text = history[: len(history) - n_images]
    replayed = history[len(history) - n_images:]
    if config.max_text_steps is not None:
        as_text = as_text[len(as_text) - config.max_text_steps:] if config.max_text_steps else []

    first_text = defuse_control_tokens(profile.instruction_text(state.instruction, as_text))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _system_message(profile, tool, config)},
    ]
    pngs: list[bytes] = []
    refs: list[ImageRef] = []
    pil: list[Any] = []

    def image_item(step: int, observation: Observation) -> dict[str, Any]:
        image = _rgb(observation)
        pngs.append(observation.screenshot_png)
        refs.append(ImageRef(step=step, sha256=png_sha256(observation.screenshot_png)))
        pil.append(image)
        return {"type": "image", "image": image}

    def opening_turn(image: dict[str, Any]) -> list[dict[str, Any]]:
        text = {"type": "text", "text": first_text}
        return [image, text] if profile.image_first else [text, image]

    user: list[dict[str, Any]] | None = None  # None: the opening turn is still to come
    for step in replayed:
        image = image_item(step.index, step.observation)
        messages.append({"role": "user",
                         "content": opening_turn(image) if user is None else user + [image]})
        messages.append({"role": "assistant",
                         "content": defuse_control_tokens(strip_think(step.output.raw_text))})
        user = ([{"type": "text", "text": defuse_control_tokens(step.feedback + "\n")}]
                if step.feedback and profile.replay_feedback else [])
    current = image_item(state.step_index, obs)
    messages.append({"role": "user",
                     "content": opening_turn(current) if user is None else user + [current]})
    return BuiltPrompt(messages=messages, image_pngs=pngs, images=refs, converter=converter,
                       tool=tool, platform=state.platform,
                       pointer=obs.pointer if obs.pointer is not None else last_pointer(history),
                       profile=profile.name, profile_hash=profile.template_hash(), _pil=pil)


def parse_output(raw_text: str, prompt: BuiltPrompt, **fields: Any) -> PolicyOutput:
    """A PolicyOutput for `raw_text` answered to `prompt`: actions parsed in the prompt's
    dialect onto the current screen; `fields` fill the token/latency/model fields."""
    converter = prompt.converter
    # Lone surrogates (a server may send "\ud800" escapes) cannot be encoded as UTF-8:
    # the record could not be written. Replace them with U+FFFD first.
    valid = raw_text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    encoding_errors = ([] if valid == raw_text else
                       ["the response held invalid Unicode (lone surrogates), replaced by U+FFFD"])
    raw_text = valid
    last = prompt.messages[-1] if prompt.messages else {}
    if last.get("role") == "assistant" and isinstance(last.get("content"), str):
        raw_text = last["content"] + raw_text  # a prefilled turn: the answer includes it
    parsed = parse_tool_calls(raw_text, converter.dialect, converter.screen_size,
                              converter.image_size, pointer=prompt.pointer)
    errors = encoding_errors + list(parsed.errors)
    if not parsed.actions and not errors:
        errors.append("no <tool_call> block with a valid action was found in the response")
    fields.setdefault("prompt_profile", prompt.profile)
    fields.setdefault("prompt_profile_hash", prompt.profile_hash)
    return PolicyOutput(
        raw_text=raw_text, thought=parsed.thought, think=parsed.think,
        actions=parsed.actions, parse_errors=errors,
        messages=prompt.record_messages(), images=list(prompt.images), **fields,
    )


# Qwen3-VL-*-Thinking chat templates open the reasoning block in the generation prompt.
_THINKING_GENERATION_PROMPT = re.compile(r"<\|im_start\|>assistant(?:\\n|\n)<think>")
THINKING_MAX_NEW_TOKENS = 32768  # OSWorld's Qwen3VLAgent max_tokens / thinking_budget


def is_thinking_checkpoint(model: str, chat_template: str | None = None,
                           config: Any = None) -> bool:
    """Whether a checkpoint reasons before answering (Qwen3-VL-*-Thinking): its name says
    "Thinking", its chat template opens `<think>` in the generation prompt, or its config's
    architectures / name_or_path say so."""
    names = [model, str(getattr(config, "_name_or_path", "") or "")]
    if any("thinking" in name.lower() for name in names):
        return True
    return bool(chat_template and _THINKING_GENERATION_PROMPT.search(chat_template))


def generation_budget(explicit: int | None, profile: str, thinking: bool) -> int:
    """max_new_tokens: the explicit value, else 32768 for a Thinking checkpoint (whose
    reasoning a 512-token budget cuts before any action), else the profile's."""
    if explicit is not None:
        return explicit
    if thinking:
        return THINKING_MAX_NEW_TOKENS
    return get_profile(profile).max_new_tokens


def prompt_config_for(options: BaseModel, image_budget: ImageBudget,
                      dialect: Dialect | None = None) -> PromptConfig:
    """The PromptConfig of a policy's options (fields dialect, history_images,
    max_text_steps, system_prompt, include_extensions, prompt_profile): the profile's own
    settings, overridden by the options the user set explicitly. `dialect`, when given,
    wins over both (a Qwen2.5-VL checkpoint writes qwen25 pixels whatever the profile)."""
    explicit = options.model_fields_set
    profile = get_profile(getattr(options, "prompt_profile", None) or DEFAULT_PROFILE)
    values: dict[str, Any] = {
        "profile": profile.name, "image_budget": image_budget,
        "dialect": Dialect.QWEN3,
        "history_images": getattr(options, "history_images", 2),
        "max_text_steps": getattr(options, "max_text_steps", None),
        "system_prompt": getattr(options, "system_prompt", DEFAULT_SYSTEM_PROMPT),
        "include_extensions": getattr(options, "include_extensions", False),
    }
    option_dialect = getattr(options, "dialect", None)
    if dialect is not None:  # the caller's (e.g. the checkpoint's own: qwen25)
        values["dialect"] = dialect
    elif option_dialect is not None and ("dialect" in explicit or profile.name == DEFAULT_PROFILE):
        values["dialect"] = option_dialect
    elif profile.name != DEFAULT_PROFILE:
        values["dialect"] = profile.dialect
    if profile.name != DEFAULT_PROFILE and "history_images" not in explicit:
        values["history_images"] = profile.history_images
    return PromptConfig(**values)


__all__ = [
    "THINKING_MAX_NEW_TOKENS", "generation_budget", "is_thinking_checkpoint",
    "prompt_config_for", "DEFAULT_SYSTEM_PROMPT", "BuiltPrompt", "ImageBudget", "PromptConfig", "SamplingParams",
    "SAMPLING_PRESETS", "UnknownSamplingPreset", "apply_sampling_preset", "preset_sampling",
    "build_prompt", "parse_output", "png_sha256", "strip_think", "system_text",
]
