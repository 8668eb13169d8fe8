"""Acting: one canonical action becomes real mouse and keyboard events on the page.

`Acting` is the part of `WebEnvironment` that executes actions (`page.mouse`,
`page.keyboard`, navigation under the domain allowlist). Coordinates are CSS pixels of the
viewport. A bad action (off screen, not possible in a browser) comes back as an error
message for `Observation.action_error`, never as an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actions.models import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    Navigate,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    Type,
    Wait,
    mobile_key_error,
)
from actions.parsing import pointer_after
from environments.web.config import PLAYWRIGHT_KEYS, WebConfig, host_allowed


class Acting:
    """Executes actions on the current tab (see module docstring)."""

    config: WebConfig
    page: Any
    last_answer: str | None
    _pointer: tuple[int, int]

    _browser_alive: Callable[[], bool]  # BrowserSide

    def _in_screen(self, x: int, y: int) -> str | None:
        size = self.config.viewport
        if x >= size.width or y >= size.height:
            return f"point ({x}, {y}) is outside the {size} screen"
        return None

    def _execute(self, action: Action) -> str | None:
        """Perform one action; return an error message instead of raising for bad actions."""
        page = self.page
        mouse, keyboard = page.mouse, page.keyboard
        match action:
            case Click(x=x, y=y, button=button, clicks=clicks):
                if error := self._in_screen(x, y):
                    return error
                mouse.click(x, y, button=button, click_count=clicks)
            case MouseMove(x=x, y=y):
                if error := self._in_screen(x, y):
                    return error
                mouse.move(x, y)
            case Drag(start_x=x0, start_y=y0, end_x=x1, end_y=y1):
                if error := self._in_screen(x0, y0) or self._in_screen(x1, y1):
                    return error
                mouse.move(x0, y0)
                mouse.down()
                # intermediate moves: drag libraries need mousemove events between the ends
                mouse.move(x1, y1, steps=max(2, int(max(abs(x1 - x0), abs(y1 - y0)) // 20)))
                mouse.up()
            case Scroll(direction=direction, amount=amount, x=x, y=y):
                if x is None or y is None:
                    x, y = self.config.viewport.width // 2, self.config.viewport.height // 2
                elif error := self._in_screen(x, y):
                    return error
                mouse.move(x, y)
                self._pointer = (x, y)
                distance = amount * self.config.scroll_notch_px
                dx = {"left": -distance, "right": distance}.get(direction, 0)
                dy = {"up": -distance, "down": distance}.get(direction, 0)
                mouse.wheel(dx, dy)
            case Type(text=text):
                keyboard.type(text)  # characters off the US layout arrive as text input
            case Key(keys=keys):
                return self._press(keys)
            case LongPress(x=x, y=y, duration_s=duration_s):
                if error := self._in_screen(x, y):
                    return error
                mouse.move(x, y)
                mouse.down()
                page.wait_for_timeout(duration_s * 1000)  # the hold is the action itself
                mouse.up()
            case Swipe():
                return "swipe is a touch gesture; on the web use scroll (or drag to move things)"
            case SystemButton(button="back"):
                page.go_back(wait_until="commit", timeout=self.config.navigation_timeout_s * 1000)
            case SystemButton(button="enter"):
                keyboard.press("Enter")
            case SystemButton(button=button):
                return (f"system button {button!r} does not exist in a browser; use navigate to "
                        "open a page or key to press keys")
            case OpenApp(name=name):
                return f"open_app({name!r}) is not available on the web; use navigate with a URL"
            case Navigate(url=url):
                return self._navigate(url)
            case Wait(seconds=seconds):
                page.wait_for_timeout(seconds * 1000)  # waiting is what was asked for
            case Answer(text=text):
                self.last_answer = text
            case Terminate():
                pass
            case _:
                return f"action {action.type!r} is not supported by the web environment"
        self._pointer = pointer_after(action, self._pointer) or self._pointer
        return None

    def _press(self, keys: tuple[str, ...]) -> str | None:
        keyboard = self.page.keyboard
        if error := mobile_key_error(keys, "a browser"):
            return error
        names: list[str] = []
        for key in keys:
            if key in PLAYWRIGHT_KEYS:
                names.append(PLAYWRIGHT_KEYS[key])
            elif len(key) == 1 and key.isascii() and key.isalnum() and len(keys) > 1:
                # key codes, so that a held Shift gives "A" (a character key would not)
                names.append(f"Key{key.upper()}" if key.isalpha() else f"Digit{key}")
            elif len(key) == 1 and " " < key <= "~":
                names.append(key)
            elif len(keys) == 1:
                keyboard.insert_text(key)  # a lone non-ASCII character: type it as text
                return None
            else:
                return f"cannot press {key!r} together with other keys (not on a US keyboard)"
        if len(names) == 1:
            keyboard.press(names[0])
            return None
        for name in names:
            keyboard.down(name)
        for name in reversed(names):
            keyboard.up(name)
        return None

    def _navigate(self, url: str) -> str | None:
        from playwright.sync_api import Error as PlaywrightError

        if "://" not in url and not url.startswith(("about:", "data:")):
            url = "https://" + url
        if not host_allowed(url, self.config.allowed_domains):
            return (f"navigation to {url} refused: outside allowed domains "
                    f"{self.config.allowed_domains}")
        try:
            self.page.goto(url, wait_until="commit",
                           timeout=self.config.navigation_timeout_s * 1000)
        except PlaywrightError as error:
            if not self._browser_alive():
                raise
            return f"could not open {url}: {str(error).splitlines()[0]}"
        return None

    def _recover_from_blocked_navigation(self) -> bool:
        """Leave the error page Chromium may show for a refused navigation; True if left."""
        page = self.page
        if page.url.startswith("chrome-error://"):
            page.go_back(wait_until="commit")
            return True
        return False
