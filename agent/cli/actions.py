"""`cua actions`: show the action space, the tool schemas, and parse model output.

    cua actions                    # table of canonical actions (same as `cua actions list`)
    cua actions parse --screen 1920x1080 < response.txt
    cua actions schema --platform mobile --screen 1080x2400
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from actions.dialects import Dialect
from actions.models import ACTION_TYPES
from actions.observation import Size
from actions.parsing import parse_tool_calls
from actions.schemas import tool_for_platform
from agent.cli.app import app

actions_app = typer.Typer(
    help="The canonical action space: list it, print the Qwen tool schema, parse model output.",
    no_args_is_help=False,
)
app.add_typer(actions_app, name="actions")

_DIALECT_HELP = "Coordinate dialect: " + ", ".join(d.value for d in Dialect) + "."


def _size(text: str | None, option: str) -> Size | None:
    if text is None:
        return None
    try:
        width, height = (int(part) for part in text.lower().split("x"))
        return Size(width=width, height=height)
    except ValueError:
        raise typer.BadParameter(f"{option} must look like 1920x1080, got {text!r}") from None


def _dialect(text: str) -> Dialect:
    try:
        return Dialect.coerce(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _print_table() -> None:
    table = Table(title="Canonical actions (coordinates in input-space pixels)")
    table.add_column("type")
    table.add_column("fields")
    table.add_column("meaning")
    for cls in ACTION_TYPES:
        fields = [n for n in cls.model_fields if n != "type"]
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        table.add_row(cls.model_fields["type"].default, ", ".join(fields), doc)
    Console().print(table)


@actions_app.callback(invoke_without_command=True)
def actions_command(ctx: typer.Context) -> None:
    """List the canonical action types and their fields (when no subcommand is given)."""
    if ctx.invoked_subcommand is None:
        _print_table()


@actions_app.command("list")
def list_command() -> None:
    """List the canonical action types and their fields."""
    _print_table()


@actions_app.command("parse")
def parse_command(
    screen: str = typer.Option(..., "--screen", help="Input-space size WxH, e.g. 1920x1080."),
    dialect: str = typer.Option("qwen3", "--dialect", help=_DIALECT_HELP),
    image: str | None = typer.Option(None, "--image", help="Size WxH of the image the model "
                                     "saw (needed for qwen25)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 if any call "
                                "could not be parsed."),
) -> None:
    """Read a model response on stdin; print thought, actions, errors and warnings as JSON."""
    chosen = _dialect(dialect)
    screen_size = _size(screen, "--screen")
    image_size = _size(image, "--image")
    if chosen is Dialect.QWEN25 and image_size is None:
        raise typer.BadParameter("the qwen25 dialect needs --image WxH (the resized image size)")
    parsed = parse_tool_calls(sys.stdin.read(), chosen, screen_size, image_size)
    _dump(parsed.model_dump(mode="json"))
    if strict and parsed.errors:
        raise typer.Exit(1)


@actions_app.command("schema")
def schema_command(
    screen: str = typer.Option("1920x1080", "--screen", help="Input-space size WxH."),
    platform: str = typer.Option("desktop", "--platform", help="desktop, web or mobile."),
    dialect: str = typer.Option("qwen3", "--dialect", help=_DIALECT_HELP),
    image: str | None = typer.Option(None, "--image", help="Size WxH of the image the model "
                                     "sees (needed for qwen25)."),
    profile: str | None = typer.Option(
        None, "--profile", help="Print this prompt profile's whole system text instead "
        "(its tool variant, grid and response format; see docs/profiles.md)."),
) -> None:
    """Print the Qwen function definition (computer_use / mobile_use) as JSON, or with
    --profile NAME the system text that profile sends."""
    if profile is not None:
        _print_profile_system(profile, platform, _size(screen, "--screen"))
        return
    chosen = _dialect(dialect)
    image_size = _size(image, "--image")
    if chosen is Dialect.QWEN25 and image_size is None:
        raise typer.BadParameter("the qwen25 dialect needs --image WxH (the resized image size)")
    try:
        tool = tool_for_platform(platform, chosen, _size(screen, "--screen"), image_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _dump(tool)


def _print_profile_system(name: str, platform: str, screen: Size | None) -> None:
    from policies.profiles import UnknownProfile, get_profile
    from policies.prompting import DEFAULT_SYSTEM_PROMPT, system_text

    try:
        chosen = get_profile(name)
        tool = chosen.tool(platform, chosen.dialect, screen, screen, False)
    except UnknownProfile as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    text = (system_text(tool, DEFAULT_SYSTEM_PROMPT) if chosen.name == "qwen-cua"
            else chosen.system_text(tool))
    sys.stdout.write(text + "\n")


def _dump(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
