"""`cua run`: one task, described on the command line, on a web page, an Android device or
the desktop, with a live step stream, an optional check, and optionally a human in the loop.

The environments are the ones the suites use; what `cua run` adds is wrapped around them
(agent.freeform for the check, agent.human for confirmation and Ctrl-C pauses) or
around the recorder (agent.step_stream for the live stream), never added to the loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from actions.contracts import Task
from actions.observation import Size
from agent.cli.app import app
from agent.cli.options import (
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
    validation_message,
)
from agent.config import Limits, PolicyOptions
from agent.engine.episode import LoopOptions
from agent.freeform import ShellCheck, is_verified, outcome_of
from agent.runner import PlannedEpisode, RunAborted, execute_run
from agent.step_stream import StepStream, StreamingRunWriter
from policies.registry import EXPERT_POLICY_NAMES, PolicyUnavailable
from trajectories.store import NotARunDirectory, RunConfigMismatch, RunWriter

ENVIRONMENTS = ("web", "android", "desktop")

# The platform each environment's policy prompt is built for (tool schema: computer_use
# for web and desktop, mobile_use for Android), as the suites set it.
PLATFORM_OF_ENV = {"web": "web", "android": "mobile", "desktop": "desktop"}


def default_policy_options(env: str, options: dict[str, Any]) -> dict[str, Any]:
    """Policy options with the platform's defaults filled in; the one place where a
    platform's default prompt profile is chosen (policies.profiles.default_profile_for_suite:
    web/desktop -> qwen3-computer-use, android -> qwen3-mobile). Options given by the user
    win."""
    from policies.profiles import default_profile_for_suite

    return {"prompt_profile": default_profile_for_suite(env), **options}


def _parse_size(text: str) -> Size:
    width, sep, height = text.lower().partition("x")
    try:
        return Size(width=int(width), height=int(height))
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT in pixels, e.g. 1280x720; got "
                                 f"{text!r}") from None


# ----------------------------------------------------------------- environment factories


def _web_factory(options: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    from environments.web import WebConfig, WebEnvironment

    config = WebConfig(**options)  # validates now: bad options fail before the run starts
    return (lambda: WebEnvironment(config)), config.model_dump(mode="json")


def _android_factory(options: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    from agent.freeform import FreeFormAndroid
    from environments.android import AndroidConfig, AndroidEnvironment

    options = dict(options)
    virtual = bool(options.pop("virtual", False))
    if virtual and options.get("serial"):
        raise ValueError("give either --serial (a device adb lists) or --env-option "
                         "virtual=true (start the virtual phone), not both")
    base = AndroidConfig(**options)  # validates the options now
    described = {**base.model_dump(mode="json"), "virtual": virtual}

    def make() -> FreeFormAndroid:
        process = None
        config = base
        if virtual:
            from benchmarks.android.virtual_device import VirtualDeviceProcess

            process = VirtualDeviceProcess()
            config = base.model_copy(update={"serial": process.address})
        try:
            return FreeFormAndroid(AndroidEnvironment(config), device_process=process)
        except BaseException:
            if process is not None:
                process.stop()
            raise

    return make, described


def _desktop_factory(options: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    from agent.freeform import FreeFormDesktopRunner
    from environments.desktop import DesktopConfig, DesktopEnv

    config = DesktopConfig(**options)
    return ((lambda: DesktopEnv(config, task_runner=FreeFormDesktopRunner())),
            config.model_dump(mode="json"))


FACTORIES = {"web": _web_factory, "android": _android_factory, "desktop": _desktop_factory}


@contextlib.contextmanager
def _pause_on_ctrl_c(gates: list[Any]) -> Iterator[None]:
    """While the block runs, Ctrl-C pauses the live episode (agent.human) instead of
    stopping the run; a second Ctrl-C stops it."""

    def handler(signum: int, frame: Any) -> None:
        if not gates:
            raise KeyboardInterrupt
        gates[-1].request_pause()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------- the command


@app.command("run")
def run_command(
    task: Annotated[str, typer.Option("--task", help="The instruction, in words.")],
    policy: Annotated[str, typer.Option("--policy", "-p", help=POLICY_HELP)],
    env: Annotated[str, typer.Option(
        "--env", help="Where the task runs: web, android or desktop.")] = "web",
    url: Annotated[str | None, typer.Option(
        "--url", help="web: the page the task starts on.")] = None,
    serial: Annotated[str | None, typer.Option(
        "--serial", help="android: the device, as `adb devices` lists it (default: the only "
        "one; --env-option virtual=true starts the virtual phone).")] = None,
    app_name: Annotated[str | None, typer.Option(
        "--app", help="android / desktop: open this app first (else: the current screen on "
        "Android, an empty desktop).")] = None,
    display: Annotated[str | None, typer.Option(
        "--display", help="desktop: drive this X display (e.g. :0; pyautogui's fail-safe "
        "stays on: move the mouse to a corner to abort) instead of an own Xvfb.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    base_url: Annotated[str | None, typer.Option("--base-url",
                                                 help="Server URL (openai).")] = None,
    dialect: Annotated[str | None, typer.Option(
        "--dialect", help="Coordinate dialect (default: the policy's).")] = None,
    policy_option: Annotated[list[str] | None, typer.Option(
        "--policy-option", help="Extra policy option KEY=VALUE (repeatable).")] = None,
    prompt_profile: Annotated[str | None, typer.Option(
        "--prompt-profile", help="Prompt profile (default: the platform's, as its suites "
        "use: qwen3-computer-use for web and desktop, qwen3-mobile for Android); see "
        "docs/profiles.md.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run directory (default: runs/run-<time>).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1,
                                           help="Step budget.")] = 15,
    time_limit: Annotated[float | None, typer.Option(
        "--time-limit", min=0.001, help="Wall-clock seconds for the episode.")] = None,
    viewport: Annotated[str, typer.Option(
        "--viewport", help="web: viewport WIDTHxHEIGHT in CSS pixels.")] = "1280x720",
    headed: Annotated[bool, typer.Option("--headed",
                                         help="web: show the browser window.")] = False,
    cdp_url: Annotated[str | None, typer.Option(
        "--cdp-url", help="web: attach to your running Chromium/Chrome (started with "
        "--remote-debugging-port), e.g. http://127.0.0.1:9222; the agent works in a new tab "
        "of your profile, and nothing it did not open is closed.")] = None,
    user_data_dir: Annotated[Path | None, typer.Option(
        "--user-data-dir", help="web: launch Chromium with this persistent profile folder "
        "(logins and cookies kept between runs).")] = None,
    allow_domain: Annotated[list[str] | None, typer.Option(
        "--allow-domain", help="Only let the agent load these hosts (repeatable).")] = None,
    allow_app: Annotated[list[str] | None, typer.Option(
        "--allow-app", help="Only let the agent open these apps (repeatable).")] = None,
    env_option: Annotated[list[str] | None, typer.Option(
        "--env-option", help="More environment options KEY=VALUE (repeatable).")] = None,
    expected_answer: Annotated[str | None, typer.Option(
        "--expected-answer", help="Check: success if the agent's answer equals this "
        "(case-insensitive).")] = None,
    success_js: Annotated[str | None, typer.Option(
        "--success-js", help="web check: a JavaScript function evaluated on the page at the "
        "end; its value is the reward, e.g. '() => document.title === \"Done\"'.")] = None,
    success_shell: Annotated[str | None, typer.Option(
        "--success-shell", help="android / desktop check: a shell command run at the end "
        "(Android: through adb shell on the device; desktop: on this machine with the "
        "display's DISPLAY and HOME); with --success-output.")] = None,
    success_output: Annotated[str | None, typer.Option(
        "--success-output", help="Regular expression: success when --success-shell's output "
        "contains a match.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="No live step stream.")] = False,
    json_stream: Annotated[bool, typer.Option(
        "--json", help="The live stream as one JSON object per line on stdout (events start, "
        "step, result); prompts and the summary go to stderr.")] = False,
    confirm: Annotated[bool, typer.Option(
        "--confirm", help="Ask before every action: approve, skip, edit the text, stop "
        "(answers from stdin). Ctrl-C pauses the episode.")] = False,
    confirm_sensitive: Annotated[bool, typer.Option(
        "--confirm-sensitive", help="Ask only before sensitive actions: typing into a password "
        "field, going to another site, opening an app, keys that close or delete.")] = False,
    safety: Annotated[bool, typer.Option(
        "--safety", help="Turn on the action-policy layer (implied by --allow-domain and "
        "the options below): typing into password fields is refused unless "
        "--allow-password-typing; with --allow-domain, `navigate` elsewhere is refused.")] = False,
    refuse_action: RefuseActionOption = None,
    allow_password_typing: AllowPasswordTypingOption = False,
    secret_env: SecretEnvOption = None,
    redact_pattern: RedactPatternOption = None,
) -> None:
    """Run one task with a model policy, show each step as it happens, and record it."""
    summary_console = Console(stderr=json_stream)
    console = summary_console
    if env not in ENVIRONMENTS:
        raise fail(console, f"--env {env!r} is not one of {', '.join(ENVIRONMENTS)}")
    if policy in EXPERT_POLICY_NAMES:
        raise fail(console, f"--policy {policy!r} is a suite's scripted expert and a free-form "
                   "task has none; use a model policy (e.g. qwen3vl, openai)")
    if quiet and json_stream:
        raise fail(console, "--quiet and --json exclude each other")
    if confirm and confirm_sensitive:
        raise fail(console, "give --confirm (every action) or --confirm-sensitive, not both")
    misplaced = {"--url": url and env != "web", "--viewport/--headed": (
        headed or viewport != "1280x720") and env != "web",
        "--cdp-url": cdp_url and env != "web", "--user-data-dir": user_data_dir and env != "web",
        "--success-js": success_js and env != "web", "--serial": serial and env != "android",
        "--display": display and env != "desktop", "--app": app_name and env == "web",
        "--success-shell": success_shell and env == "web"}
    wrong = [name for name, bad in misplaced.items() if bad]
    if wrong:
        raise fail(console, f"{', '.join(wrong)} do(es) not apply to --env {env}")
    if env == "web" and not url:
        raise fail(console, "--env web needs --url (the page the task starts on)")
    if bool(success_shell) != bool(success_output):
        raise fail(console, "--success-shell and --success-output go together: the command, "
                   "and the regular expression its output must match")
    if cdp_url and user_data_dir:
        raise fail(console, "--cdp-url attaches to your browser (with its own profile); "
                   "--user-data-dir launches one: give one of them")

    task_config: dict[str, Any] = {}
    env_options: dict[str, Any] = {}
    if env == "web":
        env_options = {"viewport": _parse_size(viewport), "headless": not headed}
        if cdp_url:
            env_options["cdp_url"] = cdp_url
        if user_data_dir:
            env_options["user_data_dir"] = str(user_data_dir)
        task_config["url"] = url
    elif env == "android" and serial:
        env_options["serial"] = serial
    elif env == "desktop" and display:
        env_options["display"] = display
    if app_name:
        task_config["start_app"] = app_name
    if allow_domain and env == "web":
        env_options["allowed_domains"] = allow_domain
    env_options.update(parse_key_values(env_option, "--env-option"))
    try:
        make_environment, env_config = FACTORIES[env](env_options)
        if success_shell:
            task_config["success_shell"] = ShellCheck(
                command=success_shell, output_pattern=success_output).model_dump()
    except ValueError as exc:
        raise fail(console, f"bad options: {exc}") from None
    if expected_answer is not None:
        task_config["expected_answer"] = expected_answer
    if success_js is not None:
        task_config["success_js"] = success_js

    target = url or serial or display or app_name or ""
    task_id = "task-" + hashlib.sha1(f"{env}\n{target}\n{task}".encode()).hexdigest()[:10]
    the_task = Task(suite=env, task_id=task_id, seed=0, instruction=task,
                    max_steps=max_steps, time_limit_s=time_limit, config=task_config)
    try:
        policy_options = PolicyOptions(**default_policy_options(env, policy_options_from(
            model, base_url, dialect, policy_option, prompt_profile)))
    except typer.BadParameter as exc:
        raise fail(console, exc.message) from None
    except ValidationError as exc:
        raise fail(console, validation_message(exc)) from None
    options = policy_options.factory_options()
    # One task of the user's, not a suite: the RunConfig's policy and limit sections, the
    # same JSON as a suite run's manifest has for them (agent.config).
    config = {"kind": "single", "env": env, "env_options": env_config, "policy": policy,
              "policy_options": policy_options.stored(),
              "limits": Limits(max_steps=max_steps, time_limit_s=time_limit).model_dump()}
    from agent.safety import rules_from_cli

    try:
        rules = rules_from_cli(safety=safety, refuse_action=refuse_action,
                               allow_domain=allow_domain, allow_app=allow_app,
                               allow_password_typing=allow_password_typing,
                               secret_env=secret_env, redact_pattern=redact_pattern)
    except ValueError as exc:
        raise fail(console, str(exc)) from None
    if rules is not None:
        config["safety"] = rules.describe()
    out_dir = out or default_out("run")

    gates: list[Any] = []
    confirm_mode = "all" if confirm else "sensitive" if confirm_sensitive else None
    if confirm_mode is not None:
        from agent.human import HumanInTheLoop

        inner_factory = make_environment

        def make_environment() -> Any:
            gate = HumanInTheLoop(inner_factory(), confirm_mode,  # type: ignore[arg-type]
                                  snapshot_dir=out_dir / "confirm")
            gates.append(gate)
            return gate

    stream = StepStream("quiet" if quiet else "json" if json_stream else "text",
                        console=Console(highlight=False, soft_wrap=True))
    pause = _pause_on_ctrl_c(gates) if confirm_mode is not None else contextlib.nullcontext()
    try:
        writer = StreamingRunWriter(RunWriter(out_dir, config, invocation={"argv": sys.argv}),
                                    stream)
        with pause:
            summary = execute_run(
                writer, [PlannedEpisode(the_task, 0, f"{task_id}_seed0")],
                make_environment=make_environment, policy=policy, policy_options=options,
                options=LoopOptions(platform=PLATFORM_OF_ENV[env]), console=summary_console,
                title=f"{env} / {policy}", show_progress=False, safety=rules,
            )
    except (RunConfigMismatch, NotARunDirectory, ValueError, KeyError, PolicyUnavailable) as exc:
        raise fail(console, str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    except RunAborted as exc:
        raise fail(console, str(exc), code=1) from None
    _print_outcome(summary_console, summary.results, out_dir, is_verified(task_config))


def _print_outcome(console: Console, results: list, out_dir: Path, verified: bool) -> None:
    if not results:
        raise fail(console, f"the episode did not finish; see {out_dir}", code=1)
    result = results[0]
    table = Table(title=result.instruction, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("outcome", outcome_of(result, verified))
    for name in ("success", "reward", "steps", "terminated_by", "agent_status", "answer",
                 "error", "parse_errors", "action_errors", "wall_time_s"):
        value = getattr(result, name)
        table.add_row(name, f"{value:.2f}" if isinstance(value, float) else str(value))
    table.add_row("record", str(out_dir / "episodes" / result.episode_id))
    console.print(table)
    if result.error:
        raise typer.Exit(1)
