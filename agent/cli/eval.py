"""`cua eval SUITE`: evaluate a policy on a task suite into a run directory (resumable)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from agent.cli.app import app
from agent.cli.options import (  # noqa: F401 - the shared helpers, importable from here too
    MODEL_HELP,
    POLICY_HELP,
    AllowPasswordTypingOption,
    RedactPatternOption,
    RefuseActionOption,
    SecretEnvOption,
    default_out,
    fail,
    parse_key_values,
    policy_options_from,
    prompt_profile_help,
    validation_message,
)
from agent.config import (
    ConfigFileError,
    EngineConfig,
    Limits,
    OutputConfig,
    PolicyOptions,
    RunConfig,
    load_run_config,
)
from agent.engine.ray_host import RayUnavailable
from agent.engine.workers import WorkerError
from agent.runner import RunAborted, print_summary, run_suite
from benchmarks.base import SuiteUnavailable, get_suite, suite_names
from policies.registry import PolicyUnavailable
from trajectories.store import NotARunDirectory, RunConfigMismatch

# `cua eval` flags that may stand beside --config (the rest are refused: put them in the file).
CONFIG_COMPANIONS = {"config_file": "--config", "suite": "SUITE", "out": "--out",
                     "retry_errors": "--retry-errors", "list_tasks": "--list"}


@app.command("eval")
def eval_command(
    ctx: typer.Context,
    suite: Annotated[str | None, typer.Argument(
        help=f"Task suite: {', '.join(suite_names())}; grounding: screenspot, "
        "screenspot-v2, screenspot-pro, osworld-g (with --data). Optional with --config.",
        show_default=False)] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Run the RunConfig in this JSON file (or a run directory's "
        "manifest.json). Beside it only --out, --retry-errors and --list may be given; "
        "every other setting lives in the file (docs/running.md, 'Run configs').")] = None,
    policy: Annotated[str, typer.Option("--policy", "-p", help=POLICY_HELP)] = "oracle",
    tasks: Annotated[str, typer.Option("--tasks", "-t",
                                       help="Comma-separated task ids, or 'all'.")] = "all",
    episodes: Annotated[int, typer.Option(
        "--episodes", "-n", min=1, help="Episodes per task (seeds SEED, SEED+1, ...).")] = 1,
    seed: Annotated[int, typer.Option("--seed", "-s", help="First seed.")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run directory; an existing one is resumed "
        "(default: runs/<suite>-<policy>-<time>).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", min=1, help="Step budget per episode (default: the task's).")] = None,
    time_limit: Annotated[float | None, typer.Option(
        "--time-limit", min=0.001,
        help="Wall-clock seconds per episode (default: the task's).")] = None,
    samples: Annotated[int, typer.Option(
        "--samples", min=1, help="Rollouts per (task, seed), e.g. a GRPO group size.")] = 1,
    num_envs: Annotated[int, typer.Option(
        "--num-envs", min=1, help="Environments run at once in this process (a thread "
        "each); every episode runs at its own pace, a local model batches the steps that "
        "wait for it (docs/rollouts.md).")] = 1,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    base_url: Annotated[str | None, typer.Option("--base-url",
                                                 help="Server URL (openai).")] = None,
    dialect: Annotated[str | None, typer.Option(
        "--dialect", help="Coordinate dialect: qwen3, qwen3_999, qwen25, normalized "
        "(default: the policy's).")] = None,
    policy_option: Annotated[list[str] | None, typer.Option(
        "--policy-option", help="Extra policy option KEY=VALUE (repeatable).")] = None,
    prompt_profile: Annotated[str | None, typer.Option(
        "--prompt-profile", help=prompt_profile_help())] = None,
    env_option: Annotated[list[str] | None, typer.Option(
        "--env-option", help="Environment option KEY=VALUE (repeatable).")] = None,
    suite_option: Annotated[list[str] | None, typer.Option(
        "--suite-option", help="Suite option KEY=VALUE (repeatable).")] = None,
    max_parse_failures: Annotated[int, typer.Option(
        "--max-parse-failures", min=1,
        help="Consecutive unparsable outputs that end an episode.")] = 3,
    success_threshold: Annotated[float | None, typer.Option(
        "--success-threshold", help="Reward counted as success (default: the suite's, else 1.0).")] = None,
    retry_errors: Annotated[bool, typer.Option(
        "--retry-errors", help="On resume, run errored episodes again.")] = False,
    max_consecutive_errors: Annotated[int, typer.Option(
        "--max-consecutive-errors", min=0, help="Stop the run after this many errored "
        "episodes in a row (0: never).")] = 10,
    osworld_dir: Annotated[Path | None, typer.Option(
        "--osworld-dir", help="osworld: an OSWorld checkout (its evaluation_examples/).")] = None,
    provider: Annotated[str | None, typer.Option(
        "--provider", help="osworld: the VM provider (docker, vmware, virtualbox, aws, ...)."
    )] = None,
    protocol: Annotated[str, typer.Option(
        "--protocol", help="osworld: 'official' waits as OSWorld's runner (60 s after "
        "reset, 20 s before evaluating; comparable with published tables), 'fast' "
        "settles instead.")] = "official",
    list_tasks: Annotated[bool, typer.Option(
        "--list", help="List the suite's tasks and exit.")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=0, help="Run environments in N worker processes (Ray "
        "actors with --backend ray, leases of a `cua serve-env` service with --backend "
        "remote); a crashed worker is restarted. The policy stays in this process. "
        "0: environments in this process.")] = 0,
    backend: Annotated[str, typer.Option(
        "--backend", help="Where workers run: 'process' (this machine), 'ray' (a Ray "
        "cluster: RAY_ADDRESS or --ray-address; else a local one) or 'remote' (an "
        "environment service: --backend-option url=..., token in CUA_ENV_TOKEN)."
    )] = "process",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Ray cluster to join, e.g. 'auto' or ray://head:10001 "
        "(default: RAY_ADDRESS, else start a local Ray).")] = None,
    backend_option: Annotated[list[str] | None, typer.Option(
        "--backend-option", help="Engine option KEY=VALUE (repeatable): "
        "policy_calls=batched|concurrent|serial, batch_wait_s, max_batch, max_concurrency; "
        "workers: call_timeout_s, start_timeout_s; ray: actor_options='{\"num_cpus\": 1}', "
        "shared_storage=true; remote: url, timeout_s, lease_wait_s.")] = None,
    safety: Annotated[bool, typer.Option(
        "--safety", help="Turn on the action-policy layer (implied by the options below): "
        "typing into password fields is refused unless --allow-password-typing.")] = False,
    allow_domain: Annotated[list[str] | None, typer.Option(
        "--allow-domain", help="Safety: `navigate` only to these hosts (repeatable).")] = None,
    allow_app: Annotated[list[str] | None, typer.Option(
        "--allow-app", help="Safety: `open_app` only for these apps (repeatable).")] = None,
    refuse_action: RefuseActionOption = None,
    allow_password_typing: AllowPasswordTypingOption = False,
    secret_env: SecretEnvOption = None,
    redact_pattern: RedactPatternOption = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Grounding benchmarks: the downloaded benchmark's folder.")] = None,
    grounding_profile: Annotated[str | None, typer.Option(
        "--grounding-profile", help="Grounding benchmarks: the published prompt setup, "
        "qwen3vl-report (the Qwen3-VL report's, it can refuse), qwen3vl (ScreenSpot-Pro's "
        "author's) or qwen2_5vl (default: qwen3vl-report, qwen2_5vl for Qwen2.5-VL).")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Grounding benchmarks: samples per policy call "
        "(one batched generate in-process; concurrent requests for a server).")] = 8,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Grounding benchmarks: only the first N samples.")] = None,
    record_click_targets: Annotated[bool, typer.Option(
        "--record-click-targets", help="Web suites: record the element each click hits, so "
        "`cua export grounding RUN` can turn the clicks into grounding samples.")] = False,
) -> None:
    """Evaluate a policy on a suite: a progress bar, then a per-task results table.

    Every episode is recorded under OUT (manifest.json, results.jsonl, episodes/,
    screenshots/). Pointing --out at an existing run resumes it: finished episodes are
    skipped, the rest run. The run's settings are one RunConfig, stored in the manifest;
    `cua eval --config FILE` runs one from a file.
    """
    console = Console()
    from agent.cli.grounding import GROUNDING_SUITES

    if config_file is not None:
        config = _config_from_file(ctx, console, config_file, suite, out, retry_errors)
    elif suite is None:
        raise fail(console, "name a SUITE, or give --config FILE")
    elif suite in GROUNDING_SUITES:
        _eval_grounding(suite, console, data=data, policy=policy, out=out,
                        policy_options=policy_options_from(model, base_url, dialect,
                                                           policy_option),
                        suite_options=parse_key_values(suite_option, "--suite-option"),
                        profile=grounding_profile, batch_size=batch_size, limit=limit,
                        seed=seed)
        return
    else:
        config = _config_from_flags(
            console, suite=suite, policy=policy, tasks=tasks, episodes=episodes, seed=seed,
            out=out, max_steps=max_steps, time_limit=time_limit, samples=samples,
            num_envs=num_envs, model=model, base_url=base_url, dialect=dialect,
            policy_option=policy_option, prompt_profile=prompt_profile, env_option=env_option,
            suite_option=suite_option, max_parse_failures=max_parse_failures,
            success_threshold=success_threshold, retry_errors=retry_errors,
            max_consecutive_errors=max_consecutive_errors, osworld_dir=osworld_dir,
            provider=provider, protocol=protocol, workers=workers, backend=backend,
            ray_address=ray_address, backend_option=backend_option, safety=safety,
            allow_domain=allow_domain, allow_app=allow_app, refuse_action=refuse_action,
            allow_password_typing=allow_password_typing, secret_env=secret_env,
            redact_pattern=redact_pattern, record_click_targets=record_click_targets)
    try:
        suite_obj = get_suite(config.suite, **config.suite_options)
    except KeyError as exc:
        raise fail(console, str(exc.args[0])) from None
    except SuiteUnavailable as exc:
        raise fail(console, str(exc)) from None
    if list_tasks:
        for task_id in suite_obj.list_tasks():
            console.print(task_id, highlight=False)
        return
    out_dir = config.output.out_dir
    assert out_dir is not None
    try:
        summary = run_suite(config, suite=suite_obj, invocation={"argv": sys.argv},
                            console=console)
    except (RunConfigMismatch, NotARunDirectory, SuiteUnavailable, PolicyUnavailable) as exc:
        raise fail(console, str(exc)) from None
    except KeyError as exc:
        raise fail(console, str(exc.args[0])) from None
    except RunAborted as exc:
        raise fail(console, str(exc), code=1) from None
    except (WorkerError, RayUnavailable, ValueError) as exc:  # workers could not start
        raise fail(console, str(exc), code=1) from None
    except OSError as exc:
        raise fail(console, f"cannot write the run directory {out_dir}: {exc}", code=1) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/yellow]: finished episodes are in {out_dir}; "
                      "run the same command again to resume")
        raise typer.Exit(130) from None
    print_summary(summary, console)
    if suite_obj.name in ("desktop", "osworld"):  # OSWorld-format tasks: per-domain table too
        from agent.cli.osworld import print_domains

        print_domains(out_dir, console)


def _config_from_flags(console: Console, *, suite: str, policy: str, tasks: str, episodes: int,
                       seed: int, out: Path | None, max_steps: int | None,
                       time_limit: float | None, samples: int, num_envs: int,
                       model: str | None, base_url: str | None, dialect: str | None,
                       policy_option: list[str] | None, prompt_profile: str | None,
                       env_option: list[str] | None, suite_option: list[str] | None,
                       max_parse_failures: int, success_threshold: float | None,
                       retry_errors: bool, max_consecutive_errors: int,
                       osworld_dir: Path | None, provider: str | None, protocol: str,
                       workers: int, backend: str, ray_address: str | None,
                       backend_option: list[str] | None, safety: bool,
                       allow_domain: list[str] | None, allow_app: list[str] | None,
                       refuse_action: list[str] | None, allow_password_typing: bool,
                       secret_env: list[str] | None, redact_pattern: list[str] | None,
                       record_click_targets: bool) -> RunConfig:
    """The RunConfig `cua eval SUITE` flags describe (typer.Exit with a message if bad)."""
    from agent.safety import rules_from_cli
    from policies.profiles import default_profile_for_suite
    from policies.registry import EXPERT_POLICY_NAMES

    try:
        suite_opts = parse_key_values(suite_option, "--suite-option")
        if osworld_dir is not None:
            suite_opts["osworld_dir"] = str(osworld_dir)
        if provider is not None:
            suite_opts["provider"] = provider
        if suite == "osworld":
            from agent.cli.osworld import osworld_suite_options

            suite_opts.update(osworld_suite_options(
                out or default_out(f"{suite}-{policy}"), protocol, model, policy))
        out_dir = Path(suite_opts["result_dir"]).parent if suite == "osworld" else (
            out or default_out(f"{suite}-{policy}"))
        rules = rules_from_cli(safety=safety, refuse_action=refuse_action,
                               allow_domain=allow_domain,
                               allow_password_typing=allow_password_typing, allow_app=allow_app,
                               secret_env=secret_env, redact_pattern=redact_pattern)
        worker_options = parse_key_values(backend_option, "--backend-option")
        if ray_address:
            worker_options["address"] = ray_address
        policy_options = policy_options_from(
            model, base_url, dialect, policy_option, prompt_profile,
            None if policy in EXPERT_POLICY_NAMES else default_profile_for_suite(suite))
        return RunConfig(
            suite=suite, suite_options=suite_opts, tasks=tasks, episodes_per_task=episodes,
            seed=seed, samples_per_seed=samples, policy=policy,
            policy_options=PolicyOptions(**policy_options),
            env_options=parse_key_values(env_option, "--env-option"),
            record_click_targets=record_click_targets,
            limits=Limits(max_steps=max_steps, time_limit_s=time_limit,
                          max_parse_failures=max_parse_failures,
                          success_threshold=success_threshold),
            safety=rules,
            engine=EngineConfig(num_envs=num_envs, workers=workers, backend=backend,
                                options=worker_options,
                                max_consecutive_errors=max_consecutive_errors,
                                # OSWorld's runner reruns every example without
                                # result.txt on each invocation (get_unfinished)
                                retry_errors=retry_errors or (
                                    suite == "osworld" and protocol == "official")),
            output=OutputConfig(out_dir=out_dir))
    except typer.BadParameter as exc:
        raise fail(console, exc.message) from None
    except ValidationError as exc:
        raise fail(console, validation_message(exc)) from None
    except (ValueError, SuiteUnavailable) as exc:
        raise fail(console, str(exc)) from None


def _config_from_file(ctx: typer.Context, console: Console, path: Path, suite: str | None,
                      out: Path | None, retry_errors: bool) -> RunConfig:
    """The RunConfig in `path`, with --out / --retry-errors applied. Any other flag given
    on the command line is refused: a run has one description, the file."""
    def given_on_command_line(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        # by name: typer may bring its own copy of click's ParameterSource enum
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")

    given = [f"--{name.replace('_', '-')}" for name in ctx.params
             if name not in CONFIG_COMPANIONS and given_on_command_line(name)]
    if given:
        raise fail(console, f"{', '.join(given)} given beside --config: put the setting in "
                   f"{path} (or drop --config); only --out, --retry-errors and --list may "
                   "stand beside it")
    try:
        config = load_run_config(path)
    except ConfigFileError as exc:
        raise fail(console, str(exc)) from None
    if suite is not None and suite != config.suite:
        raise fail(console, f"SUITE {suite!r} differs from the config's suite "
                   f"{config.suite!r}; drop SUITE or fix {path}")
    changes: dict[str, Any] = {}
    if out is not None:
        changes["output.out_dir"] = out
        if config.suite == "osworld" and "result_dir" in config.suite_options:
            changes["suite_options"] = {**config.suite_options,
                                        "result_dir": str(out / "osworld")}
    elif config.output.out_dir is None:
        changes["output.out_dir"] = default_out(f"{config.suite}-{config.policy}")
    if retry_errors:
        changes["engine.retry_errors"] = True
    try:
        return config.updated(**changes) if changes else config
    except ValidationError as exc:
        raise fail(console, validation_message(exc)) from None


def _eval_grounding(benchmark: str, console: Console, *, out: Path | None, **options: Any) -> None:
    """`cua eval` for a grounding benchmark (agent/cli/grounding.py)."""
    from agent.cli.grounding import GroundingCommandError, eval_grounding
    from benchmarks.grounding.data import GroundingDataError

    out_dir = out or default_out(f"{benchmark}-{options['policy']}")
    try:
        eval_grounding(benchmark, out_dir=out_dir, invocation={"argv": sys.argv},
                       console=console, **options)
    except (GroundingCommandError, GroundingDataError, RunConfigMismatch, NotARunDirectory,
            PolicyUnavailable) as exc:
        raise fail(console, str(exc)) from None
    except KeyError as exc:
        raise fail(console, str(exc.args[0])) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/yellow]: finished samples are in {out_dir}; "
                      "run the same command again to resume")
        raise typer.Exit(130) from None
