"""The canonical action space shared by desktop, mobile and web environments.

Every coordinate here is in *screen pixels of the environment's input space*: the
space in which the driver clicks (CSS pixels for a browser page, X screen pixels for a
desktop, physical touch pixels for Android). The observation says that space's size.
Model dialects (Qwen3-VL's 0..1000 grid, Qwen2.5-VL's resized-image pixels, normalized
[0, 1]) are converted to and from this space in `actions.dialects` only.

Actions are frozen pydantic models, one class per `type`, joined in the discriminated
union `Action`. Use `parse_action(dict)` to validate untyped data.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

PixelCoord = Annotated[int, Field(ge=0, description="Pixels of the input space, from the left/top edge.")]


class _ActionBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Click(_ActionBase):
    """Press and release a mouse button (or tap, on touch screens) at (x, y)."""

    type: Literal["click"] = "click"
    x: PixelCoord
    y: PixelCoord
    button: Literal["left", "right", "middle"] = "left"
    clicks: int = Field(1, ge=1, le=3, description="1 = single, 2 = double, 3 = triple click.")


class MouseMove(_ActionBase):
    """Move the pointer to (x, y) without pressing a button (hover)."""

    type: Literal["mouse_move"] = "mouse_move"
    x: PixelCoord
    y: PixelCoord


class Drag(_ActionBase):
    """Press the left button at the start point, move to the end point, release."""

    type: Literal["drag"] = "drag"
    start_x: PixelCoord
    start_y: PixelCoord
    end_x: PixelCoord
    end_y: PixelCoord


class Scroll(_ActionBase):
    """Turn the mouse wheel `amount` notches in `direction`, at (x, y) if given.

    `amount` counts wheel notches (what pyautogui calls clicks); an environment maps one
    notch to its own pixel distance (a browser scrolls about 100 CSS px per notch).
    `pixels`: the model's own signed value (positive up / right) where `amount` does not
    say it exactly (a fraction, more than 100 notches), for a harness that sends it as
    written (OSWorld's Qwen3-VL runner: `pyautogui.scroll(pixels)`); None otherwise.
    """

    type: Literal["scroll"] = "scroll"
    direction: Literal["up", "down", "left", "right"]
    amount: int = Field(..., ge=1, le=100)
    x: PixelCoord | None = None
    y: PixelCoord | None = None
    pixels: int | float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Scroll:
        if (self.x is None) != (self.y is None):
            raise ValueError("scroll position needs both x and y, or neither")
        if self.pixels is not None and (self.pixels > 0) != (self.direction in ("up", "right")):
            raise ValueError(f"scroll pixels {self.pixels} disagree with direction "
                             f"{self.direction!r} (positive is up or right)")
        return self


class Type(_ActionBase):
    """Type text into the focused element, character by character (any Unicode)."""

    type: Literal["type"] = "type"
    text: str = Field(..., min_length=1)


# Canonical key names: lowercase; letters/digits as themselves; named keys below.
KEY_ALIASES: dict[str, str] = {
    "control": "ctrl", "ctl": "ctrl", "cmd": "meta", "command": "meta", "super": "meta",
    "win": "meta", "windows": "meta", "option": "alt", "return": "enter", "esc": "escape",
    "del": "delete", "ins": "insert", "pgup": "pageup", "page_up": "pageup",
    "pgdn": "pagedown", "page_down": "pagedown", "arrowup": "up", "arrowdown": "down",
    "arrowleft": "left", "arrowright": "right", "spacebar": "space", " ": "space",
    "bksp": "backspace", "back_space": "backspace", "caps_lock": "capslock",
}
NAMED_KEYS: frozenset[str] = frozenset({
    "ctrl", "shift", "alt", "meta", "enter", "escape", "tab", "space", "backspace", "delete",
    "insert", "home", "end", "pageup", "pagedown", "up", "down", "left", "right",
    "capslock", "printscreen", "menu",
    *(f"f{i}" for i in range(1, 13)),
})


# The mobile key space: Android keys with no keyboard counterpart, as the lowercase
# android.view.KeyEvent name without its KEYCODE_ prefix (the mobile_use `key` action takes
# "adb's keyevent syntax": "volume_up", "KEYCODE_CAMERA", ...). Android keys that are
# keyboard keys map onto the keyboard names (ANDROID_KEY_ALIASES); back / home / app_switch
# are system buttons (the parser makes them SystemButton actions).
MOBILE_KEYS: frozenset[str] = frozenset({
    "volume_up", "volume_down", "volume_mute", "power", "camera", "clear", "call", "endcall",
    "search", "notification", "dpad_center", "media_play_pause", "media_stop", "media_next",
    "media_previous", "media_play", "media_pause", "mute", "brightness_down", "brightness_up",
    "sleep", "wakeup", "settings", "contacts", "calendar", "music", "calculator", "explorer",
    "envelope", "assist", "voice_assist", "zoom_in", "zoom_out", "focus", "headsethook",
    "cut", "copy", "paste",
})
ANDROID_KEY_ALIASES: dict[str, str] = {
    "del": "backspace", "forward_del": "delete", "move_home": "home", "move_end": "end",
    "page_up": "pageup", "page_down": "pagedown", "dpad_up": "up", "dpad_down": "down",
    "dpad_left": "left", "dpad_right": "right", "ctrl_left": "ctrl", "shift_left": "shift",
    "alt_left": "alt", "meta_left": "meta", "volumeup": "volume_up",
    "volumedown": "volume_down", "volumemute": "volume_mute",
}


def normalize_key(name: str) -> str:
    """Return the canonical name of one key, or raise ValueError naming the bad key.

    Keyboard keys (NAMED_KEYS, single characters) and the mobile key space (MOBILE_KEYS;
    "KEYCODE_" names are read as Android's: KEYCODE_DEL is backspace)."""
    key = name.strip().lower() if len(name.strip()) > 0 else name
    if key.startswith("keycode_") and len(key) > len("keycode_"):
        key = key.removeprefix("keycode_")
        key = ANDROID_KEY_ALIASES.get(key, key)
    key = KEY_ALIASES.get(key, ANDROID_KEY_ALIASES.get(key, key))
    if key in NAMED_KEYS or key in MOBILE_KEYS or len(key) == 1:
        return key
    raise ValueError(
        f"unknown key {name!r}: use a single character, one of {sorted(NAMED_KEYS)}, or an "
        f"Android key (mobile): {sorted(MOBILE_KEYS)} (KEYCODE_ names are accepted)"
    )


def mobile_key_error(keys: tuple[str, ...], where: str) -> str | None:
    """The action error for Android-only keys pressed where there are none, else None."""
    mobile = [k for k in keys if k in MOBILE_KEYS]
    if not mobile:
        return None
    return (f"{', '.join(mobile)}: Android key(s) of the mobile key space; {where} has no "
            "such key")


class Key(_ActionBase):
    """Press a key combination: all keys down in order, then released in reverse.

    Example: ["ctrl", "c"]. Names are normalized (Control -> ctrl, Return -> enter).
    """

    type: Literal["key"] = "key"
    keys: tuple[str, ...] = Field(..., min_length=1, max_length=6)

    @field_validator("keys")
    @classmethod
    def _normalize(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_key(k) for k in keys)


class LongPress(_ActionBase):
    """Touch and hold at (x, y) for `duration_s` seconds (mobile)."""

    type: Literal["long_press"] = "long_press"
    x: PixelCoord
    y: PixelCoord
    duration_s: float = Field(1.0, gt=0, le=30)


class Swipe(_ActionBase):
    """Touch at the start point, slide to the end point, lift (mobile)."""

    type: Literal["swipe"] = "swipe"
    start_x: PixelCoord
    start_y: PixelCoord
    end_x: PixelCoord
    end_y: PixelCoord
    duration_s: float = Field(0.3, gt=0, le=10)


class SystemButton(_ActionBase):
    """Press a system button (Android navigation keys; enter on any platform)."""

    type: Literal["system_button"] = "system_button"
    button: Literal["back", "home", "menu", "enter"]


class OpenApp(_ActionBase):
    """Launch an application by its human-readable name (e.g. "Contacts")."""

    type: Literal["open_app"] = "open_app"
    name: str = Field(..., min_length=1)


class Navigate(_ActionBase):
    """Load a URL in the browser (web only)."""

    type: Literal["navigate"] = "navigate"
    url: str = Field(..., min_length=1)


class Wait(_ActionBase):
    """Do nothing for `seconds`, then observe again."""

    type: Literal["wait"] = "wait"
    seconds: float = Field(1.0, ge=0, le=60)


class Answer(_ActionBase):
    """Give the answer to an information-seeking task."""

    type: Literal["answer"] = "answer"
    text: str


class Terminate(_ActionBase):
    """End the episode, stating whether the agent believes it succeeded."""

    type: Literal["terminate"] = "terminate"
    status: Literal["success", "failure"]


Action = Annotated[
    Click | MouseMove | Drag | Scroll | Type | Key | LongPress | Swipe | SystemButton
    | OpenApp | Navigate | Wait | Answer | Terminate,
    Field(discriminator="type"),
]
ACTION_TYPES: tuple[type[BaseModel], ...] = (
    Click, MouseMove, Drag, Scroll, Type, Key, LongPress, Swipe, SystemButton, OpenApp,
    Navigate, Wait, Answer, Terminate,
)
ActionAdapter: TypeAdapter[Action] = TypeAdapter(Action)

# Actions that end an episode when executed.
TERMINAL_ACTION_TYPES: frozenset[str] = frozenset({"terminate", "answer"})


def parse_action(data: dict) -> Action:
    """Validate a plain dict (e.g. from JSON) into a canonical action."""
    return ActionAdapter.validate_python(data)
