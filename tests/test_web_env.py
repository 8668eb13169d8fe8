"""The web environment against real Chromium and a loopback site."""

from __future__ import annotations

import os
import signal
import time

import pytest

from actions.contracts import Environment, EnvironmentCrashed
from actions.models import (
    NAMED_KEYS,
    Answer,
    Click,
    Drag,
    Key,
    Navigate,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    Type,
)
from actions.observation import Size
from environments.web import (
    PLAYWRIGHT_KEYS,
    BrowserNotFoundError,
    PageLoadError,
    WebEnvironment,
    find_chromium,
    host_allowed,
)
from tests.conftest_web import site, strict_env, web_env, web_task  # noqa: F401


def _log(env: WebEnvironment) -> list[dict]:
    return env.page.evaluate("() => window.log")


def test_reset_observation_states_sizes_and_url(web_env, site):  # noqa: F811
    assert isinstance(web_env, Environment)
    obs = web_env.reset(web_task(f"{site}/events.html"))
    assert obs.screen_size == Size(width=320, height=240)
    assert obs.screenshot_size == Size(width=320, height=240)
    assert obs.image().size == (320, 240)
    assert obs.url == f"{site}/events.html"
    assert obs.instruction == "test page"
    assert obs.settle_s is not None and obs.info["settled"] is True


def test_click_is_a_trusted_mouse_event_at_the_pixel(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    obs = web_env.step(Click(x=37, y=82))
    clicks = [e for e in _log(web_env) if e["type"] == "click"]
    assert clicks == [{"type": "click", "x": 37, "y": 82, "button": 0, "detail": 1,
                       "trusted": True, "key": None}]
    assert obs.action_error is None
    assert obs.execute_s is not None and obs.execute_s >= 0
    assert obs.settle_s is not None and obs.settle_s >= 0


def test_double_and_right_click(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    web_env.step(Click(x=50, y=100, clicks=2))
    web_env.step(Click(x=60, y=110, button="right"))
    types = [(e["type"], e["detail"]) for e in _log(web_env) if e["type"] != "mousemove"]
    assert ("dblclick", 2) in types
    assert ("contextmenu", 1) in types or ("contextmenu", 0) in types
    assert [e["button"] for e in _log(web_env) if e["type"] == "contextmenu"] == [2]


def test_typing_unicode_and_key_combinations(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    web_env.step(Click(x=100, y=20))
    value = "document.getElementById('field').value"
    web_env.step(Type(text="héllo 日本 ✓"))
    assert web_env.page.evaluate(value) == "héllo 日本 ✓"
    web_env.step(Key(keys=("ctrl", "a")))
    web_env.step(Type(text="x"))
    assert web_env.page.evaluate(value) == "x"
    web_env.step(Key(keys=("shift", "b")))
    web_env.step(Key(keys=("é",)))
    assert web_env.page.evaluate(value) == "xBé"
    web_env.step(Key(keys=("backspace",)))
    assert web_env.page.evaluate(value) == "xB"


def test_named_keys_reach_the_page_with_dom_key_names(web_env, site):  # noqa: F811
    assert set(PLAYWRIGHT_KEYS) == set(NAMED_KEYS)
    web_env.reset(web_task(f"{site}/plain.html"))
    expected = {"enter": "Enter", "escape": "Escape", "tab": "Tab", "up": "ArrowUp",
                "down": "ArrowDown", "left": "ArrowLeft", "right": "ArrowRight",
                "home": "Home", "end": "End", "pageup": "PageUp", "pagedown": "PageDown",
                "delete": "Delete", "space": " ", "f2": "F2", "return": "Enter", "esc": "Escape"}
    web_env.page.evaluate("""() => { window.keys = [];
        document.addEventListener('keydown', e => keys.push(e.key)); }""")
    for name in expected:
        obs = web_env.step(Key(keys=(name,)))
        assert obs.action_error is None
    assert web_env.page.evaluate("() => window.keys") == list(expected.values())


def test_scroll_turns_the_wheel(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    web_env.step(Scroll(direction="down", amount=3, x=150, y=120))
    assert web_env.page.evaluate("() => window.scrollY") == 300
    web_env.step(Scroll(direction="up", amount=1))
    assert web_env.page.evaluate("() => window.scrollY") == 200


def test_drag_presses_moves_and_releases(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    web_env.step(Drag(start_x=20, start_y=70, end_x=180, end_y=150))
    events = [e for e in _log(web_env) if e["type"] in ("mousedown", "mousemove", "mouseup")]
    events = events[[e["type"] for e in events].index("mousedown"):]  # after the approach
    assert events[0]["type"] == "mousedown" and (events[0]["x"], events[0]["y"]) == (20, 70)
    assert events[-1]["type"] == "mouseup" and (events[-1]["x"], events[-1]["y"]) == (180, 150)
    assert sum(e["type"] == "mousemove" for e in events) >= 2


def test_settling_waits_for_a_css_transition(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/transition.html"))
    obs = web_env.step(Click(x=40, y=25))
    assert obs.info["settled"] is True
    # the transition starts during the click (execute_s) and lasts 0.4 s
    assert obs.execute_s + obs.settle_s >= 0.38, "returned while the transition was running"
    assert obs.image().convert("RGB").getpixel((290, 120)) == (255, 0, 0)


def test_settling_waits_for_pending_requests(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/fetch.html"))
    obs = web_env.step(Click(x=40, y=25))
    assert obs.execute_s + obs.settle_s >= 0.48, "returned while the 0.5 s request was pending"
    assert obs.image().convert("RGB").getpixel((150, 120)) == (0, 0, 255)


def test_quiet_page_settles_fast(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/plain.html"))
    times = [web_env.step(Click(x=5, y=200)).settle_s for _ in range(5)]
    assert sorted(times)[2] < 0.5


def test_refused_and_mapped_mobile_actions(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/plain.html"))
    assert "outside the 320x240 screen" in web_env.step(Click(x=400, y=10)).action_error
    assert "touch gesture" in web_env.step(
        Swipe(start_x=1, start_y=1, end_x=5, end_y=5)).action_error
    assert "navigate" in web_env.step(OpenApp(name="Contacts")).action_error
    assert "does not exist in a browser" in web_env.step(
        SystemButton(button="home")).action_error
    assert web_env.step(Navigate(url=f"{site}/second.html")).url == f"{site}/second.html"
    assert web_env.step(SystemButton(button="back")).url == f"{site}/plain.html"
    obs = web_env.step(Navigate(url="http://127.0.0.1:1/nothing-listens-here"))
    assert obs.action_error is not None and "could not open" in obs.action_error


def test_answer_terminate_observe_and_evaluate(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/plain.html", expected_answer="Plain"))
    obs = web_env.step(Answer(text="plain "))
    assert obs.action_error is None and obs.screenshot_png
    assert web_env.evaluate() == 1.0
    web_env.reset(web_task(f"{site}/plain.html",
                           success_js="document.querySelector('h1').textContent === 'plain'"))
    assert web_env.step(Terminate(status="success")).action_error is None
    assert web_env.evaluate() == 1.0
    web_env.reset(web_task(f"{site}/plain.html"))
    assert web_env.evaluate() == 0.0


def test_new_tab_receives_the_actions(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/popup.html"))
    obs = web_env.step(Click(x=20, y=18))
    assert obs.info.get("new_tab") is True
    assert obs.url == f"{site}/second.html"
    # the next episode starts again from a single fresh tab
    assert web_env.reset(web_task(f"{site}/plain.html")).url == f"{site}/plain.html"


def test_reset_needs_a_url(web_env):  # noqa: F811
    from actions.contracts import Task

    with pytest.raises(ValueError, match="config\\['url'\\]"):
        web_env.reset(Task(suite="web", task_id="nourl"))
    with pytest.raises(PageLoadError, match="could not open http://127.0.0.1:1/"):
        web_env.reset(web_task("http://127.0.0.1:1/"))


def test_crash_mid_episode_raises_promptly_and_reset_restarts(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    old_pid = web_env.browser_pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(EnvironmentCrashed, match="reset"):
        web_env.step(Click(x=50, y=100))
    assert time.monotonic() - started < 5.0
    with pytest.raises(EnvironmentCrashed):
        web_env.step(Click(x=50, y=100))
    obs = web_env.reset(web_task(f"{site}/events.html"))
    assert web_env.browser_pid not in (None, old_pid)
    assert web_env.step(Click(x=37, y=82)).action_error is None
    assert obs.screenshot_size == Size(width=320, height=240)


def test_allowlist_refuses_navigation_elsewhere(strict_env, site):  # noqa: F811
    other = site.replace("127.0.0.1", "localhost")
    with pytest.raises(ValueError, match="allowed_domains"):
        strict_env.reset(web_task(f"{other}/plain.html"))
    strict_env.reset(web_task(f"{site}/events.html"))
    obs = strict_env.step(Navigate(url=f"{other}/plain.html"))
    assert "refused" in obs.action_error and "localhost" in obs.action_error
    assert obs.url == f"{site}/events.html"
    obs = strict_env.step(Click(x=30, y=186))  # the link to localhost
    assert obs.action_error is not None and "refused" in obs.action_error
    assert obs.url == f"{site}/events.html"
    assert strict_env.step(Navigate(url=f"{site}/plain.html")).action_error is None


def test_hung_page_is_killed_and_reported(strict_env, site):  # noqa: F811
    strict_env.reset(web_task(f"{site}/hang.html"))
    started = time.monotonic()
    with pytest.raises(EnvironmentCrashed, match="hung|crashed"):
        strict_env.step(Click(x=40, y=25))
        strict_env.step(Click(x=40, y=25))  # whichever call meets the frozen renderer
    assert time.monotonic() - started < strict_env.config.hang_timeout_s * 2 + 5
    assert strict_env.reset(web_task(f"{site}/plain.html")).url == f"{site}/plain.html"


def test_host_allowlist_rules():
    allowed = ["example.com", "127.0.0.1"]
    assert host_allowed("https://example.com/a", allowed)
    assert host_allowed("https://docs.example.com/a", allowed)
    assert not host_allowed("https://badexample.com/", allowed)
    assert not host_allowed("http://localhost:8000/", allowed)
    assert host_allowed("about:blank", allowed)
    assert not host_allowed("file:///etc/passwd", allowed)
    assert host_allowed("file:///tmp/x.html", ["file"])
    assert host_allowed("https://anything.org/", None)


def test_missing_chromium_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserNotFoundError, match="apt-get install chromium"):
        find_chromium(str(tmp_path / "no-chromium"))
    assert find_chromium("/usr/bin/chromium") == "/usr/bin/chromium"


def test_fixed_sleep_mode_waits_exactly_that_long(web_env, site):  # noqa: F811
    settling = web_env.config
    web_env.config = settling.model_copy(update={"fixed_settle_s": 0.2})
    try:
        web_env.reset(web_task(f"{site}/transition.html"))
        obs = web_env.step(Click(x=40, y=25))
        assert obs.settle_s >= 0.2 and obs.info["frames"] == 1  # slept, then one capture
    finally:
        web_env.config = settling


def test_environments_share_the_browser_but_not_the_context(web_env, site):  # noqa: F811
    web_env.reset(web_task(f"{site}/events.html"))
    web_env.page.evaluate("() => { localStorage.setItem('who', 'first');"
                          " document.cookie = 'who=first'; }")
    with WebEnvironment(web_env.config.model_copy(
            update={"viewport": Size(width=200, height=100)})) as second:
        obs = second.reset(web_task(f"{site}/events.html"))
        assert second.browser_pid == web_env.browser_pid  # one Chromium ...
        assert obs.screenshot_size == Size(width=200, height=100)  # ... a context each
        assert second.page.evaluate("() => [localStorage.getItem('who'), document.cookie]") \
            == [None, ""]
        assert second.step(Click(x=5, y=5)).url == f"{site}/events.html"
        assert web_env.step(Click(x=37, y=82)).url == f"{site}/events.html"
    # closing the second environment leaves the first one (and the browser) working
    assert web_env.step(Click(x=37, y=82)).action_error is None
    assert web_env.page.evaluate("() => localStorage.getItem('who')") == "first"


def test_observation_can_carry_the_accessibility_tree(web_env, site):  # noqa: F811
    plain = web_env.config
    web_env.config = plain.model_copy(update={"include_a11y_tree": True})
    try:
        obs = web_env.reset(web_task(f"{site}/plain.html"))
        assert obs.a11y_tree is not None and 'heading "plain"' in obs.a11y_tree
    finally:
        web_env.config = plain
    assert web_env.reset(web_task(f"{site}/plain.html")).a11y_tree is None
