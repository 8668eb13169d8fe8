"""MiniWoB++ tasks (from the `miniwob` wheel's HTML) in our Playwright web environment.

The episode protocol is the one the miniwob package's own Selenium driver uses
(`miniwob/selenium_instance.py` and `html/core/core.js`): load the task page, seed
`Math.seedrandom`, call `core.startEpisodeReal()`, wait for `WOB_TASK_READY`, read the
utterance with `core.getUtterance()`, and read `WOB_DONE_GLOBAL` /
`WOB_RAW_REWARD_GLOBAL` after each action. Only actions differ: ours are real mouse and
keyboard events at pixel coordinates, not Selenium element calls.

Pages are served by a loopback HTTP server the environment starts (127.0.0.1, random
port) rather than opened as file:// URLs: the page then has an ordinary http origin, so
network-quiet detection and the optional domain allowlist
(`allowed_domains=["127.0.0.1"]` keeps the agent inside the benchmark, at ~70 ms per page
load for request interception) work as for any web page, and tasks that need an http
origin load too. The tab is reused across episodes: each reset loads the page anew, so no
task state survives, without paying for a new renderer process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from actions.contracts import Task
from actions.models import Action
from actions.observation import Observation, Size
from environments.web import WebConfig, WebEnvironment

logger = logging.getLogger(__name__)

# MiniWoB's task area: 160x210 CSS px at the page's top-left (core.css #wrap).
MINIWOB_VIEWPORT = Size(width=160, height=210)
# WebConfig values that suit MiniWoB pages (small, stateless between loads).
MINIWOB_WEB_DEFAULTS: dict[str, Any] = {
    "viewport": MINIWOB_VIEWPORT,
    "settle_timeout_s": 2.0,
    "fresh_context_per_episode": False,
}
# The page timer when a task sets no time limit: long enough never to fire (BrowserGym
# uses the same 1000 s); episodes are then bounded by max_steps.
NO_TIME_LIMIT_S = 1000.0


def miniwob_html_dir() -> Path:
    """The `html/` folder of the installed miniwob package (found without importing it)."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the `miniwob` package is not installed: `pip install miniwob==1.1.0`"
        )
    html = Path(next(iter(spec.submodule_search_locations))) / "html"
    if not (html / "miniwob").is_dir():
        raise FileNotFoundError(f"{html}/miniwob is missing: the miniwob wheel looks broken")
    return html


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        logger.debug("miniwob http: " + format, *args)


class StaticServer:
    """A loopback HTTP server for one folder, on its own daemon thread."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="miniwob-http")
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


_STATUS_JS = """() => ({
  done: WOB_DONE_GLOBAL, raw_reward: WOB_RAW_REWARD_GLOBAL, reward: WOB_REWARD_GLOBAL,
  reason: WOB_REWARD_REASON == null ? null : String(WOB_REWARD_REASON),
  episode: WOB_EPISODE_ID })"""

_START_JS = """([seed, maxTimeMs]) => {
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = maxTimeMs;
  core.startEpisodeReal();
}"""


class MiniWoBEnvironment(WebEnvironment):
    """Runs any MiniWoB++ task: `reset(task)` loads `task.task_id`, seeded by `task.seed`.

    `task.time_limit_s` sets the page's own episode timer (the page ends the episode
    with reward -1 when it fires); None disables it. `step` sets `Observation.done` once
    the page reports `WOB_DONE_GLOBAL`; `evaluate()` returns `WOB_RAW_REWARD_GLOBAL`
    (in [-1, 1], > 0 means success; 0.0 while the episode is still running).
    """

    def __init__(self, config: WebConfig | None = None, html_dir: Path | None = None) -> None:
        self.html_dir = html_dir or miniwob_html_dir()
        self._server: StaticServer | None = None
        super().__init__(config or WebConfig(**MINIWOB_WEB_DEFAULTS))
        self._final: dict[str, Any] | None = None

    def task_url(self, task_id: str) -> str:
        """The http URL of one task page (starts the loopback server if needed)."""
        if not (self.html_dir / "miniwob" / f"{task_id}.html").is_file():
            raise KeyError(f"no MiniWoB task {task_id!r} in {self.html_dir / 'miniwob'}")
        if self._server is None:
            self._server = StaticServer(self.html_dir)
        return f"{self._server.base_url}miniwob/{task_id}.html"

    def reset(self, task: Task) -> Observation:
        """Load the task page, start a seeded episode, observe; instruction = utterance."""
        url = self.task_url(task.task_id)
        self._final = None
        self._start_episode(task)
        limit_s = task.time_limit_s or NO_TIME_LIMIT_S
        with self._guard("reset"):
            page = self.page
            self._open(url)  # waits for the load event: window.onload built the widgets
            page.evaluate(_START_JS, [task.seed, int(limit_s * 1000)])
            self._mark_reaction()  # the episode's time-limit timer is no reaction to wait for
            page.wait_for_function("() => WOB_TASK_READY === true",
                                   timeout=self.config.navigation_timeout_s * 1000)
            response = page.evaluate("() => core.getUtterance()")
            utterance = response["utterance"] if isinstance(response, dict) else str(response)
            fields = response.get("fields") if isinstance(response, dict) else None
            return self._observe(instruction=utterance,
                                 extra_info={"fields": fields} if fields else None)

    def step(self, action: Action) -> Observation:
        """As WebEnvironment.step; after the page ended the episode, actions are refused
        (a click on MiniWoB's START cover would otherwise begin an unseeded episode)."""
        if self._final is not None:
            with self._guard("observe"):
                return self._observe(action_error="the episode is over (the task page "
                                     "reported done); call reset()")
        return super().step(action)

    def _episode_status(self) -> tuple[bool, dict[str, Any]]:
        if self._final is not None:
            return True, dict(self._final)
        status = self.page.evaluate(_STATUS_JS)
        if status["done"]:
            self._final = {"raw_reward": float(status["raw_reward"]),
                           "reward_time_scaled": float(status["reward"]),
                           "reason": status["reason"]}
            return True, dict(self._final)
        return False, {}

    def evaluate(self) -> float:
        """`WOB_RAW_REWARD_GLOBAL` of the finished episode (> 0 = success), else 0.0."""
        if self.task is None:
            raise RuntimeError("call reset(task) before evaluate()")
        if self._final is None and self._browser is not None:
            with self._guard("evaluate"):
                self._episode_status()
        return self._final["raw_reward"] if self._final is not None else 0.0

    def close(self) -> None:
        super().close()
        if self._server is not None:
            self._server.close()
            self._server = None
