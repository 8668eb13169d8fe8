"""Run the environment service (`agent.service.server`) on loopback inside a test.

Import from test files: `from tests.conftest_env_service import running_service, TOKEN`.
uvicorn serves the real FastAPI app on a socket bound to port 0 (the OS picks a free
port) in a background thread; the test talks to it over real HTTP.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from agent.service.server import ServiceConfig, create_app
from tests.conftest_loop import wait_for

TOKEN = "test-token-0123456789abcdef"


@contextmanager
def running_service(suite_name: str = "miniwob", suite: Any = None, port: int = 0,
                    **config: Any) -> Iterator[tuple[str, Any]]:
    """Yield (base_url, app) of a service serving `suite` (or the named suite), on `port`
    (0: a free one)."""
    app = create_app(ServiceConfig(suite=suite_name, token=TOKEN, **config), suite=suite)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the environment service to start")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
