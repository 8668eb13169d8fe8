"""The action-policy layer: refuse configured actions, and keep secrets out of trajectories.

Two independent pieces, both configured by one `SafetyRules`:

- `SafeEnvironment` wraps an Environment (gymnasium-style wrapper). Before executing an
  action it checks the rules; a refused action is NOT executed: `step` returns the
  current screen again with `Observation.action_error` = "refused by the safety policy:
  ..." and `info["safety_refusal"]` naming the rule, so the loop records the refusal as
  the step's action error and feeds it back to the policy. Rules:

  * `refused_actions`: action types never executed (e.g. ``["navigate", "open_app"]``);
  * `allowed_domains`: `navigate` only to these hosts (or their subdomains). Navigation
    caused by clicking a link is blocked inside the browser by the web environment's own
    `WebConfig.allowed_domains` (``--env-option allowed_domains='["host"]'``);
  * `allow_password_typing` (default False): text entry is refused while the focused
    element is a password field: `type`, a `key` press that enters a character (``a``,
    ``shift+a``, ``space``), and pasting (``ctrl+v``, ``meta+v``, ``ctrl+shift+v``,
    ``shift+insert``). Keys that only move or submit (``tab``, ``enter``, arrows,
    ``backspace``) stay allowed. The wrapper asks the environment: `env.focused_element()`
    when it has one, else the web environment's Playwright page (``document.activeElement``,
    through open shadow roots, and into the focused iframe, same-origin or not); each
    observation carries ``info["focused_password"]`` (True/False) where known.
    Environments that cannot tell (desktop, Android) are not restricted by this rule;
  * `allowed_apps`: `open_app` only for these names (case-insensitive).

- `RedactingRecorder` wraps a trajectory recorder: every string of every record written
  (episode.json, steps.jsonl, result.json, results.jsonl) has the secrets replaced by
  `replacement` before it reaches the disk. Secrets are explicit values (`secrets`, API
  only), values of environment variables (`secret_env`: names; the CLI's
  ``--secret-env``, so a secret never appears on a command line or in the manifest)
  and regular expressions (`secret_patterns`). A step whose output or prompt contained a
  secret also loses its token ids and logprobs (they would decode to the secret).
  A secret typed key by key (one `key` action per character, or `type` pieces and keys
  mixed) is caught from the episode's stream of entered text (`entered_text`, compared
  case-insensitively): every action that entered part of it is recorded as
  ``type("[REDACTED]")``, and its step's raw text, thought and token ids are replaced;
  the texts of those steps are also redacted wherever later prompts replay them. To do
  that the recorder holds back steps while the text entered so far could still become a
  secret (at most one step per character of the longest secret): a crash loses those
  pending steps, not only the step in flight. Explicit values and `secret_env` only
  (patterns cannot be matched key by key).
  Not covered: pixels (a secret typed into a visible text field is in the screenshot;
  password fields show dots).

`apply_safety` installs both around a run (agent.runner.execute_run's `safety=`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actions.contracts import Environment, Policy, Task
from actions.models import Action, Key, Navigate, OpenApp, Type
from actions.observation import Observation
from trajectories.record import EpisodeRecord, EpisodeResult, ObservationMeta, StepRecord
from trajectories.store import WrappedRunWriter

logger = logging.getLogger(__name__)

REFUSAL_PREFIX = "refused by the safety policy"

# JS: what the focused element is (for the password rule).
_FOCUSED_JS = """() => {
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el || el === document.body) return null;
  return {tag: el.tagName.toLowerCase(), type: (el.getAttribute('type') || '').toLowerCase(),
          autocomplete: (el.getAttribute('autocomplete') || '').toLowerCase(),
          name: el.getAttribute('name') || el.id || ''};
}"""

# JS run in each child frame when the top document's focus is on an iframe: whether this
# frame's document holds the focus, and its focused element (same shape as above).
_FRAME_FOCUSED_JS = """() => {
  if (!document.hasFocus()) return {focused: false};
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el || el === document.body) return {focused: true, element: null};
  return {focused: true, element: {tag: el.tagName.toLowerCase(),
          type: (el.getAttribute('type') || '').toLowerCase(),
          autocomplete: (el.getAttribute('autocomplete') || '').toLowerCase(),
          name: el.getAttribute('name') || el.id || ''}};
}"""
_FRAME_TAGS = frozenset({"iframe", "frame"})

# US-layout characters that shift gives for the unshifted key (what `shift+1` enters).
_SHIFTED = dict(zip("`1234567890-=[]\\;',./", '~!@#$%^&*()_+{}|:"<>?', strict=True))
# Key combinations that paste the clipboard into the focused field.
_PASTE_KEYS = frozenset({("ctrl", "v"), ("meta", "v"), ("ctrl", "shift", "v"),
                         ("shift", "ctrl", "v"), ("meta", "shift", "v"), ("shift", "insert")})

# Keys whose values are content addresses, never user text.
_HASH_KEYS = frozenset({"screenshot_sha256", "sha256"})


class SecretMissing(KeyError):
    """An environment variable named as holding a secret is not set."""


class SafetyRules(BaseModel):
    """What the safety layer refuses and redacts (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    refused_actions: list[str] = Field(default_factory=list,
                                       description="Action types never executed.")
    allowed_domains: list[str] | None = Field(
        None, description="Hosts `navigate` may open (subdomains included); None: any.")
    allow_password_typing: bool = Field(
        False, description="Whether `type` may go into a focused password field.")
    allowed_apps: list[str] | None = Field(
        None, description="Apps `open_app` may launch (case-insensitive); None: any.")
    secrets: list[str] = Field(default_factory=list, repr=False,
                               description="Secret values to redact (API use; never stored).")
    secret_env: list[str] = Field(default_factory=list,
                                  description="Names of environment variables holding secrets.")
    secret_patterns: list[str] = Field(default_factory=list,
                                       description="Regular expressions of secrets to redact.")
    replacement: str = Field("[REDACTED]", min_length=1)

    @field_validator("secret_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad secret pattern {pattern!r}: {exc}") from exc
        return patterns

    @field_validator("secrets")
    @classmethod
    def _no_empty_secret(cls, secrets: list[str]) -> list[str]:
        if any(not s for s in secrets):
            raise ValueError("an empty string cannot be a secret")
        return secrets

    def describe(self) -> dict[str, Any]:
        """The rules as stored in the run manifest: no secret values."""
        return {"refused_actions": self.refused_actions, "allowed_domains": self.allowed_domains,
                "allow_password_typing": self.allow_password_typing,
                "allowed_apps": self.allowed_apps, "secret_env": self.secret_env,
                "secret_patterns": self.secret_patterns, "explicit_secrets": len(self.secrets)}

    def secret_values(self) -> list[str]:
        """Explicit secrets plus the values of `secret_env` (SecretMissing if unset)."""
        values = list(self.secrets)
        for name in self.secret_env:
            value = os.environ.get(name)
            if not value:
                raise SecretMissing(f"environment variable {name} (named by --secret-env) is "
                                    "not set or empty; export it, or drop the option")
            values.append(value)
        return values

    @property
    def restricts_actions(self) -> bool:
        return bool(self.refused_actions or self.allowed_domains is not None
                    or not self.allow_password_typing or self.allowed_apps is not None)

    @property
    def redacts(self) -> bool:
        return bool(self.secrets or self.secret_env or self.secret_patterns)

    def refusal(self, action: Action, *, focused_password: bool | None) -> str | None:
        """Why `action` is refused (the rule, in words), or None when it may run."""
        if action.type in self.refused_actions:
            return f"{action.type} actions are not allowed"
        if isinstance(action, Navigate) and self.allowed_domains is not None:
            from environments.web import host_allowed

            url = action.url if "://" in action.url or action.url.startswith(
                ("about:", "data:")) else "https://" + action.url
            if not host_allowed(url, self.allowed_domains):
                return f"navigation to {action.url} is outside the allowed domains " \
                       f"{self.allowed_domains}"
        if focused_password and not self.allow_password_typing and enters_text(action):
            how = "pasting" if is_paste(action) else "typing"
            return f"{how} into a password field is not permitted (--allow-password-typing)"
        if isinstance(action, OpenApp) and self.allowed_apps is not None:
            allowed = {a.lower() for a in self.allowed_apps}
            if action.name.lower() not in allowed:
                return f"open_app({action.name!r}) is outside the allowed apps {self.allowed_apps}"
        return None


def entered_text(action: Action) -> str | None:
    """The text `action` enters into the focused field: a `type` action's text, or the
    character of a `key` press that types one (``a``, ``shift+a`` -> ``A``, ``space``);
    None for every other action (clicks, ``enter``, ``ctrl+c``, pastes: the clipboard's
    content is not known here)."""
    if isinstance(action, Type):
        return action.text
    if not isinstance(action, Key):
        return None
    *modifiers, last = action.keys
    if last == "space":
        last = " "
    if len(last) != 1 or modifiers not in ([], ["shift"]):
        return None
    if not modifiers:
        return last
    return last.upper() if last.isalpha() else _SHIFTED.get(last, last)


def is_paste(action: Action) -> bool:
    """Whether `action` is a key combination that pastes the clipboard."""
    return isinstance(action, Key) and tuple(action.keys) in _PASTE_KEYS


def enters_text(action: Action) -> bool:
    """Whether `action` puts text into the focused field (typed, pressed or pasted)."""
    return entered_text(action) is not None or is_paste(action)


# --------------------------------------------------------------------------- environment


def focused_element(env: Any) -> dict[str, Any] | None:
    """What the environment's focused element is ({tag, type, autocomplete, name}), None
    when nothing is focused or the environment cannot tell."""
    probe = getattr(env, "focused_element", None)
    if callable(probe):
        return probe()
    try:
        page = env.page  # the web environment's live Playwright page
    except (AttributeError, RuntimeError):
        return None  # not a browser, or no page yet
    try:
        element = page.evaluate(_FOCUSED_JS)
        if element is None or element.get("tag") not in _FRAME_TAGS:
            return element
        return _focused_in_frames(page)
    except Exception as exc:  # noqa: BLE001 - a probe failure must not end the episode
        logger.debug("focused-element probe failed: %s", exc)
        return None


def _focused_in_frames(page: Any) -> dict[str, Any] | None:
    """The focused element inside the page's iframes: the frame whose document has the
    focus and whose focused element is not itself a frame (the innermost one; every
    frame on the way down has focus too, its active element being the next iframe).
    Playwright reaches cross-origin frames too, where the page's own script cannot."""
    for frame in page.frames[1:]:
        try:
            seen = frame.evaluate(_FRAME_FOCUSED_JS)
        except Exception as exc:  # noqa: BLE001 - a detached or navigating frame
            logger.debug("focused-element probe of frame %s failed: %s", frame.url, exc)
            continue
        element = seen.get("element")
        if seen.get("focused") and not (element and element.get("tag") in _FRAME_TAGS):
            return element
    return None


def is_password_field(element: dict[str, Any] | None) -> bool | None:
    if element is None:
        return None
    return element.get("type") == "password" or "password" in str(element.get("autocomplete"))


class SafeEnvironment:
    """An Environment wrapper that refuses actions breaking `rules` (see module docstring).

    Every attribute it does not define is the wrapped environment's (`page`,
    `browser_pid`, `notify_terminal`, ...); `unwrapped` is the wrapped environment.
    """

    def __init__(self, env: Environment, rules: SafetyRules) -> None:
        self.env = env
        self.rules = rules
        self.refusals: list[str] = []
        self._last: Observation | None = None

    @property
    def unwrapped(self) -> Environment:
        return getattr(self.env, "unwrapped", self.env)

    def __getattr__(self, name: str) -> Any:
        if name in ("env", "rules", "refusals", "_last"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def _annotate(self, obs: Observation) -> Observation:
        if not self.rules.allow_password_typing:
            password = is_password_field(focused_element(self.unwrapped))
            if password is not None:
                obs = obs.model_copy(update={"info": {**obs.info,
                                                      "focused_password": password}})
        self._last = obs
        return obs

    def reset(self, task: Task) -> Observation:
        self._last = None
        return self._annotate(self.env.reset(task))

    def step(self, action: Action) -> Observation:
        password = None
        if not self.rules.allow_password_typing and enters_text(action):
            password = is_password_field(focused_element(self.unwrapped))
        reason = self.rules.refusal(action, focused_password=password)
        if reason is None:
            return self._annotate(self.env.step(action))
        self.refusals.append(reason)
        logger.info("refused %s: %s", action.type, reason)
        if self._last is None:
            raise RuntimeError("call reset(task) before step()")
        return self._last.model_copy(update={
            "action_error": f"{REFUSAL_PREFIX}: {reason}", "execute_s": 0.0, "settle_s": 0.0,
            "timestamp": time.time(), "done": False, "instruction": None,
            "info": {**self._last.info, "safety_refusal": reason}})

    def evaluate(self) -> float:
        return self.env.evaluate()

    def close(self) -> None:
        self.env.close()


@dataclass(frozen=True)
class SafeEnvironmentFactory:
    """Picklable factory of `SafeEnvironment`s (worker processes build them)."""

    make_environment: Callable[[], Environment]
    rules: SafetyRules

    def __call__(self) -> SafeEnvironment:
        return SafeEnvironment(self.make_environment(), self.rules)


@dataclass(frozen=True)
class UnwrappingExpertFactory:
    """Builds the scripted expert on the wrapped environment (experts check its type)."""

    make_expert: Callable[[Environment], Policy]

    def __call__(self, env: Environment) -> Policy:
        return self.make_expert(getattr(env, "unwrapped", env))


# --------------------------------------------------------------------------- redaction


class Redactor:
    """Replaces secret values and pattern matches in strings and JSON-like data."""

    def __init__(self, values: list[str], patterns: list[str], replacement: str) -> None:
        self.values = sorted({v for v in values if v}, key=len, reverse=True)
        self.patterns = list(patterns)
        self.replacement = replacement
        parts = [re.escape(v) for v in self.values] + [f"(?:{p})" for p in patterns]
        self._regex = re.compile("|".join(parts)) if parts else None

    def with_values(self, extra: list[str]) -> Redactor:
        """This redactor, also replacing the `extra` values."""
        return Redactor(self.values + extra, self.patterns, self.replacement)

    @classmethod
    def from_rules(cls, rules: SafetyRules) -> Redactor:
        return cls(rules.secret_values(), rules.secret_patterns, rules.replacement)

    def text(self, value: str) -> str:
        return value if self._regex is None else self._regex.sub(self.replacement, value)

    def data(self, value: Any, key: str | None = None) -> Any:
        """`value` with every string redacted (hash fields left alone)."""
        if isinstance(value, str):
            return value if key in _HASH_KEYS else self.text(value)
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, dict):
            return {k: self.data(v, k) for k, v in value.items()}
        return value


_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def _replayed_forms(output: dict[str, Any]) -> list[str]:
    """The texts under which a step's output reappears in later prompts: the raw text
    (with and without its think block), each tool call, the thought; whitespace-collapsed
    too (history summaries collapse it)."""
    raw = output.get("raw_text") or ""
    answer = _THINK.sub("", raw.split("</think>")[-1] if "</think>" in raw else raw).strip()
    forms = [raw, answer, output.get("thought") or "", output.get("think") or ""]
    forms += [call.strip() for call in _TOOL_CALL.findall(answer)]
    forms += [" ".join(form.split()) for form in forms]
    return [form for form in forms if len(form) > 1]


@dataclass
class _Entered:
    """One piece of text an action entered: which pending step, which action, the text."""

    step: int
    action: int
    text: str


class RedactingRecorder:
    """An EpisodeRecorder that redacts every record before the wrapped one writes it,
    including secrets typed key by key (see the module docstring)."""

    def __init__(self, inner: Any, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor
        self._secrets = [v.casefold() for v in redactor.values]
        self._pending: list[dict[str, Any]] = []  # steps held back, already value-redacted
        self._entered: list[_Entered] = []  # text entered since the last non-text action
        self._replayed: list[str] = []  # texts of key-by-key secret steps, redacted later on

    def observation(self, obs: Observation) -> ObservationMeta:
        return self.inner.observation(obs)

    def start(self, record: EpisodeRecord) -> None:
        self.inner.start(self._redact(record))

    def step(self, record: StepRecord) -> None:
        data = record.model_dump(mode="json")
        clean = self.redactor.data(data)
        if clean["output"] != data["output"]:
            _drop_tokens(clean["output"])
        self._pending.append(clean)
        for index, action in enumerate(record.output.actions):
            text = entered_text(action)
            if text is None:
                self._entered = []
            else:
                self._entered.append(_Entered(len(self._pending) - 1, index, text))
                self._catch_entered_secret()
        self._flush(keep_from=self._live_start())

    def finish(self, result: EpisodeResult) -> None:
        self._flush(keep_from=len(self._pending))
        self.inner.finish(self._redact(result))

    def _catch_entered_secret(self) -> None:
        """If the text entered lately contains a secret: redact every action that entered
        part of it, and the texts of those steps wherever they are replayed."""
        joined = "".join(piece.text for piece in self._entered).casefold()
        spans = [(m.start(), m.start() + len(secret)) for secret in self._secrets
                 for m in re.finditer(re.escape(secret), joined)]
        if not spans:
            return
        bounds, offset = [], 0
        for piece in self._entered:
            bounds.append((offset, offset + len(piece.text)))
            offset += len(piece.text)
        hit: list[_Entered] = []
        for start, stop in spans:
            pieces = [piece for piece, (begin, end) in zip(self._entered, bounds, strict=True)
                      if begin < stop and start < end]
            if len(pieces) > 1:  # a secret inside one `type` text: value redaction has it
                hit += [piece for piece in pieces if piece not in hit]
        if not hit:
            return
        redacted = {"type": "type", "text": self.redactor.replacement}
        for piece in hit:
            step = self._pending[piece.step]
            self._replayed += _replayed_forms(step["output"])
            step["output"]["actions"][piece.action] = dict(redacted)
            for execution in step["executions"]:
                if execution["index"] == piece.action:
                    execution["action"] = dict(redacted)
        for step_index in {piece.step for piece in hit}:
            output = self._pending[step_index]["output"]
            output["raw_text"] = self.redactor.replacement
            output["thought"] = self.redactor.replacement if output["thought"] else ""
            output["think"] = self.redactor.replacement if output["think"] else None
            _drop_tokens(output)
        self._entered = []

    def _live_start(self) -> int:
        """The first pending step that must stay pending: the one where the longest tail of
        the entered text that could still grow into a secret began (len(pending): none)."""
        joined = "".join(piece.text for piece in self._entered).casefold()
        for cut in range(len(joined)):
            tail = joined[cut:]
            if any(secret.startswith(tail) for secret in self._secrets):
                offset = 0
                for piece in self._entered:
                    offset += len(piece.text)
                    if offset > cut:
                        return piece.step
        return len(self._pending)

    def _flush(self, keep_from: int) -> None:
        """Write the pending steps before `keep_from` (redacting replayed secret steps)."""
        later = self.redactor.with_values(self._replayed) if self._replayed else None
        for clean in self._pending[:keep_from]:
            if later is not None:
                before = clean
                clean = later.data(clean)
                if clean["output"] != before["output"]:
                    _drop_tokens(clean["output"])
            self.inner.step(StepRecord.model_validate(clean))
        self._pending = self._pending[keep_from:]
        # text entered in steps already written can no longer be part of a secret to come
        # (`_live_start` kept the longest tail that still can)
        self._entered = [_Entered(p.step - keep_from, p.action, p.text)
                         for p in self._entered if p.step >= keep_from]

    def _redact(self, record: Any) -> Any:
        redactor = self.redactor.with_values(self._replayed) if self._replayed else self.redactor
        return type(record).model_validate(redactor.data(record.model_dump(mode="json")))


def _drop_tokens(output: dict[str, Any]) -> None:
    """Token ids and logprobs would decode to the redacted text."""
    for name in ("prompt_token_ids", "response_token_ids", "response_logprobs"):
        output[name] = None


class RedactingRunWriter(WrappedRunWriter):
    """A RunWriter whose episode recorders redact (everything else is the wrapped one's)."""

    def __init__(self, inner: Any, redactor: Redactor) -> None:
        super().__init__(inner, lambda recorder: RedactingRecorder(recorder, redactor))
        self.redactor = redactor


def apply_safety(
    rules: SafetyRules,
    writer: Any,
    make_environment: Callable[[], Environment],
    make_expert: Callable[[Environment], Policy] | None,
) -> tuple[Any, Callable[[], Environment], Callable[[Environment], Policy] | None]:
    """(writer, environment factory, expert factory) with the rules installed: a
    redacting writer when secrets are configured, refusing environments when actions
    are restricted. Raises SecretMissing before anything runs if a secret env var is unset."""
    if rules.redacts:
        writer = RedactingRunWriter(writer, Redactor.from_rules(rules))
    if rules.restricts_actions:
        make_environment = SafeEnvironmentFactory(make_environment, rules)
        if make_expert is not None:
            make_expert = UnwrappingExpertFactory(make_expert)
    return writer, make_environment, make_expert


def rules_from_cli(
    *,
    safety: bool = False,
    refuse_action: list[str] | None = None,
    allow_domain: list[str] | None = None,
    allow_password_typing: bool = False,
    allow_app: list[str] | None = None,
    secret_env: list[str] | None = None,
    redact_pattern: list[str] | None = None,
) -> SafetyRules | None:
    """The SafetyRules the CLI flags ask for; None when no safety flag was given."""
    if not (safety or refuse_action or allow_domain or allow_app or secret_env
            or redact_pattern):
        return None
    from actions.models import ACTION_TYPES

    known = {model.model_fields["type"].default for model in ACTION_TYPES}
    unknown = sorted(set(refuse_action or []) - known)
    if unknown:
        raise ValueError(f"unknown action type(s) {unknown} for --refuse-action; "
                         f"known: {sorted(known)}")
    return SafetyRules(refused_actions=list(refuse_action or []),
                       allowed_domains=list(allow_domain) if allow_domain else None,
                       allow_password_typing=allow_password_typing,
                       allowed_apps=list(allow_app) if allow_app else None,
                       secret_env=list(secret_env or []),
                       secret_patterns=list(redact_pattern or []))


__all__ = [
    "REFUSAL_PREFIX", "RedactingRecorder", "RedactingRunWriter", "Redactor",
    "SafeEnvironment", "SafeEnvironmentFactory", "SafetyRules", "SecretMissing",
    "UnwrappingExpertFactory", "apply_safety", "entered_text", "enters_text",
    "focused_element", "is_paste", "is_password_field",
    "rules_from_cli",
]
