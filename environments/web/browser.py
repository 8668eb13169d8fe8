"""Launching and attaching: where a web environment's browser and context come from.

`BrowserSide` is the part of `WebEnvironment` that holds the browser: a place on a shared
Chromium of this process's hub (environments.web.hub) with a context of its own, or your own
browser reached over CDP (`cdp_url`, or one we start on `user_data_dir`); its tabs and their
network listeners; and turning a dead or hung browser into `EnvironmentCrashed`. It runs on
the hub thread.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actions.contracts import EnvironmentCrashed
from environments._page_settle import page_settle_script
from environments._settle import AmbientMemory, Watchdog
from environments.web.config import (
    CHROMIUM_FLAGS,
    HIDE_CARET_JS,
    INSTANCE_FLAG,
    BrowserNotFoundError,
    WebConfig,
    find_chromium,
    host_allowed,
)
from environments.web.hub import BrowserHub, SharedBrowser, kill_pid, pid_alive

logger = logging.getLogger(__name__)


class BrowserSide:
    """The browser, context and tabs of one web environment (see module docstring)."""

    config: WebConfig
    _hub: BrowserHub
    _user_id: int
    _shared: SharedBrowser | None
    _browser: Any
    _context: Any
    _page: Any
    _pointer: tuple[int, int]
    _browser_pid: int | None
    _crash_reason: str | None
    _pending_requests: dict[Any, float]
    _loading: bool
    _blocked_urls: list[str]
    _new_tab: bool
    _cdp: Any
    _ambient: AmbientMemory
    _our_pages: list[Any]
    _profile_process: subprocess.Popen[bytes] | None

    @property
    def _attached(self) -> bool:
        """Whether the browser is reached over CDP (your own, or one on a profile)."""
        return bool(self.config.cdp_url or self.config.user_data_dir)

    def _launch(self) -> None:
        """Take a place on a shared browser (the pool launches one if none has room), or
        attach to your own browser (cdp_url / user_data_dir)."""
        if self._attached:
            self._attach()
            return
        self._crash_reason = None
        self._shared = self._hub.pool.lease(self._user_id, self.config, self._mark_crashed)
        self._browser = self._shared.browser
        self._browser_pid = self._shared.pid

    # -- your own browser: attached over CDP, or launched with a persistent profile

    def _attach(self) -> None:
        """Connect to the user's browser (cdp_url) or to a Chromium we start on
        user_data_dir, over the Chrome DevTools Protocol."""
        endpoint = self.config.cdp_url or self._start_profile_browser()
        try:
            self._browser = self._hub.driver.chromium.connect_over_cdp(
                endpoint, timeout=self.config.navigation_timeout_s * 1000)
        except Exception as error:
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
        marker = f"{INSTANCE_FLAG}={uuid.uuid4().hex}"
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
            self._hub.sleep(0.05)  # polling for Chromium's port file, bounded by the deadline
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
            deadline = time.monotonic() + 10
            while process.poll() is None and time.monotonic() < deadline:
                self._hub.sleep(0.05)  # the other environments go on meanwhile
            if process.poll() is None:
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
            target.add_init_script(HIDE_CARET_JS)

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

    def _reuse_context(self) -> None:
        """Keep the context for the next episode: back to its first tab, others closed."""
        pages = self._context.pages
        for extra in pages[1:]:
            extra.close()
        self._pending_requests.clear()
        self._blocked_urls.clear()
        self._loading = False
        self._adopt(pages[0] if pages else self._context.new_page())

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
        """A call hung (watchdog, timer thread): end this environment's episode only. On a
        shared browser its context is closed (its renderer goes with it; the other
        contexts go on); if even that gets no answer within 10 s, the browser is killed."""
        shared, context = self._shared, self._context
        if shared is None or context is None:
            kill_pid(self._browser_pid)
            return
        self._mark_crashed("a call got no answer: this environment's context was closed")

        def close_context() -> None:
            with Watchdog(10.0, lambda: self._hub.pool.kill(shared, "hung: could not close "
                                                             "a context")):
                context.close()

        self._hub.submit(close_context)

    def _browser_alive(self) -> bool:
        if self._browser is None or self._crash_reason is not None:
            return False
        if self._shared is not None and not self._shared.alive:
            return False
        if self._browser_pid is not None and not pid_alive(self._browser_pid):
            return False
        page_open = self._page is None or not self._page.is_closed()
        return bool(self._browser.is_connected()) and page_open

    def _discard_browser(self) -> None:
        """Leave a dead or hung browser (or a crashed context); reset() starts afresh. A
        shared browser that is still alive keeps serving its other contexts."""
        shared, context = self._shared, self._context
        self._shared = None
        if shared is not None:
            if shared.alive and context is not None:
                with contextlib.suppress(Exception), Watchdog(
                        10.0, lambda: self._hub.pool.kill(shared, "hung closing a context")):
                    context.close()
            self._hub.pool.release(shared, self._user_id)
        else:
            if self._browser is not None and self._browser_alive():
                with contextlib.suppress(Exception), Watchdog(10.0, self._kill_browser):
                    self._browser.close()  # over CDP: disconnects, your browser runs on
            kill_pid(self._browser_pid)  # a browser we started on a profile (None: yours)
        self._browser = self._context = self._page = None
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
                    ended = "its context was closed" if self._shared else "the browser was killed"
                    reason = (f"no answer from the browser for {self.config.hang_timeout_s:.0f} s"
                              f" during {operation} (page hung); {ended}")
                else:
                    reason = f"browser crashed during {operation}: {self._crash_reason or ''} " \
                             f"{str(error).splitlines()[0]}"
                self._discard_browser()
                raise EnvironmentCrashed(f"{reason}; it restarts on the next reset()") from error
            raise

    def _close_browser_side(self) -> None:
        """Close this environment's context (and its browser if nobody else uses it)."""
        if self._attached:
            self._close_attached()
            return
        self._discard_browser()
