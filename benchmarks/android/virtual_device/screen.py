"""The virtual device's screen: small mobile web apps in headless Chromium.

Each app is one page of a shared browser context, all served from the same origin
(`http://device.vdev/`, answered from the package's `apps/` folder; nothing touches the
network), so app data kept in `localStorage` is visible to the device for `content` and
`settings` commands. The page at the top of the activity stack is "the screen": its
screenshot is what `screencap` returns. Touch input arrives as real mouse events at CSS
pixels = physical pixels / (density / 160); an init script shared by every page turns a
held press into a `longpress` event and a moving press into scrolling, as Android's
gesture detector does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from playwright.async_api import Browser, BrowserContext, Page, Playwright, Route, async_playwright

logger = logging.getLogger(__name__)

APPS_DIR = Path(__file__).with_name("apps")
ORIGIN = "http://device.vdev"
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--font-render-hinting=none", "--hide-scrollbars",
]


@dataclass(frozen=True)
class App:
    """An installed app: `package`, launcher `label`, main `activity` and its page file."""

    package: str
    label: str
    page: str
    activity: str = ".MainActivity"
    launchable: bool = True

    @property
    def component(self) -> str:
        return f"{self.package}/{self.activity}"


APPS: tuple[App, ...] = (
    App("com.vdev.launcher", "Launcher", "launcher.html", ".Launcher", launchable=False),
    App("com.vdev.contacts", "Contacts", "contacts.html"),
    App("com.vdev.notes", "Notes", "notes.html"),
    App("com.vdev.tasks", "Tasks", "tasks.html"),
    App("com.vdev.settings", "Settings", "settings.html"),
    App("com.vdev.clock", "Clock", "clock.html"),
    # Not on the launcher: reactions chosen by a test (tests/test_settle_android.py).
    App("com.vdev.settleprobe", "Settle probe", "settleprobe.html"),
    # The activity the probe starts with a slow first draw (an activity transition).
    App("com.vdev.settleprobe.detail", "Settle probe detail", "settledetail.html",
        launchable=False),
)
APPS_BY_PACKAGE = {app.package: app for app in APPS}
LAUNCHER = "com.vdev.launcher"

# Android key codes the screen understands, mapped to Playwright key names.
KEYCODE_KEYS: dict[int, str] = {
    61: "Tab", 62: " ", 66: "Enter", 67: "Backspace", 111: "Escape", 112: "Delete",
    122: "Home", 123: "End", 19: "ArrowUp", 20: "ArrowDown", 21: "ArrowLeft",
    22: "ArrowRight", 160: "Enter", 92: "PageUp", 93: "PageDown", 113: "Control",
    114: "Control", 59: "Shift", 60: "Shift", 57: "Alt", 58: "Alt", 117: "Meta",
    **{7 + d: str(d) for d in range(10)},
    **{29 + i: chr(ord("a") + i) for i in range(26)},
}
KEYCODE_HOME, KEYCODE_BACK, KEYCODE_MENU, KEYCODE_APP_SWITCH = 3, 4, 82, 187
LONG_PRESS_MS = 500  # Android's default ViewConfiguration long-press timeout

_GESTURE_AND_DUMP_JS = (Path(__file__).with_name("device_init.js")).read_text()


class Screen:
    """Owns Chromium and the app pages; all methods run on the device's event loop."""

    def __init__(self, width_px: int = 720, height_px: int = 1600, density_dpi: int = 320):
        self.physical_width_px = self.width_px = width_px
        self.physical_height_px = self.height_px = height_px
        self.density_dpi = density_dpi
        self.scale = density_dpi / 160
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self.pages: dict[str, Page] = {}
        self.stack: list[str] = [LAUNCHER]  # bottom .. top (foreground)
        self.lock = asyncio.Lock()  # one input/capture at a time, as on a real display
        # The app whose window is drawn: the foreground app once its first frame is drawn;
        # until then (an activity transition) the previous app's window stays on screen.
        self.shown = LAUNCHER
        self._drawing: asyncio.Task | None = None  # a transition's pending first draw

    @property
    def foreground(self) -> str:
        """The focused (resumed) app: the top of the activity stack."""
        return self.stack[-1]

    @property
    def transition_pending(self) -> bool:
        """An app was started and its window is not drawn yet."""
        return self._drawing is not None

    @property
    def page(self) -> Page:
        """The page on screen: input goes there, screencap shows it."""
        return self.pages[self.shown]

    async def start(self, user_data_dir: str) -> None:
        self._playwright = await async_playwright().start()
        self._context = await self._playwright.chromium.launch_persistent_context(
            user_data_dir,
            executable_path=CHROMIUM_PATH,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": round(self.width_px / self.scale),
                      "height": round(self.height_px / self.scale)},
            device_scale_factor=self.scale,
            is_mobile=False,
            has_touch=False,
            locale="en-US",
            timezone_id="UTC",
        )
        await self._context.route("**/*", self._serve)
        await self._context.add_init_script(_GESTURE_AND_DUMP_JS)
        await self._context.expose_binding("vdevLaunch", self._on_launch_request)
        for app in APPS:
            page = await self._context.new_page()
            await page.goto(f"{ORIGIN}/{app.page}")
            self.pages[app.package] = page
        for page in self._context.pages:
            if page not in self.pages.values():
                await page.close()
        await self._show()

    async def _show(self, draw_delay_s: float = 0.0) -> None:
        """Make the top of the stack the visible tab (background tabs are not painted) —
        after `draw_delay_s`, as an app that takes that long to draw its first frame: the
        activity is focused and resumed at once, its window is drawn later."""
        if self._drawing is not None:
            self._drawing.cancel()
            self._drawing = None
        if draw_delay_s > 0:
            self._drawing = asyncio.create_task(self._draw_later(draw_delay_s))
            return
        page = self.pages[self.foreground]
        await page.bring_to_front()
        self.shown = self.foreground
        await page.evaluate("() => window.vdevResume && window.vdevResume()")

    async def _draw_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with self.lock:
            self._drawing = None
            await self._show()

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.close()
        if self._playwright is not None:
            await self._playwright.stop()

    async def _serve(self, route: Route) -> None:
        url = route.request.url
        if not url.startswith(ORIGIN + "/"):
            await route.abort()
            return
        name = url[len(ORIGIN) + 1:].split("?")[0] or "launcher.html"
        path = (APPS_DIR / name).resolve()
        if APPS_DIR.resolve() not in path.parents or not path.is_file():
            await route.fulfill(status=404, body="not found")
            return
        content_type = {"html": "text/html", "js": "text/javascript", "css": "text/css"}.get(
            path.suffix.lstrip("."), "application/octet-stream")
        await route.fulfill(status=200, body=path.read_bytes(),
                            headers={"Content-Type": content_type + "; charset=utf-8"})

    async def _on_launch_request(self, _source: dict, package: str, draw_ms: int = 0) -> None:
        await self.launch(package, draw_ms / 1000)

    # ---- activity stack ----

    async def launch(self, package: str, draw_delay_s: float = 0.0) -> None:
        """Bring `package` to the front (resuming it if it was in the stack); its window
        is drawn `draw_delay_s` later (see `_show`)."""
        if package not in self.pages:
            raise KeyError(package)
        if package in self.stack and package != LAUNCHER:
            self.stack.remove(package)
        if package == LAUNCHER:
            self.stack = [LAUNCHER]
        else:
            self.stack.append(package)
        await self._show(draw_delay_s)

    async def home(self) -> None:
        self.stack = [LAUNCHER]
        await self._show()

    async def back(self) -> None:
        handled = await self.page.evaluate("() => !!(window.vdevBack && window.vdevBack())")
        if not handled and self.foreground != LAUNCHER:
            self.stack.pop()
            await self._show()

    async def force_stop(self, package: str) -> None:
        """Kill the app: drop it from the stack and reload its page (UI state is lost)."""
        if package == LAUNCHER or package not in self.pages:
            return
        was_foreground = package == self.foreground
        if package in self.stack:
            self.stack.remove(package)
        await self.pages[package].reload()
        if was_foreground:
            await self._show()

    async def clear_data(self, package: str) -> None:
        """`pm clear`: delete the app's stored data, then restart it."""
        await self.pages[LAUNCHER].evaluate(
            """(prefix) => { for (const k of Object.keys(localStorage))
                 if (k.startsWith(prefix)) localStorage.removeItem(k); }""",
            package + "/",
        )
        await self.force_stop(package)

    async def resize(self, width_px: int, height_px: int) -> None:
        """`wm size WxH`: lay every app out for a display of that many pixels (the
        density stays); screenshots and touch coordinates then use the new size."""
        self.width_px, self.height_px = width_px, height_px
        for page in self.pages.values():
            await page.set_viewport_size({"width": round(width_px / self.scale),
                                          "height": round(height_px / self.scale)})

    # ---- input ----

    def _css(self, x_px: float, y_px: float) -> tuple[float, float]:
        return x_px / self.scale, y_px / self.scale

    async def gesture(self, x1: float, y1: float, x2: float, y2: float, duration_s: float) -> None:
        """Touch down at (x1, y1) physical px, move to (x2, y2) over `duration_s`, lift."""
        page = self.page
        mouse = page.mouse
        sx, sy = self._css(x1, y1)
        ex, ey = self._css(x2, y2)
        await mouse.move(sx, sy)
        await mouse.down()
        steps = max(1, min(20, int(duration_s / 0.016)))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(1, steps + 1):
            # The finger moves in real time: a long press must really be held.
            delay = start + duration_s * i / steps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await mouse.move(sx + (ex - sx) * i / steps, sy + (ey - sy) * i / steps)
        await mouse.up()
        await self._drain(page)

    async def tap(self, x: float, y: float) -> None:
        page = self.page
        cx, cy = self._css(x, y)
        await page.mouse.click(cx, cy)
        await self._drain(page)

    @staticmethod
    async def _drain(page: Page) -> None:
        """Wait for the device calls (app launches) the last input event started."""
        await page.evaluate("() => Promise.all(window.vdevPending.splice(0))")

    async def key(self, keycode: int) -> None:
        if keycode == KEYCODE_HOME:
            await self.home()
        elif keycode == KEYCODE_BACK:
            await self.back()
        elif keycode == KEYCODE_MENU:
            await self.page.evaluate("() => window.vdevMenu && window.vdevMenu()")
        elif keycode == KEYCODE_APP_SWITCH:
            if len(self.stack) > 1:
                self.stack.insert(1, self.stack.pop())
                await self._show()
        elif keycode in KEYCODE_KEYS:
            await self.page.keyboard.press(KEYCODE_KEYS[keycode])
        # Other keys (volume, power, ...) have no visible effect here.

    async def key_combination(self, keycodes: list[int]) -> None:
        """Hold the keys down in order, release them in reverse (`input keycombination`)."""
        names = [KEYCODE_KEYS[code] for code in keycodes if code in KEYCODE_KEYS]
        for name in names:
            await self.page.keyboard.down(name)
        for name in reversed(names):
            await self.page.keyboard.up(name)

    async def type_keys(self, text: str) -> None:
        """Type printable ASCII as key presses (what `input text` does)."""
        await self.page.keyboard.type(text)

    async def commit_text(self, text: str) -> None:
        """Insert any Unicode text into the focused field (what an IME does)."""
        await self.page.keyboard.insert_text(text)

    async def clear_focused_text(self) -> None:
        await self.page.evaluate(
            """() => { const e = document.activeElement;
                 if (e && 'value' in e) { e.value = '';
                   e.dispatchEvent(new Event('input', {bubbles: true})); } }""")

    # ---- output ----

    async def screenshot_png(self) -> bytes:
        return await self.page.screenshot(type="png", animations="allow", caret="hide")

    async def input_shown(self) -> bool:
        """Whether the soft keyboard would be up: a text field of the page on screen has
        the focus."""
        return await self.page.evaluate(
            """() => { const e = document.activeElement;
                 return !!e && (e.tagName === 'TEXTAREA' || e.isContentEditable ||
                   (e.tagName === 'INPUT' && !['button', 'checkbox', 'radio', 'submit']
                     .includes(e.type))); }""")

    async def dump_ui_xml(self) -> str:
        """The page on screen as a `uiautomator dump` hierarchy, bounds in physical px."""
        tree = await self.page.evaluate("() => window.vdevDump()")
        package = self.shown
        lines = ["<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>",
                 '<hierarchy rotation="0">']
        root = {
            "text": "", "id": "", "cls": "android.widget.FrameLayout", "desc": "",
            "checkable": False, "checked": False, "clickable": False, "focusable": False,
            "focused": False, "scrollable": False, "longClickable": False,
            "password": False, "selected": False, "enabled": True,
            "bounds": [0, 0, self.width_px / self.scale, self.height_px / self.scale],
            "children": tree["children"],
        }
        self._xml_node(root, 0, package, lines, 1)
        lines.append("</hierarchy>")
        return "".join(lines)

    def _xml_node(self, node: dict, index: int, package: str, out: list[str], depth: int) -> None:
        left, top, right, bottom = (round(v * self.scale) for v in node["bounds"])
        resource_id = f"{package}:id/{node['id']}" if node["id"] else ""
        attrs = [
            ("index", str(index)), ("text", node["text"]), ("resource-id", resource_id),
            ("class", node["cls"]), ("package", package), ("content-desc", node["desc"]),
            ("checkable", node["checkable"]), ("checked", node["checked"]),
            ("clickable", node["clickable"]), ("enabled", node["enabled"]),
            ("focusable", node["focusable"]), ("focused", node["focused"]),
            ("scrollable", node["scrollable"]), ("long-clickable", node["longClickable"]),
            ("password", node["password"]), ("selected", node["selected"]),
            ("bounds", f"[{left},{top}][{right},{bottom}]"),
        ]
        rendered = " ".join(
            f"{k}={quoteattr(str(v).lower() if isinstance(v, bool) else str(v))}"
            for k, v in attrs
        )
        children = node.get("children") or []
        if not children:
            out.append(f"<node {rendered} />")
            return
        out.append(f"<node {rendered}>")
        for i, child in enumerate(children):
            self._xml_node(child, i, package, out, depth + 1)
        out.append("</node>")

    # ---- app data (the device-side view of the apps' storage) ----

    async def storage_get(self, key: str) -> str | None:
        return await self.pages[LAUNCHER].evaluate("(k) => localStorage.getItem(k)", key)

    async def storage_set(self, key: str, value: str | None) -> None:
        await self.pages[LAUNCHER].evaluate(
            "([k, v]) => v === null ? localStorage.removeItem(k) : localStorage.setItem(k, v)",
            [key, value],
        )

    async def table(self, package: str, table: str) -> list[dict]:
        raw = await self.storage_get(f"{package}/{table}")
        return json.loads(raw) if raw else []

    async def set_table(self, package: str, table: str, rows: list[dict]) -> None:
        await self.storage_set(f"{package}/{table}", json.dumps(rows))
