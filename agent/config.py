"""RunConfig: one description of a run of a task suite.

The CLI builds it from flags (or reads it from a file: ``cua eval --config run.json``),
`agent.runner.run_suite(config)` runs it, the run directory's manifest.json stores its JSON
(``config``, with secret-looking policy options redacted), and resuming into a run directory
compares the stored config with the requested one (`RunConfig.identity`).

It lives beside the runner, not in `agent.engine`: the engine runs episodes on hosts and
knows nothing of suites or policies by name; the config names them, and the runner turns
the names into a suite, a policy and environment hosts.

Sections, and whether resuming requires them equal:

- ``suite`` / ``suite_options`` (compared), ``tasks`` / ``episodes_per_task`` / ``seed`` /
  ``samples_per_seed``: which episodes (not compared: a resumed run may grow);
- ``policy`` / ``policy_options`` (compared): the model, its server, coordinate dialect,
  prompt profile, sampling and any other option the policy's factory takes;
- ``env_options`` / ``record_click_targets`` (compared): what the environments are given;
- ``limits`` (compared): step and time budgets, parse failures, the success threshold;
- ``safety`` (compared): the action-policy layer's rules (no secret values);
- ``engine`` (not compared): where environments run and how errors stop the run;
- ``output`` (not compared): the run directory and how records are flushed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.safety import SafetyRules

CONFIG_VERSION = 1
"""The version of RunConfig's JSON layout; bumped when a field changes meaning."""

SAMPLING_KEYS = ("greedy", "temperature", "top_p", "top_k", "repetition_penalty",
                 "presence_penalty", "seed")
"""Policy options that are sampling settings (policies.prompting.SamplingParams' fields)."""

RESUME_KEYS = ("version", "suite", "suite_options", "policy", "policy_options", "env_options",
               "record_click_targets", "limits", "safety")
"""The top-level config keys that must be equal to resume a run: what an episode means."""

_SECRET_OPTION = re.compile(r"(key|token|secret|password)", re.IGNORECASE)


class ConfigFileError(ValueError):
    """A config file that cannot be read or does not describe a run."""


# Free-form option sections whose secret-looking keys the manifest redacts too.
_REDACTED_SECTIONS = ("suite_options", "env_options")


def redact_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as stored in the manifest: values of secret-looking keys replaced."""
    return {k: ("<redacted>" if _SECRET_OPTION.search(k) and v is not None else v)
            for k, v in options.items()}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyOptions(BaseModel):
    """What the policy's factory (policies.registry.make_policy) is given.

    The named fields are the ones every model policy takes; any other key (e.g.
    ``max_new_tokens``, ``history_images``, ``api_key_env``) is kept as given and passed
    through. Sampling keys given flat (``temperature=0``) are gathered into `sampling`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str | None = Field(None, description="Checkpoint folder or hub id (qwen3vl), or "
                              "served model name (openai).")
    base_url: str | None = Field(None, description="Server URL (openai).")
    dialect: str | None = Field(None, description="Coordinate dialect (default: the policy's).")
    prompt_profile: str | None = Field(None, description="What the model is shown "
                                       "(policies.profiles); None: the policy's default.")
    sampling: dict[str, Any] = Field(default_factory=dict, description=(
        "Sampling settings given explicitly (SamplingParams fields); the rest keep the "
        "policy's defaults."))

    @model_validator(mode="before")
    @classmethod
    def _gather_sampling(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k.replace("-", "_"): v for k, v in data.items()}
        sampling = dict(data.pop("sampling", None) or {})
        for key in SAMPLING_KEYS:
            if key in data:
                sampling[key] = data.pop(key)
        return {**data, "sampling": sampling}

    @field_validator("sampling")
    @classmethod
    def _known_sampling(cls, sampling: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {unknown}; known: "
                             f"{', '.join(SAMPLING_KEYS)}")
        return sampling

    def factory_options(self) -> dict[str, Any]:
        """Flat keyword options for make_policy (None values left out)."""
        flat = {"model": self.model, "base_url": self.base_url, "dialect": self.dialect,
                "prompt_profile": self.prompt_profile, **self.sampling,
                **(self.model_extra or {})}
        return {k: v for k, v in flat.items() if v is not None}

    def stored(self) -> dict[str, Any]:
        """As stored in the manifest: secret-looking values redacted, None left out."""
        data = self.model_dump(mode="json", exclude_none=True)
        sampling = data.pop("sampling", {})
        data = redact_options(data)
        if sampling:
            data["sampling"] = sampling
        return data


class Limits(_Section):
    """Budgets and the success rule of every episode (None: the task's own)."""

    max_steps: int | None = Field(None, ge=1, description="Steps per episode.")
    time_limit_s: float | None = Field(None, gt=0, description="Wall-clock seconds per episode.")
    max_parse_failures: int = Field(3, ge=1, description=(
        "Consecutive outputs without a valid action that end an episode."))
    success_threshold: float | None = Field(None, description=(
        "Reward counted as success (None: the task's, else 1.0)."))


class EngineConfig(_Section):
    """Where environments run and when the run stops (agent.engine; docs/rollouts.md)."""

    num_envs: int = Field(1, ge=1, description="Environments in this process (threads).")
    workers: int = Field(0, ge=0, description=(
        "Worker processes / Ray actors / service leases; 0: environments in this process."))
    backend: Literal["process", "ray", "remote"] = "process"
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "Backend options: policy_calls, batch_wait_s, max_batch, max_concurrency; workers: "
        "call_timeout_s, start_timeout_s; ray: address, actor_options, shared_storage, "
        "num_cpus; remote: url, timeout_s, lease_wait_s."))
    max_consecutive_errors: int = Field(10, ge=0, description=(
        "Errored episodes in a row that stop the run (0: never)."))
    retry_errors: bool = Field(False, description="On resume, run errored episodes again.")

    @model_validator(mode="after")
    def _one_kind_of_host(self) -> EngineConfig:
        if self.workers and self.num_envs > 1:
            raise ValueError("use either workers (environments in worker processes) or "
                             "num_envs (environments in this process), not both")
        return self


class OutputConfig(_Section):
    """Where the run is recorded."""

    out_dir: Path | None = Field(None, description=(
        "The run directory (an existing one is resumed); the CLI picks runs/<suite>-"
        "<policy>-<time> when None."))
    fsync: bool = Field(True, description="Flush records to disk after each append.")


class RunConfig(BaseModel):
    """One run of a task suite (see the module docstring for the sections)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = CONFIG_VERSION
    suite: str = Field(description="Task suite name (benchmarks.base.get_suite).")
    suite_options: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] | Literal["all"] = Field("all", description="Task ids, or 'all'.")
    episodes_per_task: int = Field(1, ge=1, description="Seeds seed .. seed+N-1 per task.")
    seed: int = Field(0, description="First seed.")
    samples_per_seed: int = Field(1, ge=1, description="Rollouts per (task, seed).")
    policy: str = Field("oracle", description=(
        "Model policy name (policies.registry), or 'oracle' / 'expert' for the suite's "
        "scripted expert."))
    policy_options: PolicyOptions = Field(default_factory=PolicyOptions)
    env_options: dict[str, Any] = Field(default_factory=dict, description=(
        "Keyword options of the suite's make_environment."))
    record_click_targets: bool = Field(False, description=(
        "Web suites: record the element each click hits (cua export grounding)."))
    limits: Limits = Field(default_factory=Limits)
    safety: SafetyRules | None = Field(None, description="The action-policy layer; None: off.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("tasks", mode="before")
    @classmethod
    def _split_tasks(cls, tasks: Any) -> Any:
        if isinstance(tasks, str) and tasks != "all":
            return [t.strip() for t in tasks.split(",") if t.strip()]
        if isinstance(tasks, tuple):
            return list(tasks)
        return tasks

    @field_validator("tasks")
    @classmethod
    def _some_tasks(cls, tasks: list[str] | str) -> list[str] | str:
        if not tasks:
            raise ValueError("no tasks given; name task ids, or 'all'")
        return tasks

    def stored(self) -> dict[str, Any]:
        """The JSON object the manifest stores (`config`): secret-looking policy, suite and
        environment options redacted (e.g. OSWorld's client_password), the safety rules
        without secret values."""
        data = self.model_dump(mode="json")  # secrets replaced below, before it goes anywhere
        data["policy_options"] = self.policy_options.stored()
        for section in _REDACTED_SECTIONS:
            data[section] = redact_options(data[section])
        data["safety"] = None if self.safety is None else self.safety.describe()
        return data

    def identity(self) -> dict[str, Any]:
        """The stored keys that resuming requires equal (RESUME_KEYS)."""
        stored = self.stored()
        return {k: stored[k] for k in RESUME_KEYS}

    def updated(self, **changes: Any) -> RunConfig:
        """A copy with top-level fields or dotted section fields replaced and validated,
        e.g. ``updated(seed=3, **{"engine.workers": 2})``."""
        data = self.model_dump(mode="python", exclude={"safety"})
        data["safety"] = self.safety
        for key, value in changes.items():
            section, _, field = key.partition(".")
            if field:
                inner = data[section]
                data[section] = {**(inner if isinstance(inner, dict) else {}), field: value}
            else:
                data[key] = value
        return RunConfig.model_validate(data)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a RunConfig from a JSON file: a config (`RunConfig.model_dump_json`) or a run
    directory's manifest.json (its ``config``; redacted values must be given again).
    Raises ConfigFileError with what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigFileError(f"cannot read the config file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"{path} is not JSON: {exc}") from None
    if isinstance(data, dict) and "config" in data and "format_version" in data:
        data = data["config"]  # a run's manifest.json
        if isinstance(data, dict) and isinstance(data.get("safety"), dict):
            data["safety"] = {k: v for k, v in data["safety"].items() if k != "explicit_secrets"}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} holds {type(data).__name__}, not a run config object")
    if data.get("version") != CONFIG_VERSION:
        raise ConfigFileError(
            f"{path}: config version {data.get('version')!r} is not {CONFIG_VERSION} (a "
            "manifest written by an earlier qwen-cua, or no \"version\" key); write the "
            "config again (docs/running.md, 'Run configs')")
    redacted = [f"{section}.{k}" for section in ("policy_options", *_REDACTED_SECTIONS)
                for k, v in (data.get(section) or {}).items() if v == "<redacted>"]
    if redacted:
        raise ConfigFileError(f"{path}: option(s) {redacted} were redacted when stored; "
                              "give them in the file, or through their environment variable")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
                 for error in exc.errors()]
        raise ConfigFileError(f"{path} is not a valid run config:\n" + "\n".join(lines)) from None


__all__ = [
    "CONFIG_VERSION", "ConfigFileError", "EngineConfig", "Limits", "OutputConfig",
    "PolicyOptions", "RESUME_KEYS", "RunConfig", "SAMPLING_KEYS", "load_run_config",
    "redact_options",
]
