"""Your own browser: `cua run --cdp-url` attaches to a Chromium the test starts with a
debugging port (as a user starts theirs), and `--user-data-dir` keeps a profile between
runs. Plumbing tests against real Chromium and the scripted chat server.

What must hold: the agent works in a tab of the user's profile; afterwards the browser
is still running and the user's own tab is still open (we never close what we did not
open); a profile browser we launched is stopped, and its storage survives to the next run.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from environments.web import CHROMIUM_FLAGS, find_chromium
from tests.conftest_faults import FakeChatServer
from tests.conftest_loop import wait_for
from tests.conftest_run import *  # noqa: F401,F403
from tests.conftest_run import computer, run_cua, served

pytestmark = pytest.mark.slow

BUTTON_PAGE = (b"<!doctype html><title>start</title><button style='position:absolute;left:0;"
               b"top:0;width:200px;height:100px' onclick=\"document.title='pressed';"
               b"localStorage.setItem('kept', 'yes')\">Press</button>")


@pytest.fixture()
def site() -> Iterator[str]:
    """A page on loopback HTTP (an origin with storage, unlike data: URLs)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(BUTTON_PAGE)))
            self.end_headers()
            self.wfile.write(BUTTON_PAGE)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def users_browser(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A Chromium started the way a user starts theirs for --cdp-url, with one tab open."""
    profile = tmp_path / "user-profile"
    process = subprocess.Popen(
        [find_chromium("/usr/bin/chromium"), *CHROMIUM_FLAGS, "--headless",
         "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "data:text/html,<title>my own tab</title>"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    try:
        wait_for(lambda: port_file.exists() and port_file.read_text().split("\n")[0].isdigit(),
                 60, "Chromium's DevTools port")
        yield process, f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tabs(endpoint: str) -> list[str]:
    with urllib.request.urlopen(f"{endpoint}/json/list", timeout=10) as answer:
        return [t["title"] for t in json.load(answer) if t["type"] == "page"]


PRESS = ["Press it.\n" + computer("left_click", coordinate=[78, 69]),
         "Done.\n" + computer("terminate", status="success")]


def test_cdp_url_attaches_and_leaves_the_browser_running(
        chat: FakeChatServer, users_browser: tuple[subprocess.Popen[bytes], str], site: str,
        tmp_path: Path) -> None:
    process, endpoint = users_browser
    wait_for(lambda: tabs(endpoint) == ["my own tab"], 30, "the user's tab to load")
    chat.script(PRESS)
    done = run_cua(["run", "--url", site, "--cdp-url", endpoint, "--task", "Press the button",
                    *served(chat), "--out", str(tmp_path / "run"),
                    "--success-js", "() => document.title === 'pressed'"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "success (verified by the check)" in done.stdout
    assert "click (100, 50)" in done.stdout
    assert process.poll() is None, "the user's browser must keep running"
    assert tabs(endpoint) == ["my own tab"], "only the agent's tab is closed"


def test_user_data_dir_keeps_the_profile_between_runs(chat: FakeChatServer, site: str,
                                                      tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    chat.script(PRESS)
    first = run_cua(["run", "--url", site, "--user-data-dir", str(profile), "--task", "Press",
                     *served(chat), "--out", str(tmp_path / "first")])
    assert first.returncode == 0, first.stdout + first.stderr
    # the Chromium we launched on the profile is stopped at the end
    assert not (profile / "SingletonLock").exists() or _lock_owner_gone(profile)
    chat.script(["Nothing to do.\n" + computer("terminate", status="success")])
    second = run_cua(["run", "--url", site, "--user-data-dir", str(profile), "--task", "Look",
                      *served(chat), "--out", str(tmp_path / "second"),
                      "--success-js", "() => localStorage.getItem('kept') === 'yes'"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert "success (verified by the check)" in second.stdout  # storage survived


def _lock_owner_gone(profile: Path) -> bool:
    """Chromium's SingletonLock links to 'host-PID'; the process must be gone."""
    target = (profile / "SingletonLock").readlink().name
    pid = int(target.rsplit("-", 1)[1])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the process is exiting; poll with a deadline
    return not Path(f"/proc/{pid}").exists()
