"""Capturing and settling: when a step's reaction is over, and the frame that shows it.

`Capture` is the part of `WebEnvironment` that waits after each action until the page's
reaction is over — the page script (environments/_page_settle.py) reports no pending timer,
request, finite animation, DOM mutation or image load, and no request or navigation is
pending — then captures one lossless frame; where the script cannot answer it waits for a
quiet screen outside ambient regions (environments/_settle.py). `settle_timeout_s` bounds
it; never a fixed sleep (docs/settling.md). It builds the `Observation`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from actions.observation import Observation, png_size
from environments._page_settle import ambient_notes, busy_reasons
from environments._settle import (
    AmbientMemory,
    QuietWindow,
    SettleResult,
    decode_png,
    settle_on_pixels,
)
from environments.web.config import WebConfig
from environments.web.hub import BrowserHub

logger = logging.getLogger(__name__)


class Capture:
    """Settles, captures and observes the current tab (see module docstring)."""

    config: WebConfig
    page: Any
    _hub: BrowserHub
    _pointer: tuple[int, int]
    _pending_requests: dict[Any, float]
    _loading: bool
    _blocked_urls: list[str]
    _new_tab: bool
    _cdp: Any
    _ambient: AmbientMemory

    _browser_alive: Callable[[], bool]  # BrowserSide

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
            self._hub.sleep(config.fixed_settle_s)
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

