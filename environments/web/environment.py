"""The web environment: Debian's Chromium driven through Playwright.

Every canonical action becomes real input events (`page.mouse`, `page.keyboard`), the
same events a user's mouse and keyboard produce, so a page cannot tell an agent from a
person. Coordinates are CSS pixels of the viewport: that is the input space the
observation states (`screen_size`); the screenshot is `device_scale_factor` times larger.

Environments of one process share one Playwright driver on one thread (the hub,
environments/web/hub.py) and share Chromium browsers, each environment in an isolated
context (cookies, storage, cache, viewport, init scripts and settle script its own), at
most `contexts_per_browser` per browser. The Environment contract stays synchronous: each
call runs on the hub in a greenlet of its own while the caller waits, so environments on
different threads go on side by side.

The environment is composed of three parts along its seams: `BrowserSide`
(environments/web/browser.py: launch or attach, contexts and tabs, crashes), `Acting`
(acting.py: actions to input events) and `Capture` (capture.py: settling, capture,
observation). A browser that dies or stops answering (past `hang_timeout_s`) ends the
episodes of its contexts with `EnvironmentCrashed` (a hung page only its own: its context
is closed); the next `reset` starts afresh.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from actions.contracts import EnvironmentCrashed, Task
from actions.models import Action
from actions.observation import Observation, Size
from environments._settle import AmbientMemory
from environments.web.acting import Acting
from environments.web.browser import BrowserSide
from environments.web.capture import Capture
from environments.web.config import PageLoadError, WebConfig, host_allowed
from environments.web.hub import BrowserHub, SharedBrowser, next_user_id

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Public methods that run on the hub thread (in WebEnvironment and in every subclass).
_ON_HUB = ("reset", "step", "evaluate", "close", "notify_terminal")


def _runs_on_hub(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def on_hub(self: WebEnvironment, *args: Any, **kwargs: Any) -> T:
        name = method.__name__
        hub = self._hub_for(name)
        if hub is None or hub.on_hub():
            return method(self, *args, **kwargs)
        try:
            return hub.call(lambda: method(self, *args, **kwargs))
        finally:
            if name == "close":  # released off the hub: the last user stops its thread
                self._hub = None
                hub.release()

    on_hub._runs_on_hub = True  # type: ignore[attr-defined]
    return on_hub


class WebEnvironment(BrowserSide, Acting, Capture):
    """A Chromium tab driven with real mouse and keyboard events (see module docstring).

    The browser starts lazily on the first `reset` and again after a crash; environments
    of one process share it, each in its own context. Each `reset` opens a fresh context
    (no cookies, storage or cache from earlier episodes) unless `fresh_context_per_episode`
    is False. `reset`, `step`, `evaluate` and `close` (also a subclass's own) run on the
    process's browser thread; call them from any one thread at a time.
    A generic web task gives its start page in `task.config["url"]`; optional
    `task.config["success_js"]` (a JS expression, truthy or a number) and
    `task.config["expected_answer"]` define `evaluate()`.
    """

    def __init__(self, config: WebConfig | None = None) -> None:
        self.config = config or WebConfig()
        self._hub: BrowserHub | None = None  # type: ignore[assignment]
        self._user_id = next_user_id()
        self._shared: SharedBrowser | None = None
        self._browser: Any = None
        self._context: Any = None
        self._page: Any = None
        self._pointer: tuple[int, int] = (0, 0)
        self._browser_pid: int | None = None
        self._crash_reason: str | None = None
        self._episodes_in_context = 0
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _ON_HUB:  # a subclass's own reset/step/... run on the hub too
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_runs_on_hub", False):
                setattr(cls, name, _runs_on_hub(method))

    def _hub_for(self, name: str) -> BrowserHub | None:
        """The hub this environment's calls run on (acquired on first use; a new one after
        the driver died). None for `close` of an environment that never started."""
        hub = self._hub
        if hub is not None and hub.stopped and not hub.on_hub():
            self._forget_browser()  # its objects died with the driver
            self._hub = None
            hub.release()
            hub = None
        if hub is None and name != "close":
            hub = self._hub = BrowserHub.acquire()
        return hub

    def _forget_browser(self) -> None:
        self._shared = self._browser = self._context = self._page = None
        self._browser_pid = None
        self._our_pages.clear()
        self._pending_requests.clear()

    # ----------------------------------------------------------------- properties

    @property
    def page(self) -> Any:
        """The live Playwright `Page` of the current tab (for experts and benchmarks). From
        another thread than the hub it comes wrapped: each use runs on the hub."""
        if self._page is None:
            raise RuntimeError("no page yet: call reset(task) first")
        return self._hub.proxy(self._page) if self._hub is not None else self._page

    @property
    def browser_pid(self) -> int | None:
        """Process id of the Chromium browser process this environment's context lives in
        (shared with other environments of this process), or None if not started."""
        return self._browser_pid

    @property
    def screen_size(self) -> Size:
        """The input space: the viewport in CSS pixels."""
        return self.config.viewport

    def close(self) -> None:
        """Close this environment's context (its browser too, once no other environment of
        the process uses it) and, with the last environment, the driver. Safe to call twice."""
        self._close_browser_side()

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
            if (self._context is None or self.config.fresh_context_per_episode
                    or self._attached
                    or self._episodes_in_context >= self.config.max_episodes_per_context):
                self._new_context()
                self._episodes_in_context = 0
            else:
                self._reuse_context()
            self._episodes_in_context += 1

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


for _name in _ON_HUB:
    if _name in WebEnvironment.__dict__:
        setattr(WebEnvironment, _name, _runs_on_hub(WebEnvironment.__dict__[_name]))
