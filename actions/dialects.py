"""Coordinate dialects: how a model writes a screen position, and the one conversion.

Canonical actions hold *input-space pixels* (see `actions.models`). Models write positions
in their own dialect:

- ``qwen3``: Qwen3-VL's relative grid, integers 0..1000 over the image the model saw
  (the tool description says "The screen's resolution is 1000x1000"). (0, 0) is the top
  left corner, (1000, 1000) the bottom right one.
- ``qwen3_999``: the same grid scaled by 999 instead of 1000, as some harnesses (OSWorld's
  Qwen3-VL agent) do.
- ``qwen25``: Qwen2.5-VL's absolute pixels of the smart-resized image the model saw
  (`smart_resize` below gives that size).
- ``normalized``: floats in [0, 1], fractions of the width and height.
- ``qwen3_resized``: the 0..1000 grid as GUI-Owl 1.5's desktop runner executes it:
  `int(v / 1000 * resized)` taken as a screen pixel, where `resized` is the smart-resized
  image size (factor 16), *not* mapped back to the screen. On a 1920x1080 screen (seen as
  1920x1088) y = 500 is pixel 544, not 540; points past the screen are clamped onto it.

`CoordinateConverter` is the only place that converts between a dialect and input-space
pixels; everything else (parsing, rendering, policies) goes through it.
"""

from __future__ import annotations

import math
from enum import StrEnum

from actions.observation import Size

__all__ = [
    "QWEN25_FACTOR", "QWEN25_MAX_PIXELS", "QWEN25_MIN_PIXELS", "QWEN3_FACTOR",
    "QWEN3_MAX_PIXELS", "QWEN3_MIN_PIXELS", "CoordinateConverter", "CoordinateError",
    "Dialect", "model_image_size", "smart_resize",
]


class Dialect(StrEnum):
    """How a model writes coordinates (see the module docstring)."""

    QWEN3 = "qwen3"
    QWEN3_999 = "qwen3_999"
    QWEN25 = "qwen25"
    NORMALIZED = "normalized"
    QWEN3_RESIZED = "qwen3_resized"

    @classmethod
    def coerce(cls, value: Dialect | str) -> Dialect:
        """Return the Dialect named by `value`, or raise ValueError listing the choices."""
        if isinstance(value, Dialect):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(d.value for d in cls)
            raise ValueError(f"unknown coordinate dialect {value!r}: use one of {choices}") from None


# Qwen3-VL: vision patch 16 px, 2x2 patch merge -> one token per 32x32 px. Pixel bounds
# as in the released checkpoints' preprocessor_config.json
# (size = {"shortest_edge": 65536, "longest_edge": 16777216}).
QWEN3_FACTOR = 32
QWEN3_MIN_PIXELS = 65_536
QWEN3_MAX_PIXELS = 16_777_216
# Qwen2.5-VL: patch 14, 2x2 merge -> 28 px; bounds from its preprocessor_config.json.
QWEN25_FACTOR = 28
QWEN25_MIN_PIXELS = 3_136
QWEN25_MAX_PIXELS = 12_845_056


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN3_FACTOR,
    min_pixels: int = QWEN3_MIN_PIXELS,
    max_pixels: int = QWEN3_MAX_PIXELS,
) -> tuple[int, int]:
    """Return the (height, width) the Qwen-VL image processor resizes an image to.

    The same algorithm as transformers' `qwen2_vl.image_processing_qwen2_vl.smart_resize`
    (used by Qwen2-VL, Qwen2.5-VL and Qwen3-VL): both sides become multiples of `factor`,
    the area lands in [min_pixels, max_pixels], and the aspect ratio stays close. The
    defaults are Qwen3-VL's (factor 32); pass `factor=QWEN25_FACTOR`,
    `min_pixels=QWEN25_MIN_PIXELS`, `max_pixels=QWEN25_MAX_PIXELS` for Qwen2.5-VL.

    Raises ValueError when the aspect ratio exceeds 200 (as transformers does) or a side
    is not positive.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image sides must be positive, got height={height} width={width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got "
            f"{max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def model_image_size(
    screenshot_size: Size,
    factor: int = QWEN3_FACTOR,
    min_pixels: int = QWEN3_MIN_PIXELS,
    max_pixels: int = QWEN3_MAX_PIXELS,
) -> Size:
    """The size of the image a Qwen-VL model sees for a screenshot of `screenshot_size`."""
    height, width = smart_resize(
        screenshot_size.height, screenshot_size.width, factor, min_pixels, max_pixels
    )
    return Size(width=width, height=height)


class CoordinateError(ValueError):
    """A model coordinate that cannot be converted (NaN, infinite, not a number)."""


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


class CoordinateConverter:
    """Converts positions between one model dialect and input-space pixels.

    `screen_size` is the environment's input space (where actions click). `image_size`
    is the size of the image the model saw; only ``qwen25`` needs it (its coordinates
    are pixels of that image). Grid and normalized dialects are relative to the whole
    image, which shows the whole screen, so they map straight onto the screen.

    Model positions outside the dialect's range (below 0, above the grid maximum or the
    image size) are clamped onto the screen edge and reported as clamped; a position
    inside the range never is.
    """

    def __init__(self, dialect: Dialect | str, screen_size: Size, image_size: Size | None = None):
        self.dialect = Dialect.coerce(dialect)
        self.screen_size = screen_size
        self.image_size = image_size
        if self.dialect in (Dialect.QWEN25, Dialect.QWEN3_RESIZED) and image_size is None:
            raise ValueError(
                f"the {self.dialect.value} dialect maps onto the resized image the model "
                "saw: pass image_size (e.g. actions.dialects.model_image_size("
                "screenshot_size, factor=..., ...))"
            )

    @property
    def model_extent(self) -> tuple[float, float]:
        """The largest model coordinate (x, y): the grid size, image size or 1.0."""
        if self.dialect in (Dialect.QWEN3, Dialect.QWEN3_RESIZED):
            return 1000.0, 1000.0
        if self.dialect is Dialect.QWEN3_999:
            return 999.0, 999.0
        if self.dialect is Dialect.NORMALIZED:
            return 1.0, 1.0
        assert self.image_size is not None
        return float(self.image_size.width), float(self.image_size.height)

    @property
    def resolution_text(self) -> str:
        """The "WxH" the tool description tells the model (grid or resized image)."""
        if self.dialect in (Dialect.QWEN3, Dialect.QWEN3_999, Dialect.QWEN3_RESIZED):
            # Harnesses using the 0..999 scale still describe a 1000x1000 screen.
            return "1000x1000"
        if self.dialect is Dialect.NORMALIZED:
            return "1x1"
        assert self.image_size is not None
        return f"{self.image_size.width}x{self.image_size.height}"

    def _axis_to_screen(self, value: float, extent: float, screen_px: int) -> tuple[int, bool]:
        if not math.isfinite(value):
            raise CoordinateError(f"coordinate {value!r} is not a finite number")
        clamped = value < 0 or value > extent
        pixel = _round_half_up(min(max(value, 0.0), extent) / extent * screen_px)
        return min(max(pixel, 0), screen_px - 1), clamped

    def to_screen(self, x: float, y: float) -> tuple[int, int, bool]:
        """Model position -> (x_px, y_px, clamped) in input-space pixels.

        `clamped` is True when the model position lay outside the dialect's range and was
        moved onto the screen edge. Raises CoordinateError for NaN or infinite values.
        """
        if self.dialect is Dialect.QWEN3_RESIZED:
            return self._resized_to_screen(float(x), float(y))
        extent_x, extent_y = self.model_extent
        x_px, clamped_x = self._axis_to_screen(float(x), extent_x, self.screen_size.width)
        y_px, clamped_y = self._axis_to_screen(float(y), extent_y, self.screen_size.height)
        return x_px, y_px, clamped_x or clamped_y

    def _resized_to_screen(self, x: float, y: float) -> tuple[int, int, bool]:
        """qwen3_resized: int(v / 1000 * resized) as a screen pixel (GUI-Owl's runner)."""
        assert self.image_size is not None
        out: list[int] = []
        clamped = False
        for value, image_px, screen_px in ((x, self.image_size.width, self.screen_size.width),
                                           (y, self.image_size.height, self.screen_size.height)):
            if not math.isfinite(value):
                raise CoordinateError(f"coordinate {value!r} is not a finite number")
            pixel = int(min(max(value, 0.0), 1000.0) / 1000 * image_px)
            clamped = clamped or value < 0 or value > 1000 or pixel > screen_px - 1
            out.append(min(max(pixel, 0), screen_px - 1))
        return out[0], out[1], clamped

    def to_screen_exact(self, x: float, y: float) -> tuple[float, float]:
        """Model position -> unrounded, unclamped input-space position (floats).

        Grounding metrics judge a point against a region's edges the way the published
        evaluators do (the model's fraction times the image size, no rounding), and a
        refusal is a negative point, which `to_screen` would clamp away. Raises
        CoordinateError for NaN or infinite values.
        """
        if not (math.isfinite(float(x)) and math.isfinite(float(y))):
            raise CoordinateError(f"coordinate ({x!r}, {y!r}) is not a finite number")
        extent_x, extent_y = self.model_extent
        if self.dialect is Dialect.QWEN3_RESIZED:
            assert self.image_size is not None
            return (float(x) / extent_x * self.image_size.width,
                    float(y) / extent_y * self.image_size.height)
        return (float(x) / extent_x * self.screen_size.width,
                float(y) / extent_y * self.screen_size.height)

    def to_model(self, x_px: int, y_px: int) -> tuple[int | float, int | float]:
        """Input-space pixels -> the model's coordinates (ints; floats for normalized).

        Grid and image dialects quantize: a screen wider than the grid maps several
        pixels onto one grid point, and `to_screen(*to_model(p))` may differ from `p` by
        up to half a grid step. Normalized coordinates keep 6 decimals, exact for any
        screen under a million pixels wide.
        """
        extent_x, extent_y = self.model_extent
        space = (self.image_size if self.dialect is Dialect.QWEN3_RESIZED and self.image_size
                 else self.screen_size)
        fx = x_px / space.width
        fy = y_px / space.height
        if self.dialect is Dialect.NORMALIZED:
            return round(fx, 6), round(fy, 6)
        return (
            min(_round_half_up(fx * extent_x), int(extent_x)),
            min(_round_half_up(fy * extent_y), int(extent_y)),
        )

    def __repr__(self) -> str:
        image = f", image_size={self.image_size}" if self.image_size else ""
        return f"CoordinateConverter({self.dialect.value!r}, screen_size={self.screen_size}{image})"
