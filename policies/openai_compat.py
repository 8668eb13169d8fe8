"""A Qwen-VL policy served over an OpenAI-compatible chat-completions API (vLLM, SGLang).

The client is the `openai` SDK's `AsyncOpenAI`: its timeouts, its retries (exponential
backoff from 0.5 s with jitter, honouring Retry-After, on timeouts, connection errors,
408/409/429 and 5xx answers) and its error types, mapped here to one-line messages that say
what to do (`ServerUnreachable`, `ModelNotServed`, `ServerError`).

The prompt is the one `policies.prompting` builds for the in-process policy; each image
item becomes an `image_url` with a base64 PNG data URL (the screenshot's own lossless
bytes: the server resizes it with the checkpoint's image processor). The episode engine
awaits `act_async(state)` for each episode step (`agent.engine.policy_service.
ConcurrentPolicy`); `act(states)` / `answer(prompts)` send a batch concurrently for
synchronous callers (the grounding runner, scripts). At most `concurrency` requests are in
flight at once either way.

The SDK's async client belongs to one event loop, and this policy is called both from the
engine's loop and from plain threads, so the client lives on an event loop of its own, on
one thread the policy starts when first used (again after a fork).

Token-level records: `logprobs` are requested and recorded when the server returns them.
With `token_ids=True` (default) the vLLM extensions `return_token_ids` (prompt and
response token ids) and `return_tokens_as_token_ids` (logprob entries named
"token_id:N") are requested too (through `extra_body`, with the other fields the OpenAI
API does not define), so RL exports get the ids as generated. Servers that reject unknown
fields: pass `token_ids=False`.

The API key is read from the environment variable named by `api_key_env` (default
OPENAI_API_KEY) and is never logged; without it the SDK sends vLLM's placeholder "EMPTY"
(a server started without --api-key ignores it).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import openai
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from actions.contracts import EpisodeState, PolicyOutput
from actions.dialects import QWEN25_FACTOR, QWEN25_MAX_PIXELS, QWEN25_MIN_PIXELS, Dialect
from actions.observation import Size
from policies.profiles import DEFAULT_PROFILE, get_profile
from policies.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    BuiltPrompt,
    ImageBudget,
    SamplingParams,
    build_prompt,
    generation_budget,
    is_thinking_checkpoint,
    parse_output,
    prompt_config_for,
)
from policies.qwen3vl import fold_sampling_options
from policies.registry import PolicyUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

VLLM_HINT = (
    "start one, e.g. `vllm serve Qwen/Qwen3-VL-8B-Instruct --port 8000 "
    "--limit-mm-per-prompt.video 0` or `python -m sglang.launch_server --model-path "
    "Qwen/Qwen3-VL-8B-Instruct --port 30000`, and pass its URL with --base-url "
    "(e.g. http://127.0.0.1:8000/v1)"
)
NO_API_KEY = "EMPTY"  # what vLLM's docs pass when the server has no --api-key
# Request fields the SDK's chat.completions.create() takes by name; every other field of
# request_body() (top_k, repetition_penalty, vLLM/SGLang extensions) goes in extra_body.
SDK_FIELDS = frozenset({
    "model", "messages", "max_tokens", "temperature", "top_p", "presence_penalty",
    "seed", "logprobs", "top_logprobs", "stream",
})
RETRIED_STATUS = frozenset({408, 409, 429})  # and every 5xx: what the SDK retries


class ServerError(PolicyUnavailable):
    """The chat-completions server failed (unreachable, error answer, retries exhausted)."""


class ServerUnreachable(ServerError):
    """Nothing answers at the base URL."""


class ModelNotServed(ServerError):
    """The server does not serve the requested model name."""


class OpenAICompatOptions(BaseModel):
    """Options of the OpenAI-compatible policy (the CLI's `--policy openai` flags).

    base_url: the API root, ending in /v1 (e.g. http://127.0.0.1:8000/v1).
    model: the served model name (vLLM: the path or --served-model-name).
    api_key_env: environment variable holding the API key (never logged).
    timeout_s: per-request timeout in seconds; max_retries: extra tries after a retryable
    failure (the SDK's backoff: 0.5 s doubling up to 8 s, less up to 25 % jitter, or the
    server's Retry-After).
    concurrency: requests in flight at once across the episodes of one act() call.
    dialect: how the model writes coordinates (qwen3 for Qwen3-VL, qwen25 for Qwen2.5-VL;
    the latter also needs the server's image budget min_pixels/max_pixels, defaulting to
    Qwen2.5-VL's).
    check_model: ask /v1/models at construction and fail early on a wrong name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    concurrency: int = Field(8, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    prompt_profile: str | None = None
    resize_images: bool | None = None
    dialect: Dialect = Dialect.QWEN3
    history_images: int = Field(2, ge=0)
    max_text_steps: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    include_extensions: bool = False
    min_pixels: int | None = Field(None, gt=0)
    max_pixels: int | None = Field(None, gt=0)
    logprobs: bool = True
    token_ids: bool = True
    check_model: bool = True
    name: str | None = None


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _resized_pngs(prompt: BuiltPrompt, budget: ImageBudget) -> list[bytes]:
    """Each prompt image resized to the size the model sees under `budget`, as PNG (the
    original bytes when it already has that size)."""
    out: list[bytes] = []
    for png, image in zip(prompt.image_pngs, prompt.pil_images(), strict=True):
        target = budget.image_size(Size(width=image.width, height=image.height))
        if (target.width, target.height) == image.size:
            out.append(png)
            continue
        buffer = io.BytesIO()
        image.resize((target.width, target.height), Image.Resampling.BICUBIC).save(
            buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def to_openai_messages(prompt: BuiltPrompt,
                       resize_to: ImageBudget | None = None) -> list[dict[str, Any]]:
    """The prompt's messages in chat-completions form (images as base64 PNG data URLs);
    with `resize_to`, each image is first resized to the size the model sees."""
    pngs = iter(_resized_pngs(prompt, resize_to) if resize_to else prompt.image_pngs)
    out: list[dict[str, Any]] = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": _data_url(next(pngs))}}
                if item.get("type") == "image" else {"type": "text", "text": item["text"]}
                for item in content
            ]
        out.append({"role": message["role"], "content": content})
    return out


class _LoopThread:
    """An event loop running on a daemon thread of its own (where the SDK client lives)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class OpenAICompatPolicy:
    """Qwen-VL behind an OpenAI-compatible server; concurrent requests (see module doc)."""

    def __init__(self, options: OpenAICompatOptions):
        self.options = options
        self.base_url = options.base_url.rstrip("/")
        self.name = options.name or f"openai:{options.model}"
        profile = get_profile(options.prompt_profile or DEFAULT_PROFILE)
        self.profile = profile
        is_qwen25 = options.dialect is Dialect.QWEN25
        budget = ImageBudget()
        if is_qwen25:
            budget = ImageBudget(factor=QWEN25_FACTOR, min_pixels=QWEN25_MIN_PIXELS,
                                 max_pixels=QWEN25_MAX_PIXELS)
        elif profile.image_max_pixels:
            budget = ImageBudget(factor=profile.image_factor,
                                 min_pixels=min(budget.min_pixels, profile.image_max_pixels),
                                 max_pixels=profile.image_max_pixels)
        budget = ImageBudget(factor=budget.factor,
                             min_pixels=options.min_pixels or budget.min_pixels,
                             max_pixels=options.max_pixels or budget.max_pixels)
        self.prompt_config = prompt_config_for(
            options, budget, dialect=Dialect.QWEN25 if is_qwen25 else None)
        self.thinking = is_thinking_checkpoint(options.model)
        self.max_new_tokens = generation_budget(options.max_new_tokens, profile.name,
                                                self.thinking)
        # Send screenshots already at the size the model will see, so the server's own
        # resize is a no-op: qwen25 coordinates are pixels of that size, and a server with
        # another pixel budget would otherwise see (and answer about) a different image.
        self.resize_images = (options.resize_images if options.resize_images is not None
                              else is_qwen25 or profile.image_max_pixels is not None)
        self._io: _LoopThread | None = None
        self._io_pid = 0
        self._io_lock = threading.Lock()
        self._client: openai.AsyncOpenAI | None = None
        self._in_flight: asyncio.Semaphore | None = None
        if options.check_model:
            self.check_model()

    @classmethod
    def from_options(cls, **options: Any) -> OpenAICompatPolicy:
        """Build from flat CLI-style options (sampling keys folded as for qwen3vl)."""
        return cls(OpenAICompatOptions(**fold_sampling_options(options)))

    # -- the client and its event loop

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` on the client's event loop (started on first use, and again in
        a forked child, where the parent's thread does not exist)."""
        with self._io_lock:
            if self._io is None or self._io_pid != os.getpid():
                self._io, self._io_pid = _LoopThread("cua-openai"), os.getpid()
                self._client = self._in_flight = None
            io_thread = self._io
        return io_thread.submit(coroutine)

    def _sdk(self) -> openai.AsyncOpenAI:
        """The SDK client (made on, and used only from, the client's event loop)."""
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=os.environ.get(self.options.api_key_env) or NO_API_KEY,
                timeout=self.options.timeout_s, max_retries=self.options.max_retries,
                http_client=openai.DefaultAsyncHttpxClient(
                    event_hooks={"response": [self._log_retried_answer]}))
            self._in_flight = asyncio.Semaphore(self.options.concurrency)
        return self._client

    async def _log_retried_answer(self, response: Any) -> None:
        """Say why the SDK is about to retry (it logs only that it does, at INFO)."""
        if response.status_code in RETRIED_STATUS or response.status_code >= 500:
            await response.aread()
            logger.warning("HTTP %d from %s: %s", response.status_code, response.request.url,
                           _detail(_json_or_text(response)))

    # -- errors

    def _failure(self, exc: Exception) -> ServerError:
        """The SDK's exception as one of ours, with a message that says what to do."""
        url = str(getattr(getattr(exc, "request", None), "url", self.base_url))
        tries = self.options.max_retries + 1
        retried = f"giving up after {tries} attempts: " if tries > 1 else ""
        if isinstance(exc, openai.APITimeoutError):
            return ServerError(f"{retried}timed out after {self.options.timeout_s:g} s "
                               f"waiting for {url}")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return ServerUnreachable(f"{retried}no chat-completions server answers at "
                                     f"{self.base_url} ({cause}); " + VLLM_HINT)
        if isinstance(exc, openai.APIStatusError):
            detail = _detail(exc.body) if exc.body is not None else exc.message
            code = exc.status_code
            if code == 401:
                return ServerError(f"HTTP 401 from {url}: {detail} (set the API key in "
                                   f"${self.options.api_key_env})")
            if code in RETRIED_STATUS or code >= 500:
                return ServerError(f"{retried}HTTP {code} from {url}: {detail}")
            return ServerError(f"HTTP {code} from {url}: {detail}")
        if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
            return ServerError(f"{url} answered with something that is not JSON: {exc}")
        return ServerError(f"request to {url} failed: {type(exc).__name__}: {exc}")

    async def _served_models(self) -> list[str]:
        try:
            page = await self._sdk().models.list()
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            raise self._failure(exc) from exc
        return [model.id for model in page.data]

    def served_models(self) -> list[str]:
        """The model names the server lists at /v1/models."""
        return self._run(self._served_models()).result()

    async def _wrong_model_message(self, detail: str = "") -> str:
        try:
            served = ", ".join(await self._served_models()) or "(none)"
        except ServerError as exc:
            served = f"(could not list them: {exc})"
        extra = f" ({detail})" if detail else ""
        return (f"the server at {self.base_url} does not serve model {self.options.model!r}"
                f"{extra}; it serves: {served}. Pass one of these with --model.")

    def check_model(self) -> None:
        """Fail early: ServerUnreachable / ModelNotServed with what to do."""
        served = self.served_models()
        if self.options.model not in served:
            raise ModelNotServed(
                f"the server at {self.base_url} does not serve model {self.options.model!r}; "
                f"it serves: {', '.join(served) or '(none)'}. Pass one of these with --model.")

    # -- requests

    def request_body(self, prompt: BuiltPrompt) -> dict[str, Any]:
        """The chat-completions request for one prompt, as it goes on the wire."""
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": to_openai_messages(
                prompt, self.prompt_config.image_budget if self.resize_images else None),
            "max_tokens": self.max_new_tokens,
            # A reference profile sends only the sampling its reference sends (none of
            # them sends any) plus what was set explicitly (an option, a named preset).
            **self.options.sampling.request_fields(everything=self.profile.sends_sampling),
            "stream": False,
        }
        if self.options.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = 0
        if prompt.messages and prompt.messages[-1]["role"] == "assistant":
            # a prefilled assistant turn the model continues (vLLM / SGLang extensions)
            body["add_generation_prompt"] = False
            body["continue_final_message"] = True
        if self.options.token_ids:
            body["return_token_ids"] = True
            body["return_tokens_as_token_ids"] = True
        return body

    async def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST the body through the SDK; the answer as a dict, server extensions kept."""
        named = {key: value for key, value in body.items() if key in SDK_FIELDS}
        extra = {key: value for key, value in body.items() if key not in SDK_FIELDS}
        try:
            completion = await self._sdk().chat.completions.create(
                **named, extra_body=extra or None)
        except openai.NotFoundError as exc:
            detail = _detail(exc.body) if exc.body is not None else exc.message
            if "model" in detail.lower():
                raise ModelNotServed(await self._wrong_model_message(detail)) from exc
            raise self._failure(exc) from exc
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            raise self._failure(exc) from exc
        return completion.model_dump(exclude_unset=True)

    async def _one(self, prompt: BuiltPrompt) -> PolicyOutput:
        self._sdk()
        assert self._in_flight is not None
        async with self._in_flight:
            started = time.monotonic()
            try:
                body = await asyncio.to_thread(self.request_body, prompt)  # PNGs, base64
                answer = await self._create(body)
            except ServerError as exc:
                logger.warning("policy %s: %s", self.name, exc)
                return PolicyOutput(raw_text="", messages=prompt.record_messages(),
                                    images=list(prompt.images), error=str(exc),
                                    latency_s=time.monotonic() - started,
                                    model=self.options.model)
            latency_s = time.monotonic() - started
        return self._output(answer, prompt, latency_s)

    def _output(self, answer: dict[str, Any], prompt: BuiltPrompt, latency_s: float) -> PolicyOutput:
        choices = answer.get("choices") or []
        if not choices:
            return PolicyOutput(raw_text="", messages=prompt.record_messages(),
                                images=list(prompt.images), latency_s=latency_s,
                                error=f"the server answered without choices: {str(answer)[:200]}",
                                model=answer.get("model", self.options.model))
        choice = choices[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:  # a server-side reasoning parser split the think block off
            text = f"<think>\n{reasoning}\n</think>\n\n{text}"
        for call in message.get("tool_calls") or []:  # a server-side tool parser took them
            function = call.get("function") or {}
            arguments = function.get("arguments", "{}")
            try:
                arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
            except json.JSONDecodeError:
                pass
            text += ("\n" if text else "") + "<tool_call>\n" + json.dumps(
                {"name": function.get("name"), "arguments": arguments}, ensure_ascii=False
            ) + "\n</tool_call>"
        logprob_entries = ((choice.get("logprobs") or {}).get("content")) or []
        logprobs = [float(e["logprob"]) for e in logprob_entries if "logprob" in e] or None
        response_ids = choice.get("token_ids")
        if response_ids is None and logprob_entries and all(
                str(e.get("token", "")).startswith("token_id:") for e in logprob_entries):
            response_ids = [int(e["token"].split(":", 1)[1]) for e in logprob_entries]
        prompt_ids = answer.get("prompt_token_ids") or choice.get("prompt_token_ids")
        usage = answer.get("usage") or {}
        return parse_output(
            text, prompt, prompt_token_ids=prompt_ids, response_token_ids=response_ids,
            response_logprobs=logprobs, prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"), latency_s=latency_s,
            model=answer.get("model", self.options.model),
            finish_reason=choice.get("finish_reason"),
        )

    async def _answer_all(self, prompts: list[BuiltPrompt]) -> list[PolicyOutput]:
        return list(await asyncio.gather(*(self._one(prompt) for prompt in prompts)))

    async def act_async(self, state: EpisodeState) -> PolicyOutput:
        """One episode step, awaited from any event loop (the engine's): the request runs
        on the client's loop. A failed request gives an output with `error` set."""
        prompt = await asyncio.to_thread(build_prompt, state, self.prompt_config)
        return await asyncio.wrap_future(self._run(self._one(prompt)))

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        """Concurrent requests, one per state; a failed request gives an output with
        `error` set (after retries) instead of raising."""
        return self.answer([build_prompt(state, self.prompt_config) for state in states])

    def answer(self, prompts: list[BuiltPrompt]) -> list[PolicyOutput]:
        """Concurrent requests for prompts built elsewhere (e.g. a grounding profile,
        policies.grounding), as act() does for episode states."""
        return self._run(self._answer_all(prompts)).result()

    def close(self) -> None:
        """Close the SDK client and stop its event loop (a later call starts them again)."""
        with self._io_lock:
            io_thread, self._io = self._io, None
        if io_thread is None or self._io_pid != os.getpid():
            return
        client, self._client, self._in_flight = self._client, None, None
        if client is not None:
            io_thread.submit(client.close()).result()
        io_thread.stop()


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def _detail(body: Any) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": ...}} or the
    error object itself, as the SDK keeps it)."""
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


__all__ = [
    "ModelNotServed", "OpenAICompatOptions", "OpenAICompatPolicy", "ServerError",
    "ServerUnreachable", "to_openai_messages",
]
