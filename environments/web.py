"""The web environment: Debian's Chromium driven through Playwright.

Every canonical action becomes real input events (`page.mouse`, `page.keyboard`), the
same events a user's mouse and keyboard produce, so a page cannot tell an agent from a
person. Coordinates are CSS pixels of the viewport: that is the input space the
observation states (`screen_size`); the screenshot is `device_scale_factor` times larger.

Why Playwright's *sync* API: the Environment contract is synchronous (gymnasium-style
`reset`/`step`), one environment drives one browser, and a runner that wants many
browsers runs one environment per thread or process. The sync API keeps each call a
plain function call with its own timeout. Its objects belong to the thread that created
them: build, use and close a WebEnvironment on one thread, outside a running asyncio loop.

After each action `step` waits until the page's reaction is over — the page script
(environments/_page_settle.py) reports no pending timer, request, finite animation, DOM
mutation or image load, and no request or navigation is pending — then captures one frame;
where the script cannot answer it waits for a quiet screen outside ambient regions
(environments/_settle.py). `settle_timeout_s` bounds it; never a fixed sleep (docs/settling.md).
A browser that dies or stops answering (past `hang_timeout_s`) is killed and
`EnvironmentCrashed` raised; the next `reset` starts a fresh browser.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EnvironmentCrashed, Task
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
from actions.observation import Observation, Size, png_size
from actions.parsing import pointer_after
from environments._page_settle import ambient_notes, busy_reasons, page_settle_script
from environments._settle import (
    AmbientMemory,
    QuietWindow,
    SettleResult,
    Watchdog,
    decode_png,
    settle_on_pixels,
)

logger = logging.getLogger(__name__)

# Flags this project runs Chromium with (containers without a GPU or a sandbox, and no
# traffic beyond what the task itself loads).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-smooth-scrolling",  # a wheel notch scrolls at once: fewer frames to settle
)
# Hides the text caret in every document (a blinking caret is ambient motion in screenshots).
_HIDE_CARET_JS = """document.addEventListener('DOMContentLoaded', () => {
  const style = document.createElement('style');
  style.textContent = '* { caret-color: transparent !important; }';
  document.documentElement.appendChild(style);
}, {once: true});"""
_INSTANCE_FLAG = "--qwen-cua-instance"  # ignored by Chromium; lets us find our browser's pid

# Canonical key names (actions.models.NAMED_KEYS) -> Playwright key names.
PLAYWRIGHT_KEYS: dict[str, str] = {
    "ctrl": "Control", "shift": "Shift", "alt": "Alt", "meta": "Meta", "enter": "Enter",
    "escape": "Escape", "tab": "Tab", "space": "Space", "backspace": "Backspace",
    "delete": "Delete", "insert": "Insert", "home": "Home", "end": "End",
    "pageup": "PageUp", "pagedown": "PageDown", "up": "ArrowUp", "down": "ArrowDown",
    "left": "ArrowLeft", "right": "ArrowRight", "capslock": "CapsLock",
    "printscreen": "PrintScreen", "menu": "ContextMenu",
    **{f"f{i}": f"F{i}" for i in range(1, 13)},
}


class BrowserNotFoundError(FileNotFoundError):
    """No Chromium executable was found."""


class PageLoadError(RuntimeError):
    """A task's start page could not be loaded (server down, timeout, bad URL)."""


class WebConfig(BaseModel):
    """How the browser is launched and how steps wait. Times in seconds, sizes in CSS px."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    viewport: Size = Field(
        Size(width=1280, height=720),
        description="Page viewport in CSS pixels: the input space of every action.",
    )
    device_scale_factor: float = Field(
        1.0, gt=0, le=4, description="Screenshot pixels per CSS pixel (2.0 = HiDPI)."
    )
    chromium_path: str = Field(
        "/usr/bin/chromium",
        description="Chromium executable; if missing, `chromium`/`chromium-browser`/"
        "`google-chrome` are looked up on PATH.",
    )
    headless: bool = True
    settle_timeout_s: float = Field(
        3.0, gt=0, description="Upper bound on waiting for the page to settle after an action."
    )
    reaction_bound_s: float = Field(
        2.0, gt=0,
        description="The page script waits for timers of at most this delay, animations "
        "ending within it, and for the reaction as a whole at most this long after the action; "
        "past it the step settles on the screen alone.",
    )
    mutation_quiet_s: float = Field(
        0.04, ge=0, description="A DOM node changed by the reaction this recently (JS-driven "
        "animation) keeps the page busy.",
    )
    settle_quiet_s: float = Field(
        0.15, gt=0, description="Without a page script (or past reaction_bound_s): the screen "
        "must not change outside ambient regions for this long.",
    )
    settle_first_change_s: float = Field(
        0.3, gt=0, description="Without a page script: how long an unchanged screen is "
        "watched for a reaction to begin.",
    )
    navigation_timeout_s: float = Field(
        30.0, gt=0, description="Upper bound on loading a URL (reset, navigate)."
    )
    hang_timeout_s: float = Field(
        60.0, gt=0,
        description="A single browser call running longer than this means the browser hung: "
        "it is killed and EnvironmentCrashed raised. Keep it above navigation_timeout_s.",
    )
    long_request_s: float = Field(
        2.0, gt=0,
        description="Requests pending longer than this (long polls, streams) no longer keep "
        "the page from counting as quiet.",
    )
    allowed_domains: list[str] | None = Field(
        None,
        description="If set, only these hosts (and their subdomains) may be loaded in a tab; "
        "navigation elsewhere is refused with Observation.action_error.",
    )
    scroll_notch_px: int = Field(100, gt=0, description="CSS pixels scrolled per wheel notch.")
    fixed_settle_s: float | None = Field(
        None, ge=0,
        description="Comparison mode only: sleep this long after each action instead of "
        "detecting that the page settled (what many public harnesses do).",
    )
    include_a11y_tree: bool = Field(
        False, description="Add Playwright's ARIA snapshot of the page to each observation."
    )
    hide_caret: bool = Field(
        False, description="Hide the text caret in screenshots (the blinking caret otherwise "
        "sometimes costs one extra frame of settling).",
    )
    fresh_context_per_episode: bool = Field(
        True, description="Open a new browser context (no cookies, storage, cache) at each "
        "reset. False reuses the tab, saving ~0.2 s per reset, for suites whose pages keep "
        "no state between loads (MiniWoB).",
    )
    locale: str = "en-US"
    extra_args: list[str] = Field(default_factory=list, description="More Chromium flags.")
    # Your own browser (`cua run --cdp-url` / `--user-data-dir`): see WebEnvironment.
    cdp_url: str | None = Field(
        None, description="Attach to a running Chromium/Chrome through its DevTools endpoint "
        "(http://127.0.0.1:9222 or ws://...) instead of launching one. The agent works in a "
        "new tab of the browser's default context (your profile); only the tabs it opened "
        "are closed, the browser keeps running. device_scale_factor does not apply.",
    )
    user_data_dir: Path | None = Field(
        None, description="Launch Chromium with this persistent profile folder (created if "
        "missing): cookies and logins are kept between episodes and runs.",
    )
    profile_start_timeout_s: float = Field(
        30.0, gt=0, description="How long a Chromium launched with user_data_dir may take to "
        "open its DevTools port.",
    )


def find_chromium(configured: str) -> str:
    """Return a Chromium executable path, or raise BrowserNotFoundError saying what to do."""
    if Path(configured).is_file() and os.access(configured, os.X_OK):
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFoundError(
        f"Chromium not found at {configured!r} nor on PATH. Install Debian's build with "
        "`sudo apt-get install chromium` (this project never downloads a browser), or set "
        "WebConfig(chromium_path=...)."
    )


def host_allowed(url: str, allowed_domains: list[str] | None) -> bool:
    """Whether `url` may be loaded under the allowlist (None allows everything).

    A host is allowed when it equals an entry or is a subdomain of it; `about:` pages are
    always allowed; other schemes without a host (file:, data:) only when the allowlist
    names the scheme itself (e.g. "file").
    """
    if allowed_domains is None:
        return True
    parts = urlsplit(url)
    if parts.scheme == "about":
        return True
    host = (parts.hostname or "").lower()
    if not host:
        return parts.scheme in allowed_domains
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in allowed_domains)




_THREAD_DRIVER = threading.local()


def _acquire_driver() -> Any:
    """The Playwright driver of this thread, started on first use.

    Playwright's sync API allows one running driver per thread, so environments built on
    the same thread share it (each still launches and owns its own browser); it stops
    when the last of them lets go.
    """
    from playwright.sync_api import sync_playwright

    holder = getattr(_THREAD_DRIVER, "holder", None)
    if holder is None:
        holder = _THREAD_DRIVER.holder = {"driver": sync_playwright().start(), "users": 0}
    holder["users"] += 1
    return holder["driver"]


def _release_driver() -> None:
    holder = getattr(_THREAD_DRIVER, "holder", None)
    if holder is None:
        return
    holder["users"] -= 1
    if holder["users"] <= 0:
        _THREAD_DRIVER.holder = None
        with contextlib.suppress(Exception):
            holder["driver"].stop()


@contextlib.contextmanager
def shared_playwright() -> Iterator[Any]:
    """This thread's Playwright driver, for code beside a WebEnvironment on the same
    thread (a second `sync_playwright()` there fails: "Sync API inside the asyncio loop")."""
    driver = _acquire_driver()
    try:
        yield driver
    finally:
        _release_driver()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _find_pid_with_flag(flag: str) -> int | None:
    """The pid of the browser process whose command line holds `flag` (not its children)."""
    needle = flag.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if needle in args and not any(a.startswith(b"--type=") for a in args):
            return int(entry)
    return None


class WebEnvironment:
    """A Chromium tab driven with real mouse and keyboard events (see module docstring).

    The browser starts lazily on the first `reset` and again after a crash. Each `reset`
    opens a fresh browser context (no cookies, storage or cache from earlier episodes).
    A generic web task gives its start page in `task.config["url"]`; optional
    `task.config["success_js"]` (a JS expression, truthy or a number) and
    `task.config["expected_answer"]` define `evaluate()`.
    """

    def __init__(self, config: WebConfig | None = None) -> None:
        self.config = config or WebConfig()
        self._playwright: Any = None
        self._browser: Any = None
        self._context: Any = None
        self._page: Any = None
        self._pointer: tuple[int, int] = (0, 0)
        self._browser_pid: int | None = None
        self._crash_reason: str | None = None
        self._pending_requests: dict[Any, float] = {}
        self._loading = False
        self._blocked_urls: list[str] = []
        self._new_tab = False
        self._cdp: Any = None
        self._ambient = AmbientMemory()
        self.task: Task | None = None
        self.last_answer: str | None = None
        # A browser reached over CDP (cdp_url, or our own launched with user_data_dir):
        # we work in its default context and close only the tabs in `_our_pages`.
        self._our_pages: list[Any] = []
        self._profile_process: subprocess.Popen[bytes] | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def page(self) -> Any:
        """The live Playwright `Page` of the current tab (for experts and benchmarks)."""
        if self._page is None:
            raise RuntimeError("no page yet: call reset(task) first")
        return self._page

    @property
    def _attached(self) -> bool:
        """Whether the browser is reached over CDP (your own, or one on a profile)."""
        return bool(self.config.cdp_url or self.config.user_data_dir)

    @property
    def browser_pid(self) -> int | None:
        """Process id of the running Chromium browser process, or None if not started."""
        return self._browser_pid

    @property
    def screen_size(self) -> Size:
        """The input space: the viewport in CSS pixels."""
        return self.config.viewport

    def _launch(self) -> None:
        if self.config.cdp_url or self.config.user_data_dir:
            self._attach()
            return
        executable = find_chromium(self.config.chromium_path)
        marker = f"{_INSTANCE_FLAG}={uuid.uuid4().hex}"
        self._playwright = _acquire_driver()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=executable,
                headless=self.config.headless,
                args=[*CHROMIUM_FLAGS, *self.config.extra_args, marker],
                timeout=self.config.navigation_timeout_s * 1000,
            )
        except Exception:
            self._playwright = None
            _release_driver()
            raise
        self._browser_pid = _find_pid_with_flag(marker)
        self._browser.on("disconnected", lambda _: self._mark_crashed("browser disconnected"))
        self._crash_reason = None
        logger.info("launched %s (pid %s, version %s)", executable, self._browser_pid,
                    self._browser.version)

    # -- your own browser: attached over CDP, or launched with a persistent profile

    def _attach(self) -> None:
        """Connect to the user's browser (cdp_url) or to a Chromium we start on
        user_data_dir, over the Chrome DevTools Protocol."""
        endpoint = self.config.cdp_url or self._start_profile_browser()
        self._playwright = _acquire_driver()
        try:
            self._browser = self._playwright.chromium.connect_over_cdp(
                endpoint, timeout=self.config.navigation_timeout_s * 1000)
        except Exception as error:
            self._playwright = None
            _release_driver()
            self._stop_profile_browser()
            raise BrowserNotFoundError(
                f"could not attach to the browser at {endpoint}: {str(error).splitlines()[0]}; "
                "start it with --remote-debugging-port=9222 (and --user-data-dir=DIR for "
                "a non-default profile), then give --cdp-url http://127.0.0.1:9222") from error
        self._browser.on("disconnected", lambda _: self._mark_crashed("browser disconnected"))
        self._crash_reason = None
        logger.info("attached to %s (version %s)", endpoint, self._browser.version)

    def _start_profile_browser(self) -> str:
        """Launch Chromium on user_data_dir with a DevTools port; return its endpoint."""
        profile = Path(self.config.user_data_dir).expanduser()  # type: ignore[arg-type]
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        marker = f"{_INSTANCE_FLAG}={uuid.uuid4().hex}"
        argv = [find_chromium(self.config.chromium_path), *CHROMIUM_FLAGS,
                *self.config.extra_args, f"--user-data-dir={profile}",
                "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", marker]
        if self.config.headless:
            argv.append("--headless")
        argv.append("about:blank")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self._profile_process = process
        self._browser_pid = process.pid
        deadline = time.monotonic() + self.config.profile_start_timeout_s
        while time.monotonic() < deadline:
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) >= 2 and lines[0].isdigit():
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            if process.poll() is not None:
                break
            time.sleep(0.05)  # polling for Chromium's port file, bounded by the deadline
        self._stop_profile_browser()
        raise BrowserNotFoundError(
            f"Chromium did not open a DevTools port on the profile {profile} within "
            f"{self.config.profile_start_timeout_s:.0f} s (is another Chromium using this "
            "profile? close it, or attach to it with --cdp-url)")

    def _stop_profile_browser(self) -> None:
        process, self._profile_process = self._profile_process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # lets Chromium write the profile to disk
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._browser_pid = None

    def _open_our_tab(self) -> None:
        """A new tab of the attached browser's default context, sized to the viewport."""
        for page in self._our_pages:
            with contextlib.suppress(Exception):
                page.close()
        self._our_pages.clear()
        self._pending_requests.clear()
        self._blocked_urls.clear()
        self._loading = False
        if self._context is None:
            contexts = self._browser.contexts
            self._context = contexts[0] if contexts else self._browser.new_context()
            self._context.set_default_timeout(self.config.navigation_timeout_s * 1000)
        page = self._context.new_page()
        self._install_page_scripts(page)  # our tab only, never the user's others
        viewport = self.config.viewport
        page.set_viewport_size({"width": viewport.width, "height": viewport.height})
        self._page = None
        self._watch_our_page(page)
        self._adopt(page)

    def _watch_our_page(self, page: Any) -> None:
        """Listen to one of our tabs only (never to the user's other tabs)."""
        self._our_pages.append(page)
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_request_done)
        page.on("requestfailed", self._on_request_done)
        page.on("popup", self._on_our_popup)
        if self.config.allowed_domains is not None:
            page.route("**/*", self._route)

    def _on_our_popup(self, page: Any) -> None:
        self._watch_our_page(page)
        self._on_new_page(page)

    def _close_attached(self) -> None:
        """Close our tabs and disconnect; a browser we launched on a profile is stopped,
        the user's browser keeps running."""
        if self._browser is not None and self._browser_alive():
            for page in self._our_pages:
                with contextlib.suppress(Exception):
                    page.close()
        self._stop_profile_browser()  # graceful, before _discard_browser would kill it
        self._discard_browser()

    def _install_page_scripts(self, target: Any) -> None:
        """The settle script (and the caret hider) in every document of a context or page."""
        target.add_init_script(page_settle_script(
            int(self.config.reaction_bound_s * 1000), int(self.config.mutation_quiet_s * 1000)))
        if self.config.hide_caret:
            target.add_init_script(_HIDE_CARET_JS)

    def _new_context(self) -> None:
        if self._attached:
            self._open_our_tab()
            return
        if self._context is not None:
            with contextlib.suppress(Exception):
                self._context.close()
        self._pending_requests.clear()
        self._blocked_urls.clear()
        self._loading = False
        viewport = self.config.viewport
        self._context = self._browser.new_context(
            viewport={"width": viewport.width, "height": viewport.height},
            device_scale_factor=self.config.device_scale_factor,
            locale=self.config.locale,
        )
        self._context.set_default_timeout(self.config.navigation_timeout_s * 1000)
        self._install_page_scripts(self._context)
        self._context.on("request", self._on_request)
        self._context.on("requestfinished", self._on_request_done)
        self._context.on("requestfailed", self._on_request_done)
        self._context.on("page", self._on_new_page)
        if self.config.allowed_domains is not None:
            self._context.route("**/*", self._route)
        self._page = None
        self._adopt(self._context.new_page())

    def _adopt(self, page: Any) -> None:
        """Make `page` the tab that actions go to."""
        if self._page is page:
            return
        self._page = page
        self._pointer = (0, 0)  # a page's mouse starts at its top-left corner (Playwright)
        self._cdp = None
        self._ambient.forget()
        main_frame = page.main_frame

        def on_navigated(frame: Any) -> None:
            if frame == main_frame:
                self._loading = True

        def on_load(_: Any) -> None:
            self._loading = False

        page.on("framenavigated", on_navigated)
        page.on("load", on_load)
        page.on("crash", lambda _: self._mark_crashed("the page's renderer crashed"))

    def _on_new_page(self, page: Any) -> None:
        if self._page is not None and page is not self._page:
            logger.info("a new tab opened (%s); actions now go to it", page.url)
            self._new_tab = True
            self._adopt(page)

    def _on_request(self, request: Any) -> None:
        self._pending_requests[request] = time.perf_counter()

    def _on_request_done(self, request: Any) -> None:
        self._pending_requests.pop(request, None)

    def _route(self, route: Any) -> None:
        request = route.request
        if request.is_navigation_request() and not host_allowed(
            request.url, self.config.allowed_domains
        ):
            self._blocked_urls.append(request.url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def _mark_crashed(self, reason: str) -> None:
        if self._crash_reason is None:
            self._crash_reason = reason

    def _kill_browser(self) -> None:
        pid = self._browser_pid
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _browser_alive(self) -> bool:
        if self._browser is None or self._crash_reason is not None:
            return False
        if self._browser_pid is not None and not _pid_alive(self._browser_pid):
            return False
        page_open = self._page is None or not self._page.is_closed()
        return bool(self._browser.is_connected()) and page_open

    def _discard_browser(self) -> None:
        """Forget a dead or hung browser (killing it if needed); reset() starts a new one."""
        self._kill_browser()
        if self._playwright is not None:
            _release_driver()
        self._playwright = self._browser = self._context = self._page = None
        self._browser_pid = None
        self._pending_requests.clear()
        self._our_pages.clear()
        self._stop_profile_browser()

    @contextlib.contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        """Turn a dead or hung browser during `operation` into EnvironmentCrashed."""
        from playwright.sync_api import Error as PlaywrightError

        if self._browser is not None and not self._browser_alive():
            reason = self._crash_reason or "the browser process is gone"
            self._discard_browser()
            raise EnvironmentCrashed(
                f"browser crashed before {operation}: {reason}; it restarts on the next reset()"
            )
        watchdog = Watchdog(self.config.hang_timeout_s, self._kill_browser)
        try:
            with watchdog:
                yield
        except PlaywrightError as error:
            if watchdog.fired or not self._browser_alive():
                if watchdog.fired:
                    reason = (f"no answer from the browser for {self.config.hang_timeout_s:.0f} s"
                              f" during {operation} (page hung); the browser was killed")
                else:
                    reason = f"browser crashed during {operation}: {self._crash_reason or ''} " \
                             f"{str(error).splitlines()[0]}"
                self._discard_browser()
                raise EnvironmentCrashed(f"{reason}; it restarts on the next reset()") from error
            raise

    def close(self) -> None:
        """Close the browser and the Playwright driver. Safe to call twice."""
        if self._attached:
            self._close_attached()
            return
        if self._browser is not None and self._browser_alive():
            with contextlib.suppress(Exception), Watchdog(10.0, self._kill_browser):
                self._browser.close()
        self._discard_browser()

    def __enter__(self) -> WebEnvironment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- episode

    def reset(self, task: Task) -> Observation:
        """Open a fresh tab on `task.config["url"]`; the instruction is `task.instruction`."""
        url = task.config.get("url")
        if not url:
            raise ValueError(f"task {task.key} has no config['url'] to open")
        if not host_allowed(url, self.config.allowed_domains):
            raise ValueError(f"task URL {url} is outside allowed_domains "
                             f"{self.config.allowed_domains}")
        self._start_episode(task)
        with self._guard("reset"):
            self._open(url)
            return self._observe(instruction=task.instruction)

    def _open(self, url: str) -> None:
        """Load a task's start page and wait for its load event, or raise PageLoadError."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.goto(url, wait_until="load",
                           timeout=self.config.navigation_timeout_s * 1000)
        except PlaywrightError as error:
            if not self._browser_alive():
                raise  # _guard reports the crash
            raise PageLoadError(f"could not open {url}: {str(error).splitlines()[0]}") from error

    def _start_episode(self, task: Task) -> None:
        """Launch the browser if needed and open a fresh context and tab."""
        if self._browser is not None and not self._browser_alive():
            logger.warning("restarting the browser (%s)", self._crash_reason)
            self._discard_browser()
        if self._browser is None:
            self._launch()
        self.task = task
        self.last_answer = None
        with self._guard("reset"):
            if self._context is None or self.config.fresh_context_per_episode or self._attached:
                self._new_context()
            else:
                self._reuse_context()

    def _reuse_context(self) -> None:
        """Keep the context for the next episode: back to its first tab, others closed."""
        pages = self._context.pages
        for extra in pages[1:]:
            extra.close()
        self._pending_requests.clear()
        self._blocked_urls.clear()
        self._loading = False
        self._adopt(pages[0] if pages else self._context.new_page())

    def step(self, action: Action) -> Observation:
        """Execute `action` with real input events, wait for the page to settle, observe."""
        if self.task is None:
            raise RuntimeError("call reset(task) before step()")
        if self._browser is None:
            raise EnvironmentCrashed("the browser is gone (crashed earlier); call reset()")
        with self._guard(f"step {action.type}"):
            self._blocked_urls.clear()
            self._new_tab = False
            started = time.perf_counter()
            self._mark_reaction()
            error = self._execute(action)
            execute_s = time.perf_counter() - started
            settled = self._settle()
            if self._blocked_urls:
                blocked = ", ".join(dict.fromkeys(self._blocked_urls))
                error = (f"navigation to {blocked} refused: outside allowed domains "
                         f"{self.config.allowed_domains}")
                if self._recover_from_blocked_navigation():
                    settled = self._settle()
            return self._observe(execute_s=execute_s, action_error=error, settled=settled)

    def evaluate(self) -> float:
        """Score of the episode so far: `success_js` / `expected_answer` from the task config.

        Returns 1.0/0.0 (or the number `success_js` evaluates to); 0.0 when the task
        defines no check.
        """
        if self.task is None:
            raise RuntimeError("call reset(task) before evaluate()")
        expected = self.task.config.get("expected_answer")
        if expected is not None:
            given = (self.last_answer or "").strip().lower()
            return float(given == str(expected).strip().lower())
        script = self.task.config.get("success_js")
        if script:
            with self._guard("evaluate"):
                value = self.page.evaluate(script)
            return float(value) if isinstance(value, int | float) else float(bool(value))
        return 0.0

    # ----------------------------------------------------------------- acting

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

    # ----------------------------------------------------------------- observing

    def _is_quiet(self) -> bool:
        if self._loading:
            return False
        now = time.perf_counter()
        return all(now - t > self.config.long_request_s for t in self._pending_requests.values())

    def _capture(self) -> bytes:
        """One lossless PNG of the viewport through CDP `Page.captureScreenshot` with
        `optimizeForSpeed` (faster zlib settings; ~2/3 of Playwright's screenshot time).
        HiDPI goes through Playwright's screenshot: a CDP session of our own does not
        share Playwright's device-scale emulation and would capture CSS pixels."""
        from playwright.sync_api import Error as PlaywrightError

        page = self.page
        deadline = time.perf_counter() + min(2.0, self.config.settle_timeout_s)
        while True:
            try:
                if self.config.device_scale_factor != 1.0:
                    return page.screenshot(type="png", animations="allow",
                                           timeout=self.config.hang_timeout_s * 1000)
                if self._cdp is None:
                    self._cdp = page.context.new_cdp_session(page)
                try:
                    shot = self._cdp.send("Page.captureScreenshot", {
                        "format": "png", "optimizeForSpeed": True,
                        "captureBeyondViewport": False})
                except PlaywrightError as error:
                    if not self._browser_alive():
                        raise
                    # the session went with a renderer swap (an error page, a cross-site
                    # navigation): a new one next time, Playwright's screenshot now
                    logger.debug("CDP capture failed (%s); using a new session next time",
                                 str(error).splitlines()[0])
                    self._cdp = None
                    return page.screenshot(type="png", animations="allow",
                                           timeout=self.config.hang_timeout_s * 1000)
                return base64.b64decode(shot["data"])
            except PlaywrightError as error:
                # Between a navigation's commit and its first paint there is no frame to
                # capture ("Unable to capture screenshot"); try again shortly.
                if "Unable to capture" not in str(error) or time.perf_counter() > deadline:
                    raise
                page.wait_for_timeout(20)

    def _mark_reaction(self) -> None:
        """Tell the page script that what starts from now on is the action's reaction."""
        from playwright.sync_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):
            self.page.evaluate("() => window.__cuaSettle && window.__cuaSettle.mark()")

    def _page_state(self) -> dict[str, Any] | None:
        """The page script's answer; {"navigating": True} while the document is being
        replaced; None where there is no script (about:blank, error pages)."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            state = self.page.evaluate("() => window.__cuaSettle ? window.__cuaSettle.state()"
                                       " : null")
        except PlaywrightError as error:
            if "context was destroyed" in str(error) or "navigat" in str(error):
                return {"navigating": True}
            raise
        return state

    def _settle(self) -> SettleResult:
        """Wait until the page's reaction is over, then capture (see module docstring)."""
        config = self.config
        start = time.perf_counter()
        if config.fixed_settle_s is not None:
            time.sleep(config.fixed_settle_s)
            return SettleResult(self._capture(), time.perf_counter() - start, 1, settled=True,
                                reason="fixed_sleep")
        page = self.page
        deadline = start + config.settle_timeout_s
        script_deadline = start + min(config.reaction_bound_s, config.settle_timeout_s)
        waited_for: dict[str, None] = {}
        state: dict[str, Any] | None = None
        while True:
            state = self._page_state()
            if state is not None and not state.get("navigating") and not state.get("loading"):
                # the document is complete: a same-document navigation (history.pushState)
                # fires "framenavigated" but never "load"
                self._loading = False
            busy = [] if self._is_quiet() else ["network"]
            if state is not None:
                busy += ["navigation"] if state.get("navigating") else busy_reasons(state)
            waited_for.update(dict.fromkeys(busy))
            if not busy or self._blocked_urls or time.perf_counter() >= script_deadline:
                break  # (a refused navigation: step() recovers from it and settles again)
            page.wait_for_timeout(10)
        if state is not None and not state.get("navigating") and not busy:
            return SettleResult(self._capture(), time.perf_counter() - start, 1, settled=True,
                                reason="page_idle", waited_for=tuple(waited_for),
                                ambient=tuple(ambient_notes(state)))
        if time.perf_counter() >= deadline:  # still busy when the time was up
            return SettleResult(self._capture(), time.perf_counter() - start, 1, settled=False,
                                reason="timeout", waited_for=tuple(waited_for),
                                ambient=tuple(ambient_notes(state or {})))
        # No script to ask, or the reaction outlasted reaction_bound_s: watch the screen.
        pngs: dict[int, bytes] = {}

        def grab() -> Any:
            png = self._capture()
            frame = decode_png(png)
            pngs.clear()
            pngs[id(frame)] = png
            return frame

        result = settle_on_pixels(
            grab, lambda frame: pngs[id(frame)],
            QuietWindow(quiet_s=config.settle_quiet_s,
                        first_change_s=config.settle_first_change_s, poll_s=0.0),
            timeout_s=max(0.0, deadline - time.perf_counter()),
            memory=self._ambient,
            is_quiet=self._is_quiet,
            wait=lambda seconds: page.wait_for_timeout(seconds * 1000) if seconds else None,
        )
        waited_for.update(dict.fromkeys(result.waited_for))
        return dataclasses.replace(
            result, settle_s=time.perf_counter() - start, waited_for=tuple(waited_for),
            ambient=tuple(ambient_notes(state or {})))

    def _episode_status(self) -> tuple[bool, dict[str, Any]]:
        """Whether the page itself ended the episode, plus details for `info` (hook)."""
        return False, {}

    def _observe(
        self,
        *,
        instruction: str | None = None,
        execute_s: float | None = None,
        action_error: str | None = None,
        extra_info: dict[str, Any] | None = None,
        settled: SettleResult | None = None,
    ) -> Observation:
        settled = settled or self._settle()
        done, info = self._episode_status()
        info.update(extra_info or {})
        info.update(settled.info())
        if self._new_tab:
            info["new_tab"] = True
        a11y = None
        if self.config.include_a11y_tree:
            with contextlib.suppress(Exception):
                a11y = self.page.locator("body").aria_snapshot(timeout=2000)
        return Observation(
            screenshot_png=settled.screenshot_png,
            screen_size=self.config.viewport,
            screenshot_size=png_size(settled.screenshot_png),
            instruction=instruction,
            a11y_tree=a11y,
            url=self.page.url,
            pointer=self._pointer,
            execute_s=execute_s,
            settle_s=settled.settle_s,
            settle=settled.report(),
            action_error=action_error,
            done=done,
            info=info,
        )

