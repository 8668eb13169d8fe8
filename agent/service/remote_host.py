"""The remote environment host: an `EnvironmentHost` (agent.engine.hosts) over one lease of the
environment service (`cua serve-env`, agent.service.server; client in agent.service.client).

`cua eval SUITE --workers N --backend remote --backend-option url=http://cpu-node:8100`
runs N episodes at a time on environments the service hosts (the token comes from
``--backend-option token=...`` or, better, the ``CUA_ENV_TOKEN`` environment variable).
A lease the service ended (an idle lease reclaimed, a hung environment replaced) makes
the host not `alive`: the episode in flight ends as an error (RemoteEnvironmentCrashed,
an EnvironmentCrashed) and the pool leases a fresh environment before the next episode.
Scripted experts live beside environments, so they cannot run remotely: pick a model
policy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable
from typing import Any, TypeVar

from actions.contracts import EpisodeState, PolicyOutput, Task
from actions.models import Action
from actions.observation import Observation
from agent.engine.hosts import HostDied
from agent.service.client import AsyncRemoteEnvironment, EnvServiceClient, RemoteEnvironmentCrashed

T = TypeVar("T")

TOKEN_VARIABLE = "CUA_ENV_TOKEN"


def client_from_options(options: dict[str, Any]) -> EnvServiceClient:
    """An EnvServiceClient from backend options: url (required), token (else
    $CUA_ENV_TOKEN), timeout_s, lease_wait_s. Consumes the keys it reads."""
    url = options.pop("url", None)
    token = options.pop("token", None) or os.environ.get(TOKEN_VARIABLE)
    if not url:
        raise ValueError("--backend remote needs --backend-option url=http://HOST:PORT "
                         "(a `cua serve-env` service)")
    if not token:
        raise ValueError(f"--backend remote needs the service's token: set {TOKEN_VARIABLE} "
                         "(or --backend-option token=...)")
    extra = {k: float(options.pop(k)) for k in ("timeout_s", "lease_wait_s") if k in options}
    return EnvServiceClient(str(url), str(token), **extra)


class RemoteHost:
    """One leased environment of the service, seen as an EnvironmentHost."""

    has_notify_terminal = True  # the service keeps terminal actions either way
    has_expert = False

    def __init__(self, index: int, client: EnvServiceClient, env: AsyncRemoteEnvironment) -> None:
        self.index = index
        self.client = client
        self.env = env
        self._lost = False

    @classmethod
    async def start(cls, index: int, client: EnvServiceClient) -> RemoteHost:
        return cls(index, client, await client.lease())

    @property
    def name(self) -> str:
        return f"remote {self.index} ({self.client.base_url}, lease {self.env.info.lease_id})"

    @property
    def alive(self) -> bool:
        return not self._lost

    async def _watch(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except RemoteEnvironmentCrashed as exc:
            if exc.lease_lost:
                self._lost = True
            raise

    async def reset(self, task: Task) -> Observation:
        return await self._watch(self.env.reset(task))

    async def step(self, action: Action) -> Observation:
        return await self._watch(self.env.step(action))

    async def notify_terminal(self, action: Action) -> None:
        await self._watch(self.env.notify_terminal(action))

    @property
    def has_notify_output(self) -> bool:
        return self.env.info.has_notify_output

    async def notify_output(self, step_index: int, raw_text: str) -> None:
        await self._watch(self.env.notify_output(step_index, raw_text))

    async def evaluate(self) -> float:
        return float(await self._watch(self.env.evaluate()))

    async def expert_act(self, state: EpisodeState) -> PolicyOutput:
        raise RuntimeError("scripted experts cannot run on remote environments; "
                           "pick a model policy")

    async def restart(self) -> None:
        with contextlib.suppress(Exception):
            await self.env.close()
        try:
            self.env = await self.client.lease()
        except Exception as exc:  # noqa: BLE001 - the pool retries, then stops the run
            raise HostDied(f"remote {self.index}: cannot lease a new environment: {exc}") from exc
        self._lost = False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.env.close()


__all__ = ["TOKEN_VARIABLE", "RemoteHost", "client_from_options"]
