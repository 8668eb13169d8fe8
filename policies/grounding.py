"""Grounding prompt profiles: one screenshot, one instruction, one click.

A grounding profile reproduces how a published grounding harness prompts a model and
reads its answer, character for character, so that a score from `cua eval screenspot-pro`
means what the harness's score means. Each profile names its source; the golden tests
(tests/test_grounding_prompts.py) hold the reference's own rendered text.

- ``qwen3vl``: ScreenSpot-Pro's `models/qwen3vl.py` (fork
  anaicalledsolaris/ScreenSpot-Pro-GUI-Grounding @ 573b40ef, the Qwen3-VL reference
  implementation): a system prompt with a minimal `computer_use` tool that has only
  `left_click` on a "1000x1000" screen (its JSON text is reproduced as written, including
  the missing closing brace and `required` inside `properties`), the user turn is the image
  then the bare instruction, greedy decoding with 256 new tokens (`model_factory.py`'s
  `set_generation_config(temperature=0, max_new_tokens=256)` overrides the 10000 set in
  `load_model`), the *last* `<tool_call>` is read, and the point is divided by 1000.
- ``qwen2_5vl``: ScreenSpot-Pro's `models/qwen2_5vl.py` (likaixin2000/
  ScreenSpot-Pro-GUI-Grounding @ 588f1f25): "You are a helpful assistant." plus the
  Qwen2.5-VL cookbook's full `computer_use` tool whose resolution is the smart-resized
  image's (factor 28, min_pixels 3136, max_pixels 99,999,999), the assistant turn
  prefilled with `<tool_call>\\n{"name": "computer_use", "arguments": {"action":
  "left_click", "coordinate": [`, greedy decoding, the *first* call read, and the point
  divided by that resized size (absolute pixels of the resized image).

Both harnesses resize the screenshot themselves (PIL, bicubic) before the processor sees
it, and so do we. A 4-number coordinate is read as a box and its centre taken, as both
harnesses do. Models answer through the ordinary policies (`Qwen3VLPolicy.answer`,
`OpenAICompatPolicy.answer`) and their coordinate dialects (`actions.dialects`).

Where we differ: our tool-call reader (`actions.parsing`) repairs sloppy JSON that the
references' `json.loads` rejects (they count such answers as wrong_format), so a few
malformed answers may score here and not there.
"""

from __future__ import annotations

import io
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import ImageRef
from actions.dialects import CoordinateConverter, CoordinateError, Dialect, smart_resize
from actions.observation import Size, png_sha256
from actions.parsing import parse_tool_calls
from policies.prompting import BuiltPrompt, SamplingParams

__all__ = [
    "GROUNDING_PROFILES", "GroundingAnswer", "GroundingProfile", "get_grounding_profile",
    "read_grounding_answer",
]

_QWEN3VL_SYSTEM = (
    "You are a helpful assistant. The user will give you an instruction, and you MUST left "
    "click on the corresponding UI element via tool call. If you are not sure about where to "
    "click, guess a most likely one.\n\n# Tools\n\nYou may call one or more functions to assist "
    "with the user query.\n\nYou are provided with function signatures within <tools></tools> "
    "XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "computer_use", "description": "Use a mouse to '
    "interact with a computer.\n* The screen's resolution is 1000x1000.\n* Make sure to click "
    "any buttons, links, icons, etc with the cursor tip in the center of the element. \n* You "
    'can only use the left_click action to interact with the computer.", "parameters": '
    '{"properties": {"action": {"description": "The action to perform. The available actions '
    'are:\n* `left_click`: Click the left mouse button with coordinate (x, y).", "enum": '
    '["left_click"], "type": "string"}, "coordinate": {"description": "(x, y): The x (pixels '
    "from the left edge) and y (pixels from the top edge) coordinates to move the mouse to. "
    'Required only by `action=left_click`.", "type": "array"}, "required": ["action"], '
    '"type": "object"}}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

_QWEN25_ACTIONS = (
    "* `key`: Performs key down presses on the arguments passed in order, then performs key "
    "releases in reverse order.\n* `type`: Type a string of text on the keyboard.\n"
    "* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.\n"
    "* `left_click`: Click the left mouse button.\n* `left_click_drag`: Click and drag the "
    "cursor to a specified (x, y) pixel coordinate on the screen.\n* `right_click`: Click the "
    "right mouse button.\n* `middle_click`: Click the middle mouse button.\n* `double_click`: "
    "Double-click the left mouse button.\n* `scroll`: Performs a scroll of the mouse scroll "
    "wheel.\n* `wait`: Wait specified seconds for the change to happen.\n* `terminate`: "
    "Terminate the current task and report its completion status."
)
_QWEN25VL_SYSTEM = (
    "You are a helpful assistant.\n\n\n# Tools\n\nYou may call one or more functions to assist "
    "with the user query.\n\nYou are provided with function signatures within <tools></tools> "
    "XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name_for_human": "computer_use", "name": '
    '"computer_use", "description": "Use a mouse and keyboard to interact with a computer, and '
    "take screenshots.\n* This is an interface to a desktop GUI. You do not have access to a "
    "terminal or applications menu. You must click on desktop icons to start applications.\n"
    "* Some applications may take time to start or process actions, so you may need to wait "
    "and take successive screenshots to see the results of your actions. E.g. if you click on "
    "Firefox and a window doesn't open, try wait and taking another screenshot.\n* The "
    "screen's resolution is {width}x{height}.\n* Whenever you intend to move the cursor to "
    "click on an element like an icon, you should consult a screenshot to determine the "
    "coordinates of the element before moving the cursor.\n* If you tried clicking on a "
    "program or link but it failed to load, even after waiting, try adjusting your cursor "
    "position so that the tip of the cursor visually falls on the element that you want to "
    "click.\n* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
    "center of the element. Don't click boxes on their edges unless asked.\", \"parameters\": "
    '{"properties": {"action": {"description": "The action to perform. The available actions '
    'are:\n' + _QWEN25_ACTIONS + '", "enum": ["key", "type", "mouse_move", "left_click", '
    '"left_click_drag", "right_click", "middle_click", "double_click", "scroll", "wait", '
    '"terminate"], "type": "string"}, "keys": {"description": "Required only by '
    '`action=key`.", "type": "array"}, "text": {"description": "Required only by '
    '`action=type`.", "type": "string"}, "coordinate": {"description": "(x, y): The x '
    "(pixels from the left edge) and y (pixels from the top edge) coordinates to move the "
    'mouse to. Required only by `action=mouse_move` and `action=left_click_drag`.", "type": '
    '"array"}, "pixels": {"description": "The amount of scrolling to perform. Positive values '
    'scroll up, negative values scroll down. Required only by `action=scroll`.", "type": '
    '"number"}, "time": {"description": "The seconds to wait. Required only by '
    '`action=wait`.", "type": "number"}, "status": {"description": "The status of the task. '
    'Required only by `action=terminate`.", "type": "string", "enum": ["success", '
    '"failure"]}}, "required": ["action"], "type": "object"}, "args_format": "Format the '
    'arguments as a JSON object."}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
# The Qwen3-VL report's grounding prompt (Appendix B.11, "Screenspot | Screenspot-Pro |
# OSWorld-G"), in English as the OSWorld-G evaluation script found with the search tool
# (find_string "avoid edges unless asked", index file id 55944043921; its repository is not
# named by the index) quotes it: SYSTEM_PROMPT_TEMPLATE, line breaks as printed there,
# formatted with the screenshot's own width and height.
_QWEN3VL_REPORT_SYSTEM = (
    "You may call one or more functions to assist with the user query.\n"
    "You are provided with function signatures within <tools> . . . </tools> XML tags:\n"
    '<tools> { "name":"computer_use", "description": "Use a mouse to interact with a '
    "computer.\nThe screen's resolution is {width}x{height}.\" \"notes\": \"Click\n"
    "with the cursor tip centered on targets; avoid edges unless asked. Do not use\n"
    "other tools (type, key, scroll, left_click_drag). Only left_click and mouse_move\n"
    "are allowed. If you can't find the element, terminate and report failure.\",\n"
    '"parameters":{ "type":"object", "required":["action"], "properties":{ "action":{\n'
    '"type":"string", "enum":["mouse_move","left_click"], "description":"The\n'
    'action to perform." }, "coordinate":{ "type":"array", "description":"(x,\n'
    'y): pixels from left/top. Required for action=mouse_move and action=left_click." } } }\n'
    "}\n</tools>\n"
    "For each function call, return a JSON object with function name and arguments within "
    "<tool_call>\n. . . </tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n'
    "Additionally, if you think the task is infeasible (e.g., the task is not related to the "
    "image), return:\n<tool_call>\n"
    '{"name": "computer_use", "arguments": {"action": "terminate", "status": "failure"}}\n'
    "</tool_call>"
)

_QWEN25VL_PREFILL = (
    '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": ['
)


class GroundingProfile(BaseModel):
    """How one published harness prompts a model for grounding and reads the answer.

    system_text: the system message; ``{width}``/``{height}`` are replaced by the resized
        image's size (profiles whose tool states the model's pixel space).
    assistant_prefill: text the assistant turn starts with (the model continues it); the
        answer read is prefill + continuation.
    resize_*: the harness's own smart_resize of the screenshot before the processor
        (factor, min_pixels, max_pixels); the processor's budget still applies after it.
    read_call: which `<tool_call>` the harness reads when there are several.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    source: str = Field(..., description="repo, path and commit of the reference.")
    dialect: Dialect
    system_text: str
    assistant_prefill: str = ""
    resize_factor: int = Field(..., gt=0)
    resize_min_pixels: int = Field(..., gt=0)
    resize_max_pixels: int = Field(..., gt=0)
    read_call: Literal["first", "last"] = "last"
    greedy: bool = True
    max_new_tokens: int = Field(256, ge=1)
    system_size: Literal["resized", "screenshot"] = Field(
        "resized", description="whose size replaces {width}x{height} in the system text")
    terminate_refuses: bool = Field(
        False, description="a `terminate` call is the model declining (the report's prompt "
        "offers it); otherwise an answer without a coordinate is wrong_format")

    def sampling(self) -> SamplingParams:
        return SamplingParams.greedy_decoding() if self.greedy else SamplingParams()

    def resized_size(self, image_size: Size) -> Size:
        """The size the harness resizes a screenshot of `image_size` to."""
        height, width = smart_resize(image_size.height, image_size.width, self.resize_factor,
                                     self.resize_min_pixels, self.resize_max_pixels)
        return Size(width=width, height=height)

    def build(self, image: Any, instruction: str) -> BuiltPrompt:
        """The prompt for one sample: `image` is the screenshot (PIL), `instruction` the
        referring expression. Coordinates convert onto the screenshot's own pixels."""
        from PIL import Image

        screenshot_size = Size(width=image.width, height=image.height)
        resized = self.resized_size(screenshot_size)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        shown = (rgb if (rgb.width, rgb.height) == (resized.width, resized.height)
                 else rgb.resize((resized.width, resized.height), Image.Resampling.BICUBIC))
        buffer = io.BytesIO()
        shown.save(buffer, format="PNG", compress_level=1)
        png = buffer.getvalue()
        stated = resized if self.system_size == "resized" else screenshot_size
        system = (self.system_text.replace("{width}", str(stated.width))
                  .replace("{height}", str(stated.height)))
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": [{"type": "image", "image": shown},
                                         {"type": "text", "text": instruction}]},
        ]
        if self.assistant_prefill:
            messages.append({"role": "assistant", "content": self.assistant_prefill})
        converter = CoordinateConverter(self.dialect, screenshot_size, resized)
        return BuiltPrompt(messages=messages, image_pngs=[png],
                           images=[ImageRef(step=0, sha256=png_sha256(png))],
                           converter=converter, tool={}, platform="desktop", _pil=[shown])


GROUNDING_PROFILES: dict[str, GroundingProfile] = {
    "qwen3vl-report": GroundingProfile(
        name="qwen3vl-report",
        source="Qwen3-VL Technical Report, Appendix B.11 (Screenspot | Screenspot-Pro | "
               "OSWorld-G), English text as an OSWorld-G evaluation script quotes it "
               "(find_string 'avoid edges unless asked', index file id 55944043921)",
        dialect=Dialect.QWEN3, system_text=_QWEN3VL_REPORT_SYSTEM,
        # that script lets the processor resize (IMAGE_MAX_TOKEN_NUM 10000: 10,240,000 px)
        resize_factor=32, resize_min_pixels=32 * 32, resize_max_pixels=10_000 * 32 * 32,
        read_call="first", max_new_tokens=1024, system_size="screenshot",
        terminate_refuses=True),
    "qwen3vl": GroundingProfile(
        name="qwen3vl",
        source="anaicalledsolaris/ScreenSpot-Pro-GUI-Grounding models/qwen3vl.py @ "
               "573b40ef0425ab384b5ffc2817faafb99c1a8b60 (Qwen3VLModel, transformers)",
        dialect=Dialect.QWEN3, system_text=_QWEN3VL_SYSTEM,
        resize_factor=32, resize_min_pixels=32 * 32, resize_max_pixels=99_999_999,
        read_call="last"),
    "qwen2_5vl": GroundingProfile(
        name="qwen2_5vl",
        source="likaixin2000/ScreenSpot-Pro-GUI-Grounding models/qwen2_5vl.py @ "
               "588f1f25a59318d49cf2a657e8dc18529c723713 (Qwen2_5VLModel, transformers)",
        dialect=Dialect.QWEN25, system_text=_QWEN25VL_SYSTEM,
        assistant_prefill=_QWEN25VL_PREFILL,
        resize_factor=28, resize_min_pixels=3136, resize_max_pixels=99_999_999,
        read_call="first"),
}


def get_grounding_profile(name: str) -> GroundingProfile:
    """The profile called `name`, or KeyError listing the choices."""
    try:
        return GROUNDING_PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown grounding profile {name!r}: use one of "
                       f"{', '.join(sorted(GROUNDING_PROFILES))}") from None


class GroundingAnswer(BaseModel):
    """What a grounding answer says, in the screenshot's pixels.

    point_px: the predicted point (unrounded; a predicted box's centre), or None when no
        point could be read (an unparseable answer). refused: the model declined — a
        negative point (OSWorld-G's refusal convention) or, under a profile that offers
        it, a `terminate` call. error: why no point was read.
    """

    model_config = ConfigDict(frozen=True)

    point_px: tuple[float, float] | None = None
    refused: bool = False
    error: str | None = None
    point_frac: tuple[float, float] | None = Field(
        None, description="the point as fractions of the image, as the ScreenSpot-Pro "
        "harness computes it (the model's value / its dialect's extent: x / 1000, or x / "
        "the resized width): its metric compares these with box / img_size")


def read_grounding_answer(raw_text: str, converter: CoordinateConverter,
                          read_call: Literal["first", "last"] = "last",
                          terminate_refuses: bool = False) -> GroundingAnswer:
    """The point a grounding answer names (see GroundingAnswer).

    `raw_text` is the whole answer (a prefill included); `converter` maps the model's
    dialect onto the screenshot. A call's `coordinate` may hold [x, y] or a box
    [x1, y1, x2, y2] (its centre is taken), as the ScreenSpot-Pro harnesses accept.
    `terminate_refuses`: a `terminate` call (whatever its status) is a refusal, as the
    OSWorld-G script scores the report's prompt (`args.get("action") == "terminate"`).
    """
    parsed = parse_tool_calls(raw_text, converter.dialect, converter.screen_size,
                              converter.image_size)

    def readable(call: dict[str, Any]) -> bool:
        arguments = call.get("arguments")
        return isinstance(arguments, dict) and (
            arguments.get("coordinate") is not None
            or (terminate_refuses and arguments.get("action") == "terminate"))

    calls = [c for c in parsed.calls if readable(c)]
    if not calls:
        problem = "; ".join(parsed.errors) or "no tool call with a coordinate"
        return GroundingAnswer(error=problem)
    arguments = (calls[0] if read_call == "first" else calls[-1])["arguments"]
    if terminate_refuses and arguments.get("action") == "terminate":
        return GroundingAnswer(refused=True)
    coordinate = arguments["coordinate"]
    try:
        values = [float(v) for v in coordinate]
    except (TypeError, ValueError):
        return GroundingAnswer(error=f"coordinate {coordinate!r} is not a list of numbers")
    if len(values) == 4:
        values = [(values[0] + values[2]) / 2, (values[1] + values[3]) / 2]
    if len(values) != 2:
        return GroundingAnswer(error=f"coordinate {coordinate!r} has {len(values)} numbers, "
                               "not 2 (a point) or 4 (a box)")
    try:
        x_px, y_px = converter.to_screen_exact(values[0], values[1])
    except CoordinateError as exc:
        return GroundingAnswer(error=str(exc))
    extent_x, extent_y = converter.model_extent
    return GroundingAnswer(point_px=(x_px, y_px), refused=values[0] < 0 and values[1] < 0,
                           point_frac=(values[0] / extent_x, values[1] / extent_y))
