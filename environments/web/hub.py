"""The browser thread of a process: one Playwright driver, shared Chromiums, many contexts.

Playwright's sync API binds a driver (a Node process, ~100 MiB PSS) and every object made
through it to one thread. Web environments of one process therefore run their browser
calls on one thread of their own, the *hub*: each call of an environment (`reset`, `step`,
...) runs there in a greenlet of its own, as Playwright itself runs event handlers, so
that while one environment waits for its page to settle the others go on. The caller's
thread blocks on the call as before (the Environment contract stays synchronous).

On the hub, `BrowserPool` hands out shared Chromium browsers: an environment leases a
place on a browser that carries fewer than `contexts_per_browser` environments (else a new
one is launched) and opens its own isolated context there. A browser that dies tells every
environment on it (their episodes end as crashed, retryable); the next lease launches a
fresh one. The pool closes a browser when its last environment leaves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import greenlet

from actions.contracts import EnvironmentCrashed
from environments._settle import Watchdog
from environments.web.config import CHROMIUM_FLAGS, INSTANCE_FLAG, WebConfig, find_chromium

logger = logging.getLogger(__name__)

T = TypeVar("T")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def find_pid_with_flag(flag: str) -> int | None:
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


def kill_pid(pid: int | None) -> None:
    """SIGKILL `pid` if it is still alive."""
    if pid is not None and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class BrowserHub:
    """The thread that owns this process's Playwright driver (see module docstring).

    `call(fn)` runs `fn` on the hub in a greenlet of its own and returns its result (or
    raises its error); called on the hub it just runs `fn`. `sleep` waits without holding
    the hub. Get the process's hub with `BrowserHub.acquire()`; `release()` stops it when
    its last user lets go.
    """

    _lock = threading.Lock()
    _current: BrowserHub | None = None

    def __init__(self) -> None:
        self.users = 0
        self.pool = BrowserPool(self)
        self._pid = os.getpid()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._stopped = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="cua-browsers", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    @classmethod
    def acquire(cls) -> BrowserHub:
        """This process's hub, started on first use (and again after its driver died)."""
        with cls._lock:
            hub = cls._current
            if hub is None or hub._stopped or hub._pid != os.getpid():
                hub = cls._current = BrowserHub()
            hub.users += 1
            return hub

    def release(self) -> None:
        """One user less; the last one stops the driver (no process is left behind)."""
        with BrowserHub._lock:
            self.users -= 1
            if self.users > 0 or self._stopped:
                return
            if BrowserHub._current is self:
                BrowserHub._current = None
        self.stop()

    # ----------------------------------------------------------------- the thread

    def _main(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            driver = sync_playwright().start()
        except BaseException as error:  # noqa: BLE001 - handed to the thread that waits
            self._start_error = error
            self._stopped = True
            self._ready.set()
            return
        self.driver = driver
        # The driver's event loop runs in its dispatcher greenlet; calls from other threads
        # are scheduled on that loop (SyncBase keeps both as attributes).
        self.loop: asyncio.AbstractEventLoop = driver._loop
        self._dispatcher: greenlet.greenlet = driver._dispatcher_fiber
        self._thread_id = threading.get_ident()
        stop = self._stop_future = self.loop.create_future()
        main = greenlet.getcurrent()
        stop.add_done_callback(lambda _: main.switch())
        self._ready.set()
        while not stop.done() and not self._dispatcher.dead:
            self._dispatcher.switch()  # runs the loop until stop() (or the driver died)
        self._stopped = True
        with contextlib.suppress(Exception):
            driver.stop()
        for future in list(self._pending):  # calls the dead driver can no longer answer
            if not future.done():
                future.set_exception(EnvironmentCrashed(
                    "the Playwright driver of this process exited; the next reset() starts "
                    "a new one"))

    @property
    def stopped(self) -> bool:
        """Whether the thread (and its driver) has stopped."""
        return self._stopped

    def stop(self) -> None:
        """Close every browser and the driver; idempotent."""
        if self._stopped:
            return
        with contextlib.suppress(Exception):
            self.call(self.pool.close_all)
        with contextlib.suppress(RuntimeError):  # the loop already closed: it stopped
            self.loop.call_soon_threadsafe(
                lambda: self._stop_future.done() or self._stop_future.set_result(None))
        self._thread.join(timeout=30)

    def on_hub(self) -> bool:
        """Whether the current code runs on the hub thread."""
        return threading.get_ident() == getattr(self, "_thread_id", None)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the hub, in its own greenlet, and wait for it."""
        if self.on_hub():
            return fn()
        if self._stopped:
            raise EnvironmentCrashed("the browser thread of this process has stopped; the next "
                                     "reset() starts a new one")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._pending.add(future)

        def body() -> None:
            try:
                future.set_result(fn())
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller
                future.set_exception(error)

        try:
            self.loop.call_soon_threadsafe(lambda: greenlet.greenlet(body).switch())
        except RuntimeError as error:  # the loop closed between the check and here
            self._pending.discard(future)
            raise EnvironmentCrashed("the browser thread of this process has stopped") from error
        try:
            return future.result()
        finally:
            self._pending.discard(future)

    def submit(self, fn: Callable[[], Any]) -> None:
        """Start `fn` on the hub without waiting (a watchdog's timer thread uses this)."""
        def body() -> None:
            try:
                fn()
            except Exception as error:  # noqa: BLE001 - nobody waits for it: log
                logger.warning("browser thread: %s", error)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(lambda: greenlet.greenlet(body).switch())

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`; on the hub the other environments' calls go on meanwhile."""
        if not self.on_hub():
            time.sleep(seconds)
            return
        me = greenlet.getcurrent()
        done = self.loop.create_future()
        waiting = True

        def wake(_: Any) -> None:
            if waiting:
                me.switch()

        done.add_done_callback(wake)
        handle = self.loop.call_later(seconds, lambda: done.done() or done.set_result(None))
        try:
            while not done.done() and not self._dispatcher.dead:
                self._dispatcher.switch()
        finally:
            waiting = False
            handle.cancel()

    def proxy(self, value: Any) -> Any:
        """`value` as seen from another thread: a Playwright object comes back wrapped so
        that each use of it runs on the hub; anything else as it is."""
        if type(value).__module__.startswith("playwright.") and not self.on_hub():
            return HubProxy(self, value)
        if isinstance(value, list) and not self.on_hub():
            return [self.proxy(item) for item in value]
        return value


class HubProxy:
    """A Playwright object of the hub, usable from another thread (experts, safety checks,
    tests read the page through it): attribute reads and calls run on the hub."""

    __slots__ = ("_hub", "_target")

    def __init__(self, hub: BrowserHub, target: Any) -> None:
        object.__setattr__(self, "_hub", hub)
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        hub, target = self._hub, self._target
        value = hub.call(lambda: getattr(target, name))
        if callable(value) and not type(value).__module__.startswith("playwright."):
            def on_hub(*args: Any, **kwargs: Any) -> Any:
                try:
                    return hub.proxy(hub.call(lambda: value(*args, **kwargs)))
                except Exception as error:
                    if type(error).__name__ != "TargetClosedError":
                        raise
                    # an expert reading a page whose browser or renderer died: the
                    # environment crashed (retryable), as its own calls report it
                    raise EnvironmentCrashed(f"the page closed during {name}: "
                                             f"{str(error).splitlines()[0]}") from error
            return on_hub
        return hub.proxy(value)

    def __eq__(self, other: object) -> bool:
        other = other._target if isinstance(other, HubProxy) else other
        return self._target is other

    def __hash__(self) -> int:
        return id(self._target)

    def __repr__(self) -> str:
        return f"HubProxy({self._target!r})"


# --------------------------------------------------------------------------- shared browsers


@dataclass(eq=False)
class SharedBrowser:
    """One Chromium on the hub and the environments (`users`) that hold a context in it."""

    number: int
    key: tuple[Any, ...]
    browser: Any = None  # None while it launches
    pid: int | None = None
    users: dict[int, Callable[[str], None]] = field(default_factory=dict)
    dead_reason: str | None = None
    launch_error: BaseException | None = None

    @property
    def launching(self) -> bool:
        return self.browser is None and self.launch_error is None

    @property
    def alive(self) -> bool:
        if self.launching:
            return True
        return (self.dead_reason is None and self.browser is not None
                and (self.pid is None or pid_alive(self.pid))
                and bool(self.browser.is_connected()))


class BrowserPool:
    """The Chromium browsers of one hub, shared by environments (runs on the hub only)."""

    def __init__(self, hub: BrowserHub) -> None:
        self.hub = hub
        self.browsers: list[SharedBrowser] = []
        self.launched = 0

    @staticmethod
    def launch_key(config: WebConfig) -> tuple[Any, ...]:
        """Environments whose configs agree on these share browsers."""
        return (find_chromium(config.chromium_path), config.headless, tuple(config.extra_args))

    def lease(self, user: int, config: WebConfig, on_crash: Callable[[str], None]
              ) -> SharedBrowser:
        """A live browser with room for one more context (launched if none has room).

        Environments lease concurrently (each in its own greenlet): a browser that is
        still launching counts its future users, who wait for it rather than launch more.
        """
        key = self.launch_key(config)
        for shared in list(self.browsers):
            if not shared.alive:
                self._drop(shared, shared.dead_reason or "the browser process is gone")
        for shared in self.browsers:
            if shared.key == key and len(shared.users) < config.contexts_per_browser:
                shared.users[user] = on_crash
                self._wait_launched(shared, user)
                return shared
        self.launched += 1
        shared = SharedBrowser(self.launched, key)
        shared.users[user] = on_crash
        self.browsers.append(shared)
        try:
            self._launch(shared, config)
        except BaseException as error:
            shared.launch_error = error
            shared.users.pop(user, None)
            if shared in self.browsers:
                self.browsers.remove(shared)
            raise
        return shared

    def _wait_launched(self, shared: SharedBrowser, user: int) -> None:
        while shared.launching:
            self.hub.sleep(0.02)  # another environment's greenlet is launching it
        if shared.launch_error is not None:
            shared.users.pop(user, None)
            raise EnvironmentCrashed(f"the shared browser failed to launch: "
                                     f"{shared.launch_error}")

    def release(self, shared: SharedBrowser, user: int) -> None:
        """`user` left `shared`; a browser nobody uses any more is closed."""
        shared.users.pop(user, None)
        if shared.users:
            return
        if shared in self.browsers:
            self.browsers.remove(shared)
        self._close(shared)

    def _launch(self, shared: SharedBrowser, config: WebConfig) -> None:
        executable, headless, extra_args = shared.key
        marker = f"{INSTANCE_FLAG}={uuid.uuid4().hex}"
        browser = self.hub.driver.chromium.launch(
            executable_path=executable, headless=headless,
            args=[*CHROMIUM_FLAGS, *extra_args, marker],
            timeout=config.navigation_timeout_s * 1000)
        shared.pid = find_pid_with_flag(marker)
        shared.browser = browser
        browser.on("disconnected", lambda _: self._on_disconnected(shared))
        logger.info("launched browser %d: %s (pid %s, version %s)", shared.number, executable,
                    shared.pid, browser.version)

    def _on_disconnected(self, shared: SharedBrowser) -> None:
        if shared.dead_reason is None:
            shared.dead_reason = "browser disconnected"
        for on_crash in list(shared.users.values()):
            on_crash(shared.dead_reason)

    def kill(self, shared: SharedBrowser, reason: str) -> None:
        """Kill a browser (hung, or a fault injected on purpose): all its episodes crash."""
        if shared.dead_reason is None:
            shared.dead_reason = reason
        kill_pid(shared.pid)

    def _drop(self, shared: SharedBrowser, reason: str) -> None:
        if shared in self.browsers:
            self.browsers.remove(shared)
        logger.warning("browser %d (pid %s) is gone: %s", shared.number, shared.pid, reason)
        kill_pid(shared.pid)

    def _close(self, shared: SharedBrowser) -> None:
        if shared.alive and shared.browser is not None:
            with contextlib.suppress(Exception), Watchdog(10.0, lambda: kill_pid(shared.pid)):
                shared.browser.close()
        kill_pid(shared.pid)

    def close_all(self) -> None:
        for shared in list(self.browsers):
            shared.users.clear()
            self.release(shared, -1)


_THREAD_DRIVER = threading.local()


@contextlib.contextmanager
def shared_playwright() -> Iterator[Any]:
    """A Playwright driver for the calling thread, shared by nested users on that thread
    (a second `sync_playwright()` on one thread fails: "Sync API inside the asyncio loop").
    Environments do not use it: they run on the hub."""
    from playwright.sync_api import sync_playwright

    holder = getattr(_THREAD_DRIVER, "holder", None)
    if holder is None:
        holder = _THREAD_DRIVER.holder = {"driver": sync_playwright().start(), "users": 0}
    holder["users"] += 1
    try:
        yield holder["driver"]
    finally:
        holder["users"] -= 1
        if holder["users"] <= 0:
            _THREAD_DRIVER.holder = None
            with contextlib.suppress(Exception):
                holder["driver"].stop()


_counter = itertools.count(1)


def next_user_id() -> int:
    """A process-unique id for one environment's place on a shared browser."""
    return next(_counter)
