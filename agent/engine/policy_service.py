"""The policy as an asynchronous service for the episode engine (agent.engine.episode).

Every episode asks for its next output on its own (`await service.act(state, host)`);
how requests reach the model is the service's business:

- `BatchingPolicy` (in-process models, e.g. transformers): requests wait in a queue and
  go to ``policy.act`` together, on one thread of its own (the model is used by one
  batch at a time). A batch leaves when it has `max_batch` states, when every episode
  that could still ask is waiting (no one else can join), or `max_wait_s` after its first
  request (or after the previous batch came back, whichever is later). While a batch
  runs, new requests gather for the next one: continuous batching.
- `ConcurrentPolicy` (a served model, e.g. vLLM/SGLang behind `OpenAICompatPolicy`): each
  request is its own call, up to `max_concurrency` at once; the server batches. A policy
  with ``async act_async(state)`` (the `openai` SDK client) is awaited on the engine's
  loop; any other policy gets ``policy.act([state])`` on a thread.
- `ExpertPolicy` (scripted experts): the expert that lives beside each environment
  answers at once through its host (`EnvironmentHost.expert_act`).

`make_policy_service` picks one from a `PolicyCalls` choice or the policy's type. Both
model services also answer prompts built elsewhere (``await service.answer(prompt)``, a
grounding profile's), batched or concurrent the same way. `PolicyClient` drives a service
from synchronous code (the AndroidWorld adapter, the grounding runner).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from actions.contracts import EpisodeState, Policy, PolicyOutput
from agent.engine.hosts import EnvironmentHost

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_WAIT_S = 0.05
DEFAULT_MAX_CONCURRENCY = 64


class PolicyContractError(RuntimeError):
    """The policy broke its contract (e.g. returned a different number of outputs)."""


class PolicyCalls(enum.StrEnum):
    """How the engine reaches a model policy (see the module docstring); 'serial' is
    batching with batches of one."""

    BATCHED = "batched"
    CONCURRENT = "concurrent"
    SERIAL = "serial"


class PolicyService(Protocol):
    """What the engine asks for each step of each episode.

    `episodes_active(n)`: the engine says how many episodes could still ask (batching
    uses it to send a batch as soon as nobody else can join). `batch_sizes`: the size
    of every call made to the underlying policy.
    """

    name: str
    batch_sizes: list[int]

    async def act(self, state: EpisodeState, host: EnvironmentHost) -> PolicyOutput: ...

    def episodes_active(self, count: int) -> None: ...

    async def close(self) -> None: ...


def policy_name(policy: Any) -> str:
    return getattr(policy, "name", type(policy).__name__)


def _checked(policy: Policy, states: list[EpisodeState]) -> list[PolicyOutput]:
    outputs = policy.act(states)
    if len(outputs) != len(states):
        raise PolicyContractError(f"policy {policy_name(policy)!r} returned {len(outputs)} "
                                  f"outputs for {len(states)} episode states")
    return outputs


_BatchCall = Callable[[Any, list[Any]], list[PolicyOutput]]


def _checked_answers(policy: Any, prompts: list[Any]) -> list[PolicyOutput]:
    """``policy.answer(prompts)`` for prompts built elsewhere (a grounding profile)."""
    if not hasattr(policy, "answer"):
        raise PolicyContractError(f"policy {policy_name(policy)!r} cannot answer prebuilt "
                                  "prompts (it has no answer() method)")
    outputs = policy.answer(prompts)
    if len(outputs) != len(prompts):
        raise PolicyContractError(f"policy {policy_name(policy)!r} returned {len(outputs)} "
                                  f"outputs for {len(prompts)} prompts")
    return outputs


class BatchingPolicy:
    """Dynamic batching of one in-process policy (see the module docstring).

    `executor`: where ``policy.act`` runs (default: a thread of its own).
    `max_batch`: most states per call (None: no limit). `max_wait_s`: how long a
    request waits for others to join while some episode is still busy elsewhere.
    """

    def __init__(self, policy: Policy, *, max_batch: int | None = None,
                 max_wait_s: float = DEFAULT_MAX_WAIT_S,
                 executor: concurrent.futures.Executor | None = None) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        self.policy = policy
        self.name = policy_name(policy)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batch_sizes: list[int] = []
        self.busy_s = 0.0
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="cua-policy")
        # (request, future, call): an episode state for policy.act, or a prebuilt prompt
        # for policy.answer; a batch holds requests of one call only
        self._pending: list[tuple[Any, asyncio.Future[PolicyOutput], _BatchCall]] = []
        self._active = 0
        self._first_at = 0.0
        self._free_at = 0.0
        self._wake: asyncio.Event | None = None
        self._server: asyncio.Task[None] | None = None

    def episodes_active(self, count: int) -> None:
        self._active = count
        if self._wake is not None:
            self._wake.set()

    async def act(self, state: EpisodeState, host: EnvironmentHost) -> PolicyOutput:
        return await self._request(state, _checked)

    async def answer(self, prompt: Any) -> PolicyOutput:
        """The output for a prompt built elsewhere (policies.prompting.BuiltPrompt, e.g.
        from a grounding profile), batched with the other prompts waiting."""
        return await self._request(prompt, _checked_answers)

    async def _request(self, request: Any, call: _BatchCall) -> PolicyOutput:
        loop = asyncio.get_running_loop()
        if self._server is None or self._server.done():
            self._wake = asyncio.Event()
            self._server = loop.create_task(self._serve(), name="cua-policy-batcher")
        future: asyncio.Future[PolicyOutput] = loop.create_future()
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((request, future, call))
        assert self._wake is not None
        self._wake.set()
        return await future

    def _ready(self) -> float | None:
        """0 when a batch should leave now, else seconds to wait (None: no request)."""
        if not self._pending:
            return None
        if self.max_batch is not None and len(self._pending) >= self.max_batch:
            return 0.0
        if len(self._pending) >= self._active:
            return 0.0
        waited = time.monotonic() - max(self._first_at, self._free_at)
        return max(0.0, self.max_wait_s - waited)

    async def _serve(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            delay = self._ready()
            if delay is None or delay > 0:
                self._wake.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally
                # when it is cancelled in the loop iteration that sets the event (the
                # engine's episodes_active during shutdown), losing the cancellation, and
                # close() would wait for this task forever.
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            # Let episodes that are ready in this same loop iteration join the batch.
            await asyncio.sleep(0)
            size = len(self._pending) if self.max_batch is None else self.max_batch
            call = self._pending[0][2]
            same = [p for p in self._pending if p[2] is call]
            batch = same[:size]
            self._pending = [p for p in self._pending if not any(p is b for b in batch)]
            batch = [(r, f, c) for r, f, c in batch if not f.cancelled()]
            if self._pending:
                self._first_at = time.monotonic()
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            started = time.monotonic()
            try:
                outputs = await loop.run_in_executor(
                    self._executor, call, self.policy, [r for r, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting episode gets it
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future, _), output in zip(batch, outputs, strict=True):
                    if not future.done():
                        future.set_result(output)
            finally:
                self._free_at = time.monotonic()
                self.busy_s += self._free_at - started

    async def close(self) -> None:
        if self._server is not None:
            self._server.cancel()
            await asyncio.gather(self._server, return_exceptions=True)
        for _, future, _ in self._pending:
            future.cancel()
        if self._own_executor:
            self._executor.shutdown(wait=False)


class ConcurrentPolicy:
    """One request per episode step, up to `max_concurrency` at once (a served model
    batches them itself): ``await policy.act_async(state)`` where the policy has it,
    else ``policy.act([state])`` on a thread."""

    def __init__(self, policy: Policy, *, max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.policy = policy
        self.name = policy_name(policy)
        self.batch_sizes: list[int] = []
        self.max_concurrency = max_concurrency
        self._act_async: Callable[[EpisodeState], Awaitable[PolicyOutput]] | None = getattr(
            policy, "act_async", None)
        self._in_flight: asyncio.Semaphore | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="cua-policy")

    def episodes_active(self, count: int) -> None:
        return None

    async def act(self, state: EpisodeState, host: EnvironmentHost) -> PolicyOutput:
        self.batch_sizes.append(1)
        if self._act_async is None:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, _checked, self.policy, [state])
            return outputs[0]
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(self.max_concurrency)
        async with self._in_flight:
            return await self._act_async(state)

    async def answer(self, prompt: Any) -> PolicyOutput:
        """The output for a prompt built elsewhere: ``policy.answer([prompt])`` on a
        thread, up to `max_concurrency` at once."""
        self.batch_sizes.append(1)
        outputs = await asyncio.get_running_loop().run_in_executor(
            self._executor, _checked_answers, self.policy, [prompt])
        return outputs[0]

    async def close(self) -> None:
        self._executor.shutdown(wait=False)


class ExpertPolicy:
    """Each environment's own scripted expert, asked through its host."""

    def __init__(self, name: str = "expert") -> None:
        self.name = name
        self.batch_sizes: list[int] = []

    def episodes_active(self, count: int) -> None:
        return None

    async def act(self, state: EpisodeState, host: EnvironmentHost) -> PolicyOutput:
        return await host.expert_act(state)

    async def close(self) -> None:
        return None


def _is_served(policy: Policy) -> bool:
    try:
        from policies.openai_compat import OpenAICompatPolicy
    except ImportError:  # pragma: no cover - optional pieces missing
        return False
    return isinstance(policy, OpenAICompatPolicy)


def make_policy_service(policy: Policy, *, calls: PolicyCalls | str | None = None,
                        max_batch: int | None = None, max_wait_s: float | None = None,
                        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                        executor: concurrent.futures.Executor | None = None,
                        ) -> BatchingPolicy | ConcurrentPolicy:
    """The service for a model policy: `calls` chosen, else concurrent requests for a
    served model and dynamic batching for everything else."""
    chosen = PolicyCalls(calls) if calls else (
        PolicyCalls.CONCURRENT if _is_served(policy) else PolicyCalls.BATCHED)
    if chosen is PolicyCalls.CONCURRENT:
        return ConcurrentPolicy(policy, max_concurrency=max_concurrency)
    wait = DEFAULT_MAX_WAIT_S if max_wait_s is None else max_wait_s
    return BatchingPolicy(policy, max_batch=1 if chosen is PolicyCalls.SERIAL else max_batch,
                          max_wait_s=wait, executor=executor)


ServiceFactory = Callable[[Policy], PolicyService]


class PolicyClient:
    """A model policy's service driven from synchronous code, on an event loop of its own:
    callers that are not engine episodes (the AndroidWorld adapter, whose runner calls one
    step at a time; the grounding runner's batches of prebuilt prompts) reach the model
    through the same services as the engine's episodes (`make_policy_service`)."""

    def __init__(self, policy: Policy, **service_options: Any) -> None:
        self.service = make_policy_service(policy, **service_options)
        self.name = self.service.name
        self._loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` (which may await `self.service`) to completion."""
        return self._loop.run_until_complete(coroutine)

    def answer(self, prompts: list[Any]) -> list[PolicyOutput]:
        """Outputs for prompts built elsewhere, in order: one batched call for an
        in-process model, concurrent requests for a served one."""
        self.service.episodes_active(len(prompts))  # nobody else joins: the batch leaves

        async def answer_all() -> list[PolicyOutput]:
            return list(await asyncio.gather(*(self.service.answer(p) for p in prompts)))

        return self.run(answer_all())

    def close(self) -> None:
        """Close the service and the loop (not the policy: its owner closes it)."""
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.service.close())
            self._loop.close()

__all__ = [
    "DEFAULT_MAX_CONCURRENCY", "DEFAULT_MAX_WAIT_S", "BatchingPolicy", "ConcurrentPolicy",
    "ExpertPolicy", "PolicyCalls", "PolicyClient", "PolicyContractError", "PolicyService",
    "make_policy_service", "policy_name",
]
