"""The web environment (Chromium through Playwright): see environments/web/environment.py."""

from environments.web.config import (
    CHROMIUM_FLAGS,
    PLAYWRIGHT_KEYS,
    BrowserNotFoundError,
    PageLoadError,
    WebConfig,
    find_chromium,
    host_allowed,
)
from environments.web.environment import WebEnvironment
from environments.web.hub import BrowserHub, shared_playwright

__all__ = [
    "CHROMIUM_FLAGS", "PLAYWRIGHT_KEYS", "BrowserHub", "BrowserNotFoundError", "PageLoadError",
    "WebConfig", "WebEnvironment", "find_chromium", "host_allowed", "shared_playwright",
]
