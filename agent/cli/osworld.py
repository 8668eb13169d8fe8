"""`cua osworld run|report`: official OSWorld tasks with our policy and trajectory format.

`cua osworld run --osworld-dir PATH --provider docker ...` is `cua eval osworld` with
OSWorld's own options spelled out; it checks first that the OSWorld package, the task
files and the VM provider exist, and fails fast otherwise. `--protocol official` (the
default) waits as OSWorld's lib_run_single.py does, `--protocol fast` settles instead.
Beside our record, RUN_DIR/osworld/ holds OSWorld's own result layout.

`cua osworld report PATH` prints the per-domain table comparable with OSWorld's published
results, for a qwen-cua run directory (osworld or desktop suite) or an OSWorld result tree
(what OSWorld's show_result.py reads); crashed episodes are counted apart and left out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from agent.cli.app import app
from agent.cli.options import (
    MODEL_HELP,
    default_out,
    fail,
    parse_key_values,
    policy_options_from,
    validation_message,
)
from agent.config import EngineConfig, Limits, OutputConfig, PolicyOptions, RunConfig
from agent.runner import RunAborted, print_summary, run_suite
from benchmarks.osworld import (
    DEFAULT_REGION,
    DEFAULT_TEST_FILE,
    PROTOCOLS,
    VM_PROVIDERS,
    OSWorldSuite,
    OSWorldUnavailable,
    check_available,
)
from benchmarks.osworld_actions import ACTION_SPACES
from benchmarks.osworld_report import MultipleRuns, domain_summary, run_protocol, run_rows
from trajectories.store import NotARunDirectory, RunConfigMismatch

osworld_app = typer.Typer(help="Run official OSWorld tasks; per-domain result tables.",
                          no_args_is_help=True)
app.add_typer(osworld_app, name="osworld")


PROTOCOL_HELP = ("official: OSWorld's waits (60 s after reset, 20 s before evaluating), "
                 "comparable with published tables; fast: settle detection instead.")


def osworld_suite_options(out_dir: Path, protocol: str, model: str | None,
                          policy: str) -> dict[str, str]:
    """Suite options that make an osworld run write OSWorld's result layout in
    OUT/osworld under the model's name, under `protocol`."""
    if protocol not in PROTOCOLS:
        raise OSWorldUnavailable(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    model_name = Path(model.rstrip("/")).name if model else policy
    return {"protocol": protocol, "result_dir": str(out_dir / "osworld"),
            "model_name": model_name}


def print_domains(run_dir: Path, console: Console) -> None:
    protocol = run_protocol(run_dir)
    title = f"Per-domain results ({run_dir})"
    if protocol:
        title += f", protocol {protocol}"
    table = Table(title=title)
    for column in ("domain", "episodes", "crashed", "score % (OSWorld)", "full success %"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for row in domain_summary(run_dir):
        table.add_row(row.domain, str(row.episodes), str(row.crashed),
                      f"{row.success_rate_pct:.2f}", f"{row.full_success_pct:.2f}")
    console.print(table)
    console.print("score % = mean score x 100 (OSWorld's show_result.py 'Success Rate'); "
                  "full success % = episodes scoring 1.0; crashed episodes are left out of "
                  "both (rerun them with --retry-errors)", highlight=False)


@osworld_app.command("run")
def osworld_run(
    osworld_dir: Annotated[Path, typer.Option("--osworld-dir", help="An OSWorld checkout.")],
    provider: Annotated[str, typer.Option(
        "--provider", help=f"VM provider: {', '.join(VM_PROVIDERS)}.")] = "docker",
    policy: Annotated[str, typer.Option("--policy", "-p", help="Model policy name.")] = "qwen3vl",
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Server URL (openai).")] = None,
    domain: Annotated[str, typer.Option("--domain", help="One domain, or 'all'.")] = "all",
    tasks: Annotated[str, typer.Option("--tasks", "-t",
                                       help="Comma-separated <domain>/<id>, or 'all'.")] = "all",
    action_space: Annotated[str, typer.Option(
        "--action-space", help=f"OSWorld action space: {', '.join(ACTION_SPACES)}.")] = "pyautogui",
    path_to_vm: Annotated[str | None, typer.Option("--path-to-vm", help="VM image (.vmx, ...).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1)] = 15,
    protocol: Annotated[str, typer.Option("--protocol", help=PROTOCOL_HELP)] = "official",
    test_file: Annotated[str, typer.Option(
        "--test-file", help="The task list, relative to --osworld-dir (the Qwen3-VL runner's "
        "default: the 361 tasks without Google Drive).")] = DEFAULT_TEST_FILE,
    region: Annotated[str, typer.Option(
        "--region", help="Cloud region (aws: picks the OSWorld AMI).")] = DEFAULT_REGION,
    snapshot: Annotated[str | None, typer.Option(
        "--snapshot", help="Snapshot to revert to (default: init_state; on aws the OSWorld "
        "AMI of --region for the screen size).")] = None,
    proxy: Annotated[bool, typer.Option(
        "--proxy/--no-proxy", help="Enable the proxy for tasks marked \"proxy\": true, as "
        "the Qwen3-VL runner does.")] = True,
    client_password: Annotated[str, typer.Option(
        "--client-password", help="The VM user's password (default: OSWorld's per provider).")] = "",
    retry_errors: Annotated[bool, typer.Option(
        "--retry-errors", help="On resume, run crashed episodes again (always under "
        "--protocol official: OSWorld's runner reruns every example without result.txt).")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (resumed).")] = None,
    policy_option: Annotated[list[str] | None, typer.Option(
        "--policy-option", help="Extra policy option KEY=VALUE (repeatable).")] = None,
) -> None:
    """Run OSWorld tasks through its DesktopEnv with our policy; records + domain table."""
    console = Console()
    out_dir = out or default_out(f"osworld-{policy}")
    try:
        result_options = osworld_suite_options(out_dir, protocol, model, policy)
        check_available(provider, osworld_dir, test_file)
        suite = OSWorldSuite(osworld_dir=osworld_dir, provider=provider, domain=domain,
                             max_steps=max_steps, test_file=test_file, **result_options)
    except OSWorldUnavailable as exc:
        raise fail(console, str(exc)) from None
    env_options: dict[str, object] = {
        "provider": provider, "action_space": action_space, "region": region,
        "enable_proxy": proxy, "client_password": client_password}
    if snapshot:
        env_options["snapshot_name"] = snapshot
    if path_to_vm:
        env_options["path_to_vm"] = path_to_vm
    if protocol == "official":
        # run_multienv_qwen3vl.py's get_unfinished: every example without result.txt
        # (ours: every episode that ended in an error) runs again on each invocation.
        retry_errors = True
    try:
        config = RunConfig(
            suite=suite.name, suite_options={"osworld_dir": str(osworld_dir),
                                             "provider": provider, "domain": domain,
                                             "test_file": test_file, **result_options},
            tasks=tasks, policy=policy,
            policy_options=PolicyOptions(**policy_options_from(model, base_url, None,
                                                               policy_option)),
            env_options=env_options, limits=Limits(max_steps=max_steps),
            engine=EngineConfig(retry_errors=retry_errors), output=OutputConfig(out_dir=out_dir))
        summary = run_suite(config, suite=suite, invocation={"argv": sys.argv}, console=console)
    except ValidationError as exc:
        raise fail(console, validation_message(exc)) from None
    except (RunConfigMismatch, NotARunDirectory, KeyError, OSWorldUnavailable) as exc:
        raise fail(console, str(exc)) from None
    except RunAborted as exc:
        raise fail(console, str(exc), code=1) from None
    print_summary(summary, console)
    print_domains(out_dir, console)


@osworld_app.command("report")
def osworld_report(
    run_dir: Annotated[Path, typer.Argument(
        help="A run directory (osworld or desktop suite), or an OSWorld result tree.")],
) -> None:
    """Print the per-domain table of a run (written to RUN_DIR/domains.json) or of an
    OSWorld result tree (OSWorld's results/<action_space>/<observation>/<model>/...)."""
    console = Console()
    try:
        print_domains(run_dir, console)
    except NotARunDirectory as exc:
        raise fail(console, str(exc)) from None
    except MultipleRuns as exc:
        print_runs(exc, console)


def print_runs(runs: MultipleRuns, console: Console) -> None:
    """One row per run of an OSWorld result tree, never a merged figure."""
    table = Table(title=f"Runs in {runs.root} (one row each; not merged)")
    for column in ("action_space/observation/model", "episodes", "crashed",
                   "score % (OSWorld)", "full success %"):
        table.add_column(column, justify="left" if column.startswith("action") else "right")
    for name, row in run_rows(runs.root).items():
        table.add_row(name, str(row.episodes), str(row.crashed),
                      f"{row.success_rate_pct:.2f}", f"{row.full_success_pct:.2f}")
    console.print(table)
    console.print("For a run's per-domain table: cua osworld report ROOT/<action_space>/"
                  "<observation>/<model>", highlight=False)


__all__ = ["osworld_app", "parse_key_values"]
