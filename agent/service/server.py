"""Environments as a service: `cua serve-env` hosts a suite's environments behind HTTP.

A trainer's GPU nodes drive GUI environments that live on CPU nodes (as ZeroGUI and
DART-GUI do): each client leases one environment, resets it to a task of the suite,
steps it with canonical actions, asks its evaluator for the score and gives it back.
The wire format is in `agent.service.protocol`; the client is `agent.service.client`.

How environments are hosted: at most `max_envs`, built on demand and kept for the next
lease (a browser or an X server is expensive to start). Each environment lives on its own
thread, created with it and used for every call on it, because Playwright's sync API and
pyautogui are bound to the thread that made them; the event loop never blocks on one.

Faults:
- an environment whose process died (a killed browser) raises EnvironmentCrashed; the
  client gets ``environment_crashed`` and the episode is over. The next reset goes on
  with that environment (our environments restart their process on reset); if the reset
  itself fails, the environment is closed and built again once (counted in ``restarts``).
- an environment call that outlives `call_timeout_s` (a hung driver) ends the lease with
  ``environment_hung``; that environment and its thread are abandoned (threads cannot be
  killed) and a fresh one is built for a later lease.
- a lease without a call for `idle_timeout_s` (a client that died) is reclaimed: its
  environment goes back to the pool; the old lease id answers ``unknown_lease`` saying so.

Security: a bearer token on every route but /health (compared in constant time); request
bodies above `max_request_bytes` are refused before they are read; a client names a task
of the suite (id, seed, step budget), never setup steps of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from actions.contracts import Environment, EnvironmentCrashed, Task
from actions.models import Action, ActionAdapter
from actions.observation import Observation, png_sha256
from agent.engine.episode import format_error
from agent.service.protocol import (
    SHA256_HEADER,
    EnvironmentStatus,
    ErrorCode,
    ErrorReply,
    EvaluateReply,
    Health,
    LeaseInfo,
    ObservationMeta,
    OutputNotice,
    ResetReply,
    ResetRequest,
)

logger = logging.getLogger(__name__)

_REMEMBERED_LEASES = 10_000  # ended lease ids kept to say *why* a lease is unknown


class ServiceConfig(BaseModel):
    """How `cua serve-env` runs (every field is a CLI option)."""

    suite: str
    max_envs: int = Field(4, ge=1)
    token: str = Field(..., min_length=16, repr=False)
    idle_timeout_s: float = Field(300.0, gt=0, description="Reclaim a lease after this long "
                                  "without a call.")
    call_timeout_s: float = Field(300.0, gt=0, description="An environment call running "
                                  "longer is hung: the lease ends, the environment is replaced.")
    max_request_bytes: int = Field(1 << 20, ge=1024)
    suite_options: dict[str, Any] = Field(default_factory=dict)


class ServiceError(Exception):
    """An error reply: HTTP status, stable code, message for a human."""

    def __init__(self, status: int, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass
class _Slot:
    """One hosted environment and the thread it lives on."""

    index: int
    executor: ThreadPoolExecutor
    env: Environment | None = None
    lease_id: str | None = None
    last_used: float = field(default_factory=time.monotonic)
    busy: bool = False
    has_reset: bool = False
    latest_png: bytes = b""
    latest_sha: str = ""
    episodes: int = 0
    crashes: int = 0
    restarts: int = 0
    last_error: str | None = None

    def status(self) -> EnvironmentStatus:
        return EnvironmentStatus(index=self.index, leased=self.lease_id is not None,
                                 episodes=self.episodes, crashes=self.crashes,
                                 restarts=self.restarts, last_error=self.last_error)


class EnvironmentPool:
    """At most `max_envs` environments, each on its own thread, handed out by lease."""

    def __init__(self, make_environment: Callable[[], Environment], config: ServiceConfig
                 ) -> None:
        self.make_environment = make_environment
        self.config = config
        self.slots: list[_Slot] = []
        self.leases: dict[str, _Slot] = {}
        self.ended: OrderedDict[str, str] = OrderedDict()  # lease id -> why it ended
        self.reclaimed = 0
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._lock = asyncio.Lock()
        self._next_index = 0

    # ------------------------------------------------------------------ leases

    async def lease(self) -> _Slot:
        async with self._lock:
            slot = next((s for s in self.slots if s.lease_id is None), None)
            if slot is None:
                if len(self.slots) >= self.config.max_envs:
                    raise ServiceError(503, ErrorCode.NO_CAPACITY,
                                       f"all {self.config.max_envs} environments are leased; "
                                       "retry later or start the service with more --max-envs")
                slot = _Slot(index=self._next_index, executor=ThreadPoolExecutor(
                    1, thread_name_prefix=f"env-{self._next_index}"))
                self._next_index += 1
                self.slots.append(slot)
            slot.lease_id = uuid.uuid4().hex
            slot.last_used = time.monotonic()
            slot.has_reset = False
            self.leases[slot.lease_id] = slot
        if slot.env is None:
            try:
                await self._run(slot, self._build, slot, what="starting the environment")
            except BaseException:
                self._end(slot, "its environment failed to start")
                self._drop(slot)
                raise
        return slot

    def get(self, lease_id: str) -> _Slot:
        slot = self.leases.get(lease_id)
        if slot is None:
            why = self.ended.get(lease_id)
            raise ServiceError(404, ErrorCode.UNKNOWN_LEASE,
                               f"lease {lease_id} {why}" if why else
                               f"no lease {lease_id} on this service (up since "
                               f"{self.started_at}: a lease from before a restart is gone; "
                               "lease one: POST /leases)")
        return slot

    def release(self, lease_id: str) -> None:
        self._end(self.get(lease_id), "was closed by its client")

    def _end(self, slot: _Slot, why: str) -> None:
        if slot.lease_id is None:
            return
        self.leases.pop(slot.lease_id, None)
        self.ended[slot.lease_id] = why
        while len(self.ended) > _REMEMBERED_LEASES:
            self.ended.popitem(last=False)
        slot.lease_id = None

    def reclaim_idle(self) -> int:
        """End leases idle for longer than idle_timeout_s; returns how many."""
        now = time.monotonic()
        stale = [s for s in self.leases.values()
                 if not s.busy and now - s.last_used > self.config.idle_timeout_s]
        for slot in stale:
            logger.warning("reclaiming lease %s (idle %.1f s)", slot.lease_id,
                           now - slot.last_used)
            self._end(slot, f"was reclaimed after {self.config.idle_timeout_s:g} s without a "
                      "call (lease again)")
        self.reclaimed += len(stale)
        return len(stale)

    # ------------------------------------------------------------------ calls

    def _build(self, slot: _Slot) -> None:
        slot.env = self.make_environment()

    async def _run(self, slot: _Slot, fn: Callable[..., Any], *args: Any, what: str) -> Any:
        """Run fn(*args) on the slot's thread, bounded by call_timeout_s."""
        future = slot.executor.submit(fn, *args)
        try:
            async with asyncio.timeout(self.config.call_timeout_s):  # not wait_for (3.11
                return await asyncio.wrap_future(future)  # loses a concurrent cancel)
        except TimeoutError:
            slot.last_error = f"{what} took longer than {self.config.call_timeout_s:g} s"
            logger.error("environment %d hung (%s); replacing it", slot.index, slot.last_error)
            self._end(slot, f"ended: its environment hung ({slot.last_error})")
            self._drop(slot)
            raise ServiceError(504, ErrorCode.ENVIRONMENT_HUNG,
                               f"the environment hung ({slot.last_error}); it was replaced and "
                               "this lease ended — lease again") from None

    def _drop(self, slot: _Slot) -> None:
        """Forget a slot; its thread closes the environment if it ever comes back."""
        if slot in self.slots:
            self.slots.remove(slot)
        if slot.env is not None:
            env = slot.env
            slot.executor.submit(_close_quietly, env)
        slot.executor.shutdown(wait=False)

    async def call(self, lease_id: str, fn: Callable[[_Slot], Any], what: str) -> Any:
        """One call on a leased environment: exclusive per lease, faults mapped to replies."""
        slot = self.get(lease_id)
        if slot.busy:
            raise ServiceError(409, ErrorCode.BUSY, f"lease {lease_id} is still running a "
                               "call; one call at a time per lease")
        slot.busy = True
        try:
            return await self._run(slot, fn, slot, what=what)
        except EnvironmentCrashed as exc:
            slot.crashes += 1
            slot.has_reset = False
            slot.last_error = format_error(exc)
            raise ServiceError(502, ErrorCode.ENVIRONMENT_CRASHED, slot.last_error) from exc
        finally:
            slot.busy = False
            slot.last_used = time.monotonic()

    async def close(self) -> None:
        for slot in list(self.slots):
            if slot.env is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(30):
                        await asyncio.wrap_future(slot.executor.submit(_close_quietly, slot.env))
            slot.executor.shutdown(wait=False)
        self.slots.clear()
        self.leases.clear()


def _close_quietly(env: Environment) -> None:
    try:
        env.close()
    except Exception:  # noqa: BLE001 - closing a broken environment may fail; log, go on
        logger.exception("closing an environment failed")


# --------------------------------------------------------------------------- the calls


def _observed(slot: _Slot, observation: Observation) -> ObservationMeta:
    slot.latest_png = observation.screenshot_png
    slot.latest_sha = png_sha256(observation.screenshot_png)
    return ObservationMeta.of(observation, slot.latest_sha)


def _reset(slot: _Slot, task: Task, make_environment: Callable[[], Environment]
           ) -> ResetReply:
    assert slot.env is not None
    try:
        observation = slot.env.reset(task)
    except EnvironmentCrashed as exc:
        # The environment could not come back by itself: build it again, once.
        logger.warning("environment %d: reset failed (%s); restarting it", slot.index, exc)
        _close_quietly(slot.env)
        slot.env = None
        slot.env = make_environment()
        slot.restarts += 1
        observation = slot.env.reset(task)
    slot.has_reset = True
    slot.episodes += 1
    return ResetReply(task=task, observation=_observed(slot, observation))


def _require_reset(slot: _Slot) -> Environment:
    if not slot.has_reset or slot.env is None:
        raise ServiceError(409, ErrorCode.NOT_RESET, "reset the lease to a task first (its "
                           "episode has not started, or ended with a crash)")
    return slot.env


def _step(slot: _Slot, action: Action) -> ObservationMeta:
    return _observed(slot, _require_reset(slot).step(action))


def _notify_terminal(slot: _Slot, action: Action) -> None:
    """The episode ended on `action` (terminate/answer): environments that tear down on it
    (Android) hear it; the others execute it like any action, as the in-process loop does."""
    env = _require_reset(slot)
    notify = getattr(env, "notify_terminal", None)
    if callable(notify):
        notify(action)
    else:
        _observed(slot, env.step(action))


def _notify_output(slot: _Slot, notice: OutputNotice) -> None:
    notify = getattr(_require_reset(slot), "notify_output", None)
    if callable(notify):  # an environment without the hook has nothing to hear
        notify(notice.step_index, notice.raw_text)


def _evaluate(slot: _Slot) -> EvaluateReply:
    return EvaluateReply(score=float(_require_reset(slot).evaluate()))


# --------------------------------------------------------------------------- the app


def _error_response(status: int, code: ErrorCode, detail: str,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    detail = " ".join(detail.split())  # one line, whatever the exception said
    return JSONResponse(ErrorReply(error=code, detail=detail).model_dump(mode="json"),
                        status_code=status, headers=headers)


class _BodyLimit:
    """Refuse request bodies above `max_bytes` before reading them (ASGI middleware).

    A body must declare its length: chunked uploads are refused (411), so the declared
    Content-Length bounds what the server reads (the HTTP parser enforces it).
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            declared = headers.get(b"content-length")
            response = None
            if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                response = _error_response(411, ErrorCode.TOO_LARGE,
                                           "send a Content-Length; chunked bodies are refused")
            elif declared is not None and (not declared.isdigit()
                                           or int(declared) > self.max_bytes):
                response = _error_response(413, ErrorCode.TOO_LARGE,
                                           f"request body of {declared.decode(errors='replace')}"
                                           f" bytes is above this service's limit of "
                                           f"{self.max_bytes} bytes")
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _parse(model: Any, body: bytes, what: str) -> Any:
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate_json(body)
        return model.validate_json(body)
    except ValidationError as exc:
        raise ServiceError(422, ErrorCode.BAD_REQUEST,
                           f"invalid {what}: {_problems(exc.errors())}") from None


def _problems(errors: Any) -> str:
    """Pydantic's validation errors in one line: 'field.path: message; ...'."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                     for e in errors)


def create_app(config: ServiceConfig, suite: Any = None) -> FastAPI:
    """The FastAPI app serving `suite` (built from config.suite when not given)."""
    if suite is None:
        from benchmarks.base import get_suite

        suite = get_suite(config.suite, **config.suite_options)

    def make_environment() -> Environment:
        return suite.make_environment()

    pool = EnvironmentPool(make_environment, config)

    async def reaper() -> None:
        period_s = max(0.05, min(config.idle_timeout_s / 4, 5.0))
        while True:
            await asyncio.sleep(period_s)  # a periodic sweep, not a synchronisation
            pool.reclaim_idle()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()
            await pool.close()

    app = FastAPI(title="qwen-cua environment service", lifespan=lifespan)
    app.state.pool = pool
    app.add_middleware(_BodyLimit, max_bytes=config.max_request_bytes)
    expected = f"Bearer {config.token}".encode()

    def authorized(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not secrets.compare_digest(given, expected):
            raise ServiceError(401, ErrorCode.UNAUTHORIZED,
                               "missing or wrong token: send 'Authorization: Bearer <token>' "
                               "with the service's token")

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.code is ErrorCode.NO_CAPACITY else None
        return _error_response(exc.status, exc.code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, ErrorCode.BAD_REQUEST,
                               f"invalid request: {_problems(exc.errors())}")

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("request failed")
        return _error_response(500, ErrorCode.INTERNAL, format_error(exc))

    auth = [Depends(authorized)]

    @app.get("/health")
    async def health() -> Health:
        return Health(suite=config.suite, platform=suite.platform, max_envs=config.max_envs,
                      leases=len(pool.leases), environments=[s.status() for s in pool.slots],
                      reclaimed_leases=pool.reclaimed)

    @app.post("/leases", status_code=201, dependencies=auth)
    async def lease(request: Request) -> LeaseInfo:
        body = (await request.body()).strip()
        if body and body != b"{}":  # a lease takes no options: refuse rather than ignore
            raise ServiceError(422, ErrorCode.BAD_REQUEST, "invalid lease request: POST "
                               "/leases takes no body (or {}); got "
                               f"{body[:40].decode(errors='replace')!r}")
        slot = await pool.lease()
        assert slot.lease_id is not None
        return LeaseInfo(lease_id=slot.lease_id, suite=config.suite, platform=suite.platform,
                         idle_timeout_s=config.idle_timeout_s,
                         has_notify_output=callable(getattr(slot.env, "notify_output", None)))

    @app.post("/leases/{lease_id}/reset", dependencies=auth)
    async def reset(lease_id: str, request: Request) -> ResetReply:
        pool.get(lease_id)  # an unknown lease is 404, whatever the body says
        wanted = _parse(ResetRequest, await request.body(), "reset request")
        try:
            task = suite.make_task(wanted.task_id, wanted.seed,
                                   **wanted.overrides.model_dump(exclude_none=True))
        except KeyError as exc:
            raise ServiceError(404, ErrorCode.UNKNOWN_TASK, str(exc.args[0])) from None
        return await pool.call(lease_id, lambda slot: _reset(slot, task, make_environment),
                               "reset")

    @app.post("/leases/{lease_id}/step", dependencies=auth)
    async def step(lease_id: str, request: Request) -> ObservationMeta:
        pool.get(lease_id)
        action = _parse(ActionAdapter, await request.body(), "action")
        return await pool.call(lease_id, lambda slot: _step(slot, action), "step")

    @app.post("/leases/{lease_id}/notify_terminal", status_code=204, dependencies=auth)
    async def notify_terminal(lease_id: str, request: Request) -> Response:
        pool.get(lease_id)
        action = _parse(ActionAdapter, await request.body(), "action")
        await pool.call(lease_id, lambda slot: _notify_terminal(slot, action), "notify_terminal")
        return Response(status_code=204)

    @app.post("/leases/{lease_id}/notify_output", status_code=204, dependencies=auth)
    async def notify_output(lease_id: str, request: Request) -> Response:
        pool.get(lease_id)
        notice = _parse(OutputNotice, await request.body(), "output notice")
        await pool.call(lease_id, lambda slot: _notify_output(slot, notice), "notify_output")
        return Response(status_code=204)

    @app.post("/leases/{lease_id}/evaluate", dependencies=auth)
    async def evaluate(lease_id: str) -> EvaluateReply:
        return await pool.call(lease_id, _evaluate, "evaluate")

    @app.get("/leases/{lease_id}/screenshot", dependencies=auth)
    async def screenshot(lease_id: str) -> Response:
        slot = pool.get(lease_id)
        if not slot.latest_png or not slot.has_reset:
            raise ServiceError(409, ErrorCode.NOT_RESET, "no screenshot yet: reset the lease")
        slot.last_used = time.monotonic()
        return Response(slot.latest_png, media_type="image/png",
                        headers={SHA256_HEADER: slot.latest_sha})

    @app.delete("/leases/{lease_id}", status_code=204, dependencies=auth)
    async def release(lease_id: str) -> Response:
        pool.release(lease_id)
        return Response(status_code=204)

    return app


def serve(config: ServiceConfig, host: str, port: int) -> None:
    """Run the service until interrupted (uvicorn; one process, one event loop)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
