"""How a web environment's browser is launched and how its steps wait (`WebConfig`), plus
the small pure helpers around it: finding Chromium and the domain allowlist rule."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from actions.observation import Size

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-smooth-scrolling",  # a wheel notch scrolls at once: fewer frames to settle
    # Chromium keeps the last --disable-features it is given: Playwright's own list
    # (playwright-core src/server/chromium/chromiumSwitches.ts, 1.65; tests/test_web_shared.py
    # checks ours still holds all of it) plus the omnibox popups, two WebUI renderers per
    # context (~42 MiB PSS each) that headless Chromium 15x opens for every browser window.
    "--disable-features=" + ",".join((
        "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose",
        "HttpsUpgrades", "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter",
        "PaintHolding", "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect",
        "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying",
        "AimEnabled", "PreconnectToSearch", "msForceBrowserSignIn",
        "msEdgeUpdateLaunchServicesPreferredVersion",
        "WebUIOmniboxPopup", "WebUIOmniboxAimPopup",
    )),
)
# Hides the text caret in every document (a blinking caret is ambient motion in screenshots).
HIDE_CARET_JS = """document.addEventListener('DOMContentLoaded', () => {
  const style = document.createElement('style');
  style.textContent = '* { caret-color: transparent !important; }';
  document.documentElement.appendChild(style);
}, {once: true});"""
INSTANCE_FLAG = "--qwen-cua-instance"  # ignored by Chromium; lets us find our browser's pid

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
    max_episodes_per_context: int = Field(
        10, ge=1,
        description="With fresh_context_per_episode False: a context serves at most this "
        "many episodes, then a fresh one opens. A tab navigated again and again grows "
        "(~0.8 MiB of renderer and driver memory per episode on MiniWoB, measured in "
        "docs/measured.md): this bounds it.",
    )
    contexts_per_browser: int = Field(
        4, ge=1, le=256,
        description="Environments of one process share a Chromium, each in an isolated "
        "context (cookies, storage, cache, viewport, scripts of its own); a second browser "
        "starts once one carries this many. 1 gives every environment its own browser. "
        "A crashed browser ends only the episodes of its contexts. Chosen from "
        "docs/measured.md#environments-at-rl-density.",
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


