"""A Qwen-VL policy served over an OpenAI-compatible chat-completions API (vLLM, SGLang).

The prompt is the one `policies.prompting` builds for the in-process policy; each image
item becomes an `image_url` with a base64 PNG data URL (the screenshot's own lossless
bytes: the server resizes it with the checkpoint's image processor). Requests for the
episodes of one `act()` call go out concurrently (a thread pool of `concurrency`), each
with a timeout and retries with exponential backoff on timeouts, connection errors, 429
and 5xx answers.

Token-level records: `logprobs` are requested and recorded when the server returns them.
With `token_ids=True` (default) the vLLM extensions `return_token_ids` (prompt and
response token ids) and `return_tokens_as_token_ids` (logprob entries named
"token_id:N") are requested too, so RL exports get the ids as generated. Servers that
reject unknown fields: pass `token_ids=False`.

The API key is read from the environment variable named by `api_key_env` (default
OPENAI_API_KEY) and is never logged; without it no Authorization header is sent.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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

VLLM_HINT = (
    "start one, e.g. `vllm serve Qwen/Qwen3-VL-8B-Instruct --port 8000 "
    "--limit-mm-per-prompt.video 0` or `python -m sglang.launch_server --model-path "
    "Qwen/Qwen3-VL-8B-Instruct --port 30000`, and pass its URL with --base-url "
    "(e.g. http://127.0.0.1:8000/v1)"
)


class ServerError(PolicyUnavailable):
    """The chat-completions server failed (unreachable, error answer, retries exhausted)."""


class ServerUnreachable(ServerError):
    """Nothing answers at the base URL."""


class ModelNotServed(ServerError):
    """The server does not serve the requested model name."""


class _Retryable(Exception):
    """A failure worth another try (timeout, connection error, 429, 5xx)."""


class OpenAICompatOptions(BaseModel):
    """Options of the OpenAI-compatible policy (the CLI's `--policy openai` flags).

    base_url: the API root, ending in /v1 (e.g. http://127.0.0.1:8000/v1).
    model: the served model name (vLLM: the path or --served-model-name).
    api_key_env: environment variable holding the API key (never logged).
    timeout_s: per-request timeout in seconds; max_retries: extra tries after a retryable
    failure, waiting backoff_s * 2**attempt (plus up to 10 % jitter) between them.
    concurrency: requests in flight at once across the episodes of one act() call.
    dialect: how the model writes coordinates (qwen3 for Qwen3-VL, qwen25 for Qwen2.5-VL;
    the latter also needs the server's image budget min_pixels/max_pixels, defaulting to
    Qwen2.5-VL's).
    check_model: ask /v1/models at construction and fail early on a wrong name.
    """

    model_config = ConfigDict(frozen=True)

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
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


class OpenAICompatPolicy:
    """Qwen-VL behind an OpenAI-compatible server; concurrent requests per act()."""

    def __init__(self, options: OpenAICompatOptions):
        self.options = options
        self.base_url = options.base_url.rstrip("/")
        self.name = options.name or f"openai:{options.model}"
        self._api_key = os.environ.get(options.api_key_env) or None
        profile = get_profile(options.prompt_profile or DEFAULT_PROFILE)
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
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency,
                                        thread_name_prefix="cua-openai")
        if options.check_model:
            self.check_model()

    @classmethod
    def from_options(cls, **options: Any) -> OpenAICompatPolicy:
        """Build from flat CLI-style options (sampling keys folded as for qwen3vl)."""
        return cls(OpenAICompatOptions(**fold_sampling_options(options)))

    # -- HTTP

    def _request(self, method: str, path: str, body: dict[str, Any] | None,
                 timeout_s: float) -> dict[str, Any]:
        """One HTTP exchange. Raises _Retryable, ServerUnreachable or ServerError."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self._api_key:
            request.add_header("Authorization", f"Bearer {self._api_key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc)
            if exc.code in (408, 429) or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code} from {url}: {detail}") from exc
            if exc.code == 404 and "model" in detail.lower():
                raise ModelNotServed(self._wrong_model_message(detail)) from exc
            if exc.code == 401:
                raise ServerError(f"HTTP 401 from {url}: {detail} (set the API key in "
                                  f"${self.options.api_key_env})") from exc
            raise ServerError(f"HTTP {exc.code} from {url}: {detail}") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError | socket.gaierror | FileNotFoundError):
                raise ServerUnreachable(
                    f"no chat-completions server answers at {self.base_url} ({reason}); "
                    + VLLM_HINT) from exc
            if isinstance(reason, TimeoutError):
                raise _Retryable(f"timed out after {timeout_s:g} s waiting for {url}") from exc
            raise _Retryable(f"cannot reach {url}: {reason}") from exc
        except TimeoutError as exc:
            raise _Retryable(f"timed out after {timeout_s:g} s waiting for {url}") from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection to {url} failed: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ServerError(f"{url} answered with something that is not JSON: {exc}") from exc

    def _with_retries(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(self.options.max_retries + 1):
            try:
                return self._request(method, path, body, self.options.timeout_s)
            except _Retryable as exc:
                last = exc
                if attempt == self.options.max_retries:
                    break
                delay = self.options.backoff_s * (2 ** attempt)
                delay += random.uniform(0, delay * 0.1)
                logger.warning("%s (attempt %d of %d); retrying in %.1f s", exc, attempt + 1,
                               self.options.max_retries + 1, delay)
                time.sleep(delay)  # backoff between retries, not synchronisation
        raise ServerError(f"giving up after {self.options.max_retries + 1} attempts: {last}")

    def served_models(self) -> list[str]:
        """The model names the server lists at /v1/models."""
        answer = self._with_retries("GET", "/models", None)
        return [m.get("id", "?") for m in answer.get("data", [])]

    def _wrong_model_message(self, detail: str = "") -> str:
        try:
            served = ", ".join(self.served_models()) or "(none)"
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
        """The chat-completions request for one prompt."""
        sampling = self.options.sampling
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": to_openai_messages(
                prompt, self.prompt_config.image_budget if self.resize_images else None),
            "max_tokens": self.max_new_tokens,
            "temperature": 0.0 if not sampling.do_sample else sampling.temperature,
            "top_p": 1.0 if not sampling.do_sample else sampling.top_p,
            "presence_penalty": sampling.presence_penalty,
            "stream": False,
        }
        if sampling.do_sample and sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
        if sampling.seed is not None:
            body["seed"] = sampling.seed
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

    def _one(self, prompt: BuiltPrompt) -> PolicyOutput:
        started = time.monotonic()
        try:
            answer = self._with_retries("POST", "/chat/completions", self.request_body(prompt))
        except ServerError as exc:
            logger.warning("policy %s: %s", self.name, exc)
            return PolicyOutput(raw_text="", messages=prompt.record_messages(),
                                images=list(prompt.images), error=str(exc),
                                latency_s=time.monotonic() - started, model=self.options.model)
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

    def act(self, states: list[EpisodeState]) -> list[PolicyOutput]:
        """Concurrent requests, one per state; a failed request gives an output with
        `error` set (after retries) instead of raising."""
        return self.answer([build_prompt(state, self.prompt_config) for state in states])

    def answer(self, prompts: list[BuiltPrompt]) -> list[PolicyOutput]:
        """Concurrent requests for prompts built elsewhere (e.g. a grounding profile,
        policies.grounding), as act() does for episode states."""
        return list(self._pool.map(self._one, prompts))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return exc.reason if isinstance(exc.reason, str) else str(exc)
    error = payload.get("error", payload)
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


__all__ = [
    "ModelNotServed", "OpenAICompatOptions", "OpenAICompatPolicy", "ServerError",
    "ServerUnreachable", "to_openai_messages",
]
