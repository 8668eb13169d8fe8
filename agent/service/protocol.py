"""The wire format of the environment service (`cua serve-env`), shared by server and client.

Plain pydantic models, no web framework: the client (`agent.service.client`) imports this
module on a trainer's GPU node without pulling in the server's dependencies.

The HTTP surface (all JSON unless said otherwise; every route but /health needs
``Authorization: Bearer <token>``):

=====================================  ==========================================================
``GET  /health``                       `Health`: suite, capacity, leases, crashes, restarts
``POST /leases``                       `LeaseInfo` (201); 503 when every environment is leased
``POST /leases/{id}/reset``            `ResetRequest` -> `ResetReply` (the task and observation)
``POST /leases/{id}/step``             an Action (``actions.models``) -> `ObservationMeta`
``POST /leases/{id}/notify_terminal``  an Action: the episode ended on it (Android tears down)
``POST /leases/{id}/notify_output``    `OutputNotice`: a policy output, before its actions
                                       (only where `LeaseInfo.has_notify_output`)
``POST /leases/{id}/evaluate``         `EvaluateReply` (the environment's evaluator score)
``GET  /leases/{id}/screenshot``       the latest screenshot, ``image/png`` bytes
``DELETE /leases/{id}``                end the lease; its environment goes back to the pool
=====================================  ==========================================================

A screenshot travels once, as PNG bytes: a reset/step reply carries the observation's
metadata and the screenshot's SHA-256; the client fetches the PNG only when it has not got
those bytes already (an unchanged screen costs no transfer).

Failures come back as `ErrorReply` with a stable `error` code (see `ErrorCode`), so a
client maps them to the same exceptions an in-process environment raises.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import Task
from actions.observation import Observation

TOKEN_ENV_VAR = "CUA_ENV_TOKEN"
SHA256_HEADER = "X-Screenshot-Sha256"


class ErrorCode(enum.StrEnum):
    """What went wrong, as a client needs to tell it apart."""

    UNAUTHORIZED = "unauthorized"  # 401: missing or wrong token
    BAD_REQUEST = "bad_request"  # 400/422: a body that does not validate; nothing changed
    TOO_LARGE = "request_too_large"  # 413: body above the server's --max-request-bytes
    UNKNOWN_LEASE = "unknown_lease"  # 404: never existed, closed, or reclaimed when idle
    NO_CAPACITY = "no_capacity"  # 503: every environment is leased; retry later
    NOT_RESET = "not_reset"  # 409: step/evaluate before the lease's first reset
    UNKNOWN_TASK = "unknown_task"  # 404: the suite has no such task
    ENVIRONMENT_CRASHED = "environment_crashed"  # 502: the episode is over; reset to go on
    ENVIRONMENT_HUNG = "environment_hung"  # 504: replaced by a fresh environment; lease ended
    BUSY = "lease_busy"  # 409: a call on this lease is still running
    INTERNAL = "internal_error"  # 500: anything else (the message says what)


class ErrorReply(BaseModel):
    error: ErrorCode
    detail: str


class LeaseInfo(BaseModel):
    """A lease on one environment of the service."""

    lease_id: str
    suite: str
    platform: str = Field(..., description="'web', 'desktop' or 'mobile': picks the tool.")
    idle_timeout_s: float = Field(..., description="The lease is reclaimed after this long "
                                  "without a call.")
    has_notify_output: bool = Field(False, description="The environment hears of each policy "
                                    "output (POST /leases/{id}/notify_output).")


class OutputNotice(BaseModel):
    """A policy output of the episode, before its actions run: its step index (one per
    policy call, from 0) and the model's raw text."""

    model_config = ConfigDict(extra="forbid")

    step_index: int = Field(..., ge=0)
    raw_text: str


class TaskOverrides(BaseModel):
    """What a client may change about a suite's task. Setup `config` is not among them:
    the server's suite builds it, so a client cannot make the server run arbitrary setup
    steps (the desktop suite's config may execute commands)."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(None, ge=1)
    time_limit_s: float | None = Field(None, gt=0)


class ResetRequest(BaseModel):
    """Start an episode of one of the suite's tasks (a dataset row names it)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(..., min_length=1, max_length=512)
    seed: int = 0
    overrides: TaskOverrides = Field(default_factory=TaskOverrides)

    @classmethod
    def for_task(cls, task: Task) -> ResetRequest:
        return cls(task_id=task.task_id, seed=task.seed,
                   overrides=TaskOverrides(max_steps=task.max_steps,
                                           time_limit_s=task.time_limit_s))


class ObservationMeta(BaseModel):
    """An Observation without its PNG bytes, plus the PNG's SHA-256."""

    screenshot_sha256: str
    fields: dict[str, Any] = Field(..., description="Observation fields but screenshot_png.")

    @classmethod
    def of(cls, observation: Observation, sha256: str) -> ObservationMeta:
        fields = observation.model_dump(mode="json", exclude={"screenshot_png", "info"})
        fields["info"] = _jsonable(observation.info)
        return cls(screenshot_sha256=sha256, fields=fields)

    def observation(self, png: bytes) -> Observation:
        return Observation(screenshot_png=png, **self.fields)


class ResetReply(BaseModel):
    task: Task
    observation: ObservationMeta


class EvaluateReply(BaseModel):
    score: float


class EnvironmentStatus(BaseModel):
    index: int
    leased: bool
    episodes: int
    crashes: int
    restarts: int
    last_error: str | None = None


class Health(BaseModel):
    status: str = "ok"
    suite: str
    platform: str
    max_envs: int
    leases: int
    environments: list[EnvironmentStatus]
    reclaimed_leases: int


def _jsonable(value: Any) -> Any:
    """`info` dicts hold what an environment chose to report; keep what JSON can carry."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
