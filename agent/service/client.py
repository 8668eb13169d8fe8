"""The client of the environment service (`cua serve-env`, `agent.service.server`).

`EnvServiceClient` is the asynchronous client (httpx): lease an environment and get an
`AsyncRemoteEnvironment`, whose reset/step/evaluate/close are coroutines — what an async
episode engine or verl's agent loop awaits. `RemoteEnvironment` adapts it to the plain
synchronous `Environment` protocol (actions.contracts) for code that calls environments
from threads (TRL's environment_factory). The episode engine's host over the service is
`agent.service.remote_host.RemoteHost` (`cua eval --backend remote`).

Errors map to what an in-process environment raises: a crashed or hung environment, and a
lease the service reclaimed, are `EnvironmentCrashed` (the episode is over, the run goes
on; the next reset leases again if needed); everything else is `EnvServiceError` with the
service's stable error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from actions.contracts import EnvironmentCrashed, Task
from actions.models import Action, ActionAdapter
from actions.observation import Observation
from agent.service.protocol import (
    SHA256_HEADER,
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

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 330.0  # above the service's default call_timeout_s: it answers first
DEFAULT_LEASE_WAIT_S = 600.0


class EnvServiceError(RuntimeError):
    """The service refused a request; `code` says why (agent.service.protocol.ErrorCode)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code} (HTTP {status}): {detail}")
        self.status, self.code, self.detail = status, code, detail


class RemoteEnvironmentCrashed(EnvironmentCrashed):
    """The service's environment crashed or hung, or our lease on it is gone; `code` is
    the service's error code (environment_crashed, environment_hung, unknown_lease)."""

    code: str = ErrorCode.ENVIRONMENT_CRASHED.value

    @property
    def lease_lost(self) -> bool:
        return self.code in (ErrorCode.UNKNOWN_LEASE, ErrorCode.ENVIRONMENT_HUNG)


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    try:
        reply = ErrorReply.model_validate_json(response.content)
        code, detail = reply.error.value, reply.detail
    except ValueError:
        code, detail = ErrorCode.INTERNAL.value, response.text[:500]
    if code in (ErrorCode.ENVIRONMENT_CRASHED, ErrorCode.ENVIRONMENT_HUNG,
                ErrorCode.UNKNOWN_LEASE):
        crashed = RemoteEnvironmentCrashed(f"{code}: {detail}")
        crashed.code = code
        raise crashed
    raise EnvServiceError(response.status_code, code, detail)


class EnvServiceClient:
    """Asynchronous client of one environment service.

    base_url: e.g. http://cpu-node-3:8100. token: the service's token.
    lease_wait_s: how long `lease()` keeps retrying while every environment is leased.
    """

    def __init__(self, base_url: str, token: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 lease_wait_s: float = DEFAULT_LEASE_WAIT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.lease_wait_s = lease_wait_s
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s,
                                       headers={"Authorization": f"Bearer {token}"})

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; a service that is down or restarted mid-call (refused or
        dropped connection, no answer in time) is a lost lease with a clear message,
        never a hang past `timeout_s`."""
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            lost = RemoteEnvironmentCrashed(
                f"{ErrorCode.UNKNOWN_LEASE.value}: the environment service at {self.base_url} "
                f"did not answer {method} {path} ({type(exc).__name__}: {exc or 'no detail'}): "
                "it is down or restarting, and a restarted service has none of its leases; "
                "lease again once it is back")
            lost.code = ErrorCode.UNKNOWN_LEASE.value
            raise lost from exc

    async def health(self) -> Health:
        return Health.model_validate_json(_check(await self._send("GET", "/health")).content)

    async def lease(self) -> AsyncRemoteEnvironment:
        """Lease one environment, waiting (up to lease_wait_s) while all are leased."""
        deadline = time.monotonic() + self.lease_wait_s
        delay_s = 0.1
        while True:
            response = await self._send("POST", "/leases")
            if response.status_code != 503 or time.monotonic() + delay_s > deadline:
                info = LeaseInfo.model_validate_json(_check(response).content)
                return AsyncRemoteEnvironment(self, info)
            await asyncio.sleep(delay_s)  # back off while the service is full
            delay_s = min(delay_s * 2, 2.0)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return _check(await self._send(method, path, **kwargs))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EnvServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncRemoteEnvironment:
    """One leased environment of the service; the Environment protocol, awaited."""

    def __init__(self, client: EnvServiceClient, info: LeaseInfo) -> None:
        self.client = client
        self.info = info
        self.platform = info.platform
        self.task: Task | None = None
        self._png = b""
        self._sha = ""
        self._closed = False

    @property
    def _path(self) -> str:
        return f"/leases/{self.info.lease_id}"

    async def _observation(self, meta: ObservationMeta) -> Observation:
        if meta.screenshot_sha256 != self._sha:
            response = await self.client.request("GET", f"{self._path}/screenshot")
            self._png = response.content
            self._sha = response.headers.get(SHA256_HEADER, meta.screenshot_sha256)
        return meta.observation(self._png)

    async def reset(self, task: Task | ResetRequest) -> Observation:
        """Start an episode of one of the service's tasks: a Task of the service's suite
        (its id, seed, step budget and time limit are sent) or a ResetRequest."""
        request = task if isinstance(task, ResetRequest) else ResetRequest.for_task(task)
        response = await self.client.request("POST", f"{self._path}/reset",
                                             content=request.model_dump_json())
        reply = ResetReply.model_validate_json(response.content)
        self.task = reply.task
        return await self._observation(reply.observation)

    async def step(self, action: Action) -> Observation:
        response = await self.client.request("POST", f"{self._path}/step",
                                             content=ActionAdapter.dump_json(action))
        return await self._observation(ObservationMeta.model_validate_json(response.content))

    async def notify_terminal(self, action: Action) -> None:
        await self.client.request("POST", f"{self._path}/notify_terminal",
                                  content=ActionAdapter.dump_json(action))

    async def notify_output(self, step_index: int, raw_text: str) -> None:
        notice = OutputNotice(step_index=step_index, raw_text=raw_text)
        await self.client.request("POST", f"{self._path}/notify_output",
                                  content=notice.model_dump_json())

    async def evaluate(self) -> float:
        response = await self.client.request("POST", f"{self._path}/evaluate")
        return EvaluateReply.model_validate_json(response.content).score

    async def close(self) -> None:
        """Give the environment back to the service (it stays up for the next lease)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RemoteEnvironmentCrashed):  # already reclaimed: fine
            await self.client.request("DELETE", self._path)


class RemoteEnvironment:
    """The synchronous `Environment` protocol over the service.

    It runs an `EnvServiceClient` on a private event loop thread, leases on the first
    reset and leases again when the service reclaimed or replaced the lease (the episode
    in flight then ended with EnvironmentCrashed, as a local environment's would).
    """

    def __init__(self, base_url: str, token: str, **client_options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="env-client")
        self._thread.start()
        self._client = self._run(self._make_client(base_url, token, client_options))
        self._remote: AsyncRemoteEnvironment | None = None

    @staticmethod
    async def _make_client(base_url: str, token: str, options: dict[str, Any]
                           ) -> EnvServiceClient:
        return EnvServiceClient(base_url, token, **options)  # bound to the private loop

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def platform(self) -> str | None:
        return self._remote.platform if self._remote else None

    @property
    def task(self) -> Task | None:
        return self._remote.task if self._remote else None

    def _env(self) -> AsyncRemoteEnvironment:
        if self._remote is None:
            raise RemoteEnvironmentCrashed("no lease: call reset() first")
        return self._remote

    def reset(self, task: Task | ResetRequest) -> Observation:
        if self._remote is None:
            self._remote = self._run(self._client.lease())
        try:
            return self._run(self._remote.reset(task))
        except RemoteEnvironmentCrashed as exc:
            if not exc.lease_lost:
                raise
            self._remote = self._run(self._client.lease())  # reclaimed or replaced
            return self._run(self._remote.reset(task))

    def step(self, action: Action) -> Observation:
        return self._run(self._env().step(action))

    def notify_terminal(self, action: Action) -> None:
        self._run(self._env().notify_terminal(action))

    def evaluate(self) -> float:
        return self._run(self._env().evaluate())

    def health(self) -> Health:
        return self._run(self._client.health())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._remote is not None:
                self._run(self._remote.close())
            self._run(self._client.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

