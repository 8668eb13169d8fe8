"""Web environments of one process share Chromium browsers, a context each: a dead browser
ends only the episodes of its contexts, a crashed renderer only its own (real Chromium)."""

from __future__ import annotations

import concurrent.futures
import os
import signal

import psutil
import pytest

from actions.contracts import EnvironmentCrashed
from actions.models import Click
from actions.observation import Size
from environments.web import CHROMIUM_FLAGS, BrowserHub, WebConfig, WebEnvironment
from tests.conftest_web import site, web_task  # noqa: F401


def _renderers(pid: int) -> set[int]:
    found = set()
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "--type=renderer" in child.cmdline():
                found.add(child.pid)
        except psutil.Error:  # a renderer that just exited (a zombie until reaped)
            continue
    return found


def test_a_dead_browser_ends_only_its_contexts_and_is_relaunched(site):  # noqa: F811
    config = WebConfig(viewport=Size(width=200, height=120), contexts_per_browser=2)
    # three environments on three threads, as the engine's hosts run them
    threads = [concurrent.futures.ThreadPoolExecutor(1) for _ in range(3)]
    envs = [t.submit(WebEnvironment, config).result() for t in threads]

    def on(i: int, fn):  # noqa: ANN001, ANN202
        return threads[i].submit(fn, envs[i]).result()

    try:
        for i in range(3):
            on(i, lambda env: env.reset(web_task(f"{site}/events.html")))
        first, second, third = (env.browser_pid for env in envs)
        assert first == second != third  # two contexts per browser, then a second browser
        os.kill(first, signal.SIGKILL)
        for i in (0, 1):
            with pytest.raises(EnvironmentCrashed):
                on(i, lambda env: env.step(Click(x=10, y=10)))
        assert on(2, lambda env: env.step(Click(x=10, y=10))).action_error is None
        on(0, lambda env: env.reset(web_task(f"{site}/plain.html")))
        on(1, lambda env: env.reset(web_task(f"{site}/plain.html")))
        # the first relaunched environment fills the survivor, the second needs a new one
        pids = [env.browser_pid for env in envs]
        assert first not in pids and pids.count(third) == 2 and len(set(pids)) == 2
        assert on(1, lambda env: env.step(Click(x=10, y=10))).url == f"{site}/plain.html"
    finally:
        for i in range(3):
            on(i, lambda env: env.close())
        for t in threads:
            t.shutdown()


def test_environments_starting_at_once_fill_browsers_rather_than_launch_one_each(site):  # noqa: F811
    config = WebConfig(viewport=Size(width=200, height=120), contexts_per_browser=2)
    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        envs = list(threads.map(lambda _: WebEnvironment(config), range(4)))
        try:
            list(threads.map(lambda env: env.reset(web_task(f"{site}/plain.html")), envs))
            pids = [env.browser_pid for env in envs]
            assert len(set(pids)) == 2 and all(pids.count(pid) == 2 for pid in pids)
        finally:
            list(threads.map(lambda env: env.close(), envs))


def test_a_crashed_renderer_ends_only_its_own_episode(site):  # noqa: F811
    config = WebConfig(viewport=Size(width=200, height=120))
    with WebEnvironment(config) as victim, WebEnvironment(config) as bystander:
        victim.reset(web_task(f"{site}/events.html"))
        before = _renderers(victim.browser_pid)
        bystander.reset(web_task(f"{site}/plain.html"))
        assert bystander.browser_pid == victim.browser_pid
        for renderer in _renderers(victim.browser_pid) - before:  # its page (and a spare)
            os.kill(renderer, signal.SIGKILL)  # what the soak's kill_context fault does
        with pytest.raises(EnvironmentCrashed, match="renderer crashed"):
            bystander.step(Click(x=10, y=10))
            bystander.step(Click(x=10, y=10))  # whichever call meets the dead renderer
        assert victim.step(Click(x=37, y=82)).action_error is None
        assert bystander.reset(web_task(f"{site}/plain.html")).url == f"{site}/plain.html"
        assert bystander.browser_pid == victim.browser_pid  # the browser itself lived on


def test_the_last_environment_out_closes_browser_and_driver(site):  # noqa: F811
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    env = WebEnvironment(WebConfig(viewport=Size(width=200, height=120)))
    env.reset(web_task(f"{site}/plain.html"))
    hub = env._hub
    assert hub is not None and hub.users >= 1
    env.close()
    env.close()  # twice is fine
    if hub.users == 0:  # no other test's environment holds this process's hub
        assert hub.stopped and BrowserHub._current is not hub
        after = {p.pid for p in psutil.Process().children(recursive=True)
                 if p.status() != psutil.STATUS_ZOMBIE}
        assert after <= before


def test_our_disabled_features_keep_playwrights_own(site):  # noqa: F811
    """Chromium honours only the last --disable-features: ours must repeat Playwright's."""
    with WebEnvironment(WebConfig(viewport=Size(width=200, height=120))) as env:
        env.reset(web_task(f"{site}/plain.html"))
        flags = [a for a in psutil.Process(env.browser_pid).cmdline()
                 if a.startswith("--disable-features=")]
        playwrights, ours = (set(f.split("=", 1)[1].split(",")) for f in flags)
        assert playwrights <= ours and flags[-1] == CHROMIUM_FLAGS[-1]
        renderers = [psutil.Process(pid).cmdline() for pid in _renderers(env.browser_pid)]
        assert not any("--top-chrome-webui" in cmdline for cmdline in renderers)  # no omnibox popup renderer per context


def test_a_reused_context_is_renewed_after_max_episodes_per_context(site):  # noqa: F811
    config = WebConfig(viewport=Size(width=200, height=120), fresh_context_per_episode=False,
                       max_episodes_per_context=2)
    with WebEnvironment(config) as env:
        contexts = []
        for _ in range(3):
            env.reset(web_task(f"{site}/plain.html"))
            contexts.append(env._context)
        assert contexts[0] is contexts[1] and contexts[2] is not contexts[1]


def test_reading_a_dead_page_from_another_thread_is_a_crash(site):  # noqa: F811
    """An expert reads the page from its host's thread; a killed browser is a crash there
    too (EnvironmentCrashed, retryable), not a raw Playwright error."""
    with WebEnvironment(WebConfig(viewport=Size(width=200, height=120),
                                  contexts_per_browser=1)) as env:
        env.reset(web_task(f"{site}/plain.html"))
        page = env.page
        os.kill(env.browser_pid, signal.SIGKILL)
        with pytest.raises(EnvironmentCrashed):
            for _ in range(50):  # until the driver has noticed the browser is gone
                page.evaluate("() => 1")
