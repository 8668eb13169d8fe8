"""What the `cua` commands share: option types and help texts, KEY=VALUE parsing, the
policy options a command line describes, error exits and default run directories.

The commands import this module; it imports none of them (no import circle between
commands: `cua eval` hands grounding and osworld suites to their modules, which take
their helpers from here).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

# Options shared by `cua eval`, `cua run` and `cua demo`.
POLICY_HELP = ("Policy: 'oracle' (the suite's scripted expert) or a model policy name, "
               "e.g. 'qwen3vl' (local transformers) or 'openai' (OpenAI-compatible server).")
MODEL_HELP = "Model checkpoint folder or hub id (qwen3vl), or served model name (openai)."


# Safety options shared by `cua eval` and `cua run`.
RefuseActionOption = Annotated[list[str] | None, typer.Option(
    "--refuse-action", help="Safety: never execute this action type (repeatable).")]
AllowPasswordTypingOption = Annotated[bool, typer.Option(
    "--allow-password-typing", help="Safety: permit typing into password fields.")]
SecretEnvOption = Annotated[list[str] | None, typer.Option(
    "--secret-env", help="Redact the value of this environment variable from every "
    "record (repeatable).")]
RedactPatternOption = Annotated[list[str] | None, typer.Option(
    "--redact-pattern", help="Redact matches of this regular expression from every "
    "record (repeatable).")]


def parse_key_values(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """Turn ["k=v", ...] into a dict; values are JSON when they parse (5, true, [1,2]),
    else strings."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{what} must look like KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def policy_options_from(model: str | None, base_url: str | None, dialect: str | None,
                        extra: list[str] | None, prompt_profile: str | None = None,
                        default_profile: str | None = None) -> dict[str, Any]:
    """The keyword options passed to policies.registry.make_policy (only those given).

    prompt_profile: --prompt-profile; default_profile: the suite's profile, used when
    neither --prompt-profile nor --policy-option prompt_profile= names one. Raises
    typer.BadParameter for an unknown profile name."""
    from policies.profiles import UnknownProfile, get_profile

    options = {k: v for k, v in {"model": model, "base_url": base_url, "dialect": dialect,
                                 "prompt_profile": prompt_profile}.items() if v is not None}
    options.update(parse_key_values(extra, "--policy-option"))
    if default_profile is not None:
        options.setdefault("prompt_profile", default_profile)
    if "prompt_profile" in options:
        try:
            options["prompt_profile"] = get_profile(str(options["prompt_profile"])).name
        except UnknownProfile as exc:
            raise typer.BadParameter(str(exc), param_hint="--prompt-profile") from None
    # A named sampling preset is expanded here, so the manifest records the values sent.
    from policies.prompting import UnknownSamplingPreset, apply_sampling_preset

    try:
        return apply_sampling_preset(options)
    except UnknownSamplingPreset as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy-option sampling_preset") from None


def prompt_profile_help() -> str:
    from policies.profiles import PROFILES

    return ("Prompt profile (what the model is shown): " + ", ".join(PROFILES)
            + ". Default: the suite's (osworld: osworld-qwen3vl; android, androidworld: "
            "qwen3-mobile; web, desktop, miniwob: qwen3-computer-use). See docs/profiles.md.")


def fail(console: Console, message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as lines of 'where: what'."""
    return "bad run settings:\n" + "\n".join(
        f"  {'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
        for error in exc.errors())
