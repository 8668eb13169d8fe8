"""What an environment shows the agent after reset or a step."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Size(BaseModel):
    """A width and height in pixels."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(..., gt=0)
    height: int = Field(..., gt=0)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class SettleReport(BaseModel):
    """How the screen of an observation was waited for (see docs/settling.md).

    `reason`: why the wait ended — "page_idle" (the page script reported nothing pending),
    "quiet" (no change outside ambient regions for the quiet window), "stable" (two equal
    frames), "fixed_sleep", or "timeout" (`settled` is then False). `waited_for`: what
    held it (timers, requests, animations, mutations, images, loading, navigation,
    screen). `masked`: screenshot-pixel boxes [x0, y0, x1, y1] (x1, y1 exclusive) ignored
    as ambient motion; `ambient`: what the page script ignored as ambient.
    """

    model_config = ConfigDict(frozen=True)

    settled: bool
    reason: str
    frames: int = Field(..., ge=0, description="Frames captured while waiting.")
    waited_for: list[str] = Field(default_factory=list)
    masked: list[list[int]] = Field(default_factory=list)
    ambient: list[str] = Field(default_factory=list)


class Observation(BaseModel):
    """One look at the screen.

    `screen_size` is the input space (where the driver clicks; every canonical action
    coordinate lives in it). `screenshot_size` is the size of the PNG in `screenshot`;
    they differ with HiDPI scaling or Android density.
    """

    model_config = ConfigDict(frozen=True)

    screenshot_png: bytes = Field(..., repr=False, description="Lossless PNG bytes.")
    screen_size: Size
    screenshot_size: Size
    instruction: str | None = Field(
        None, description="Task instruction, when the environment determines it at reset "
        "(e.g. the MiniWoB utterance); None on step observations.",
    )
    a11y_tree: str | None = Field(None, repr=False, description="Accessibility tree / DOM text.")
    url: str | None = None
    app: str | None = Field(None, description="Foreground app or window, where known.")
    pointer: tuple[int, int] | None = Field(
        None, description="Where the mouse pointer is, input-space pixels (x, y), where the "
        "environment knows it (web, desktop; None on touch screens). A cookbook-style "
        "left_click_drag that names only its target drags from here.")
    timestamp: float = Field(default_factory=time.time, description="Unix time of the capture.")
    execute_s: float | None = Field(None, description="Seconds spent executing the action.")
    settle_s: float | None = Field(None, description="Seconds spent waiting for the UI to settle.")
    settle: SettleReport | None = Field(None, description="Whether and how the UI settled.")
    action_error: str | None = Field(
        None, description="Why the action could not be executed (refused, invalid target, ...); "
        "the episode goes on, the policy sees this message.",
    )
    done: bool = Field(
        False, description="The environment itself ended the episode (e.g. MiniWoB's "
        "WOB_DONE_GLOBAL after a submit); the loop stops and calls evaluate().",
    )
    info: dict[str, Any] = Field(default_factory=dict)

    def image(self):  # -> PIL.Image.Image
        """Decode the screenshot (PIL is imported lazily: actions stays light)."""
        from PIL import Image

        return Image.open(io.BytesIO(self.screenshot_png))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_sha256(png: bytes) -> str:
    """The content address of a screenshot: lowercase hex SHA-256 of its PNG bytes.

    The trajectory store names screenshot files by it and policies put it into
    `ImageRef.sha256`, so prompts and stored screenshots refer to each other.
    """
    return hashlib.sha256(png).hexdigest()


def png_size(png: bytes) -> Size:
    """Width and height from a PNG's IHDR chunk (no decoding); ValueError if not a PNG."""
    if png[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG")
    return Size(width=int.from_bytes(png[16:20], "big"), height=int.from_bytes(png[20:24], "big"))
