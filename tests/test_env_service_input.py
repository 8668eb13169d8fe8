"""Bad input to the environment service (`cua serve-env`): every route answers malformed
JSON, a wrong type, an unknown or released lease, an oversize body and a missing or wrong
token with the right status and a one-line reason, and changes nothing.

The service is the real FastAPI app under uvicorn, spoken to over real HTTP; the hosted
environment is the scripted stand-in (tests/conftest_loop.ScriptedEnv): bad input never
reaches an environment, and what the test checks is that nothing did.
"""

from __future__ import annotations

import time

import httpx
import pytest

from actions.models import Click
from agent.service.client import RemoteEnvironment, RemoteEnvironmentCrashed
from agent.service.protocol import ErrorCode, ResetRequest
from benchmarks.miniwob import MiniWoBSuite
from tests.conftest_env_service import TOKEN, running_service
from tests.conftest_loop import ScriptedEnv

AUTH = {"Authorization": f"Bearer {TOKEN}"}
LEASE_ROUTES = [("POST", "reset"), ("POST", "step"), ("POST", "notify_terminal"),
                ("POST", "notify_output"), ("POST", "evaluate"), ("GET", "screenshot"), ("DELETE", "")]
GOOD_BODY = {"reset": {"task_id": "click-test", "seed": 1}, "step": {"type": "wait", "seconds": 0},
             "notify_terminal": {"type": "terminate", "status": "success"},
             "notify_output": {"step_index": 0, "raw_text": "x"}}
WRONG_TYPE = {"reset": {"task_id": "click-test", "seed": "three"},
              "step": {"type": "click", "x": "left", "y": 3},
              "notify_terminal": {"type": 5},
              "notify_output": {"step_index": -1, "raw_text": "x"}}


class _ScriptedSuite(MiniWoBSuite):
    """MiniWoB's task list on scripted environments (they count what reaches them)."""

    def __init__(self) -> None:
        super().__init__()
        self.envs: list[ScriptedEnv] = []

    def make_environment(self, **options):  # noqa: ANN003, ANN201
        self.envs.append(ScriptedEnv())
        return self.envs[-1]


def _refused(response: httpx.Response, status: int, code: ErrorCode, needle: str = "") -> None:
    assert response.status_code == status, (response.request.url, response.text)
    reply = response.json()
    assert reply["error"] == code
    detail = reply["detail"]
    assert detail and "\n" not in detail and needle.lower() in detail.lower(), detail


def _path(lease_id: str, route: str) -> str:
    return f"/leases/{lease_id}/{route}" if route else f"/leases/{lease_id}"


@pytest.fixture(scope="module")
def service():  # noqa: ANN201
    suite = _ScriptedSuite()
    with running_service(suite=suite, max_envs=2, max_request_bytes=2048) as (url, app), \
            httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        lease = http.post("/leases").json()["lease_id"]
        assert http.post(f"/leases/{lease}/reset", json=GOOD_BODY["reset"]).status_code == 200
        yield http, app, suite, lease


def _state(http: httpx.Client, suite: _ScriptedSuite) -> tuple:
    health = http.get("/health").json()
    return (health["leases"], [(e["leased"], e["episodes"], e["crashes"])
                               for e in health["environments"]],
            [(len(env.resets), len(env.executed)) for env in suite.envs])


def test_missing_or_wrong_token_is_401_everywhere_and_changes_nothing(service):  # noqa: ANN001
    http, _, suite, lease = service
    before = _state(http, suite)
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-the-token-at-all"},
                    {"Authorization": TOKEN}):
        _refused(http.post("/leases", headers=headers), 401, ErrorCode.UNAUTHORIZED, "Bearer")
        for method, route in LEASE_ROUTES:
            response = http.request(method, _path(lease, route), headers=headers,
                                    json=GOOD_BODY.get(route))
            _refused(response, 401, ErrorCode.UNAUTHORIZED, "token")
    assert _state(http, suite) == before


def test_malformed_json_and_wrong_types_are_422_and_change_nothing(service):  # noqa: ANN001
    http, _, suite, lease = service
    before = _state(http, suite)
    for body in (b"{not json", b"[1, 2]", b'{"anything": 1}'):
        _refused(http.post("/leases", content=body), 422, ErrorCode.BAD_REQUEST, "no body")
    for route in ("reset", "step", "notify_terminal", "notify_output"):
        _refused(http.post(_path(lease, route), content=b"{not json"), 422,
                 ErrorCode.BAD_REQUEST, "invalid")
        _refused(http.post(_path(lease, route), json=WRONG_TYPE[route]), 422,
                 ErrorCode.BAD_REQUEST, "invalid")
    assert _state(http, suite) == before
    assert http.post(_path(lease, "step"), json=GOOD_BODY["step"]).status_code == 200


def test_unknown_and_released_leases_are_404_on_every_route(service):  # noqa: ANN001
    http, _, suite, _lease = service
    doomed = http.post("/leases").json()["lease_id"]
    assert http.delete(_path(doomed, "")).status_code == 204
    before = _state(http, suite)
    for lease_id, needle in (("no-such-lease", "no lease"), (doomed, "closed by its client")):
        for method, route in LEASE_ROUTES:
            for body in (GOOD_BODY.get(route), {"type": "teleport"}):  # 404 whatever the body
                response = http.request(method, _path(lease_id, route), json=body)
                _refused(response, 404, ErrorCode.UNKNOWN_LEASE, needle)
    assert _state(http, suite) == before


def test_an_oversize_body_is_413_on_every_route_before_it_is_read(service):  # noqa: ANN001
    http, _, suite, lease = service
    before = _state(http, suite)
    big = b"x" * 4096
    _refused(http.post("/leases", content=big), 413, ErrorCode.TOO_LARGE, "limit of 2048")
    for method, route in LEASE_ROUTES:
        _refused(http.request(method, _path(lease, route), content=big), 413,
                 ErrorCode.TOO_LARGE, "limit")
    assert _state(http, suite) == before
    assert http.post(_path(lease, "evaluate")).json()["score"] == 1.0  # the lease still works


def test_a_restarted_service_fails_its_clients_clearly_and_they_lease_again():
    suite = _ScriptedSuite()
    with running_service(suite=suite, max_envs=1) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        remote = RemoteEnvironment(url, TOKEN, timeout_s=30)
        remote.reset(ResetRequest(task_id="click-test"))
    try:
        started = time.monotonic()  # the service is down: a clear error at once, no hang
        with pytest.raises(RemoteEnvironmentCrashed, match="down or restarting") as down:
            remote.step(Click(x=1, y=1))
        assert down.value.lease_lost and time.monotonic() - started < 10
        with running_service(suite=suite, max_envs=1, port=port):  # back, leases forgotten
            with pytest.raises(RemoteEnvironmentCrashed, match="before a restart") as gone:
                remote.step(Click(x=1, y=1))
            assert gone.value.lease_lost
            assert remote.reset(ResetRequest(task_id="click-test", seed=2)).instruction
    finally:
        remote.close()
