"""`cua eval screenspot|screenspot-v2|screenspot-pro|osworld-g --data DIR`: grounding runs.

`cua eval` hands these suites here (agent/cli/eval.py). The samples come from a local
folder in the published format (benchmarks.grounding.data), a grounder answers them in
batches — a model policy prompted by a grounding profile (policies.grounding), or the
`oracle` (reads the target) / `random` (uniform point) references — and the run directory
records every sample, so the same command resumes. The published table(s) are printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agent.cli.app import app
from benchmarks.grounding.data import BENCHMARKS, GroundingDataError, load_benchmark
from benchmarks.grounding.runner import (
    OracleGrounder,
    PolicyGrounder,
    RandomGrounder,
    run_grounding,
)
from benchmarks.grounding.tables import table_for
from policies.grounding import GROUNDING_PROFILES, get_grounding_profile

__all__ = ["GROUNDING_SUITES", "GroundingCommandError", "eval_grounding"]

GROUNDING_SUITES = BENCHMARKS
REFERENCE_GROUNDERS = ("oracle", "random")
_LOADER_OPTIONS = {"screenspot": {"splits"}, "screenspot-v2": {"splits"},
                   "screenspot-pro": {"language", "negatives"}, "osworld-g": {"refined"}}


class GroundingCommandError(ValueError):
    """Bad options for a grounding run; the message says what to pass."""


def _profile_for(name: str | None, policy_obj: Any) -> str:
    if name:
        return name
    generator = getattr(policy_obj, "generator", None)
    dialect = getattr(generator, "default_dialect", None) or getattr(
        getattr(policy_obj, "options", None), "dialect", None)
    # Qwen3-VL checkpoints: the report's own grounding prompt (it can refuse).
    return "qwen2_5vl" if str(dialect) == "qwen25" else "qwen3vl-report"


def eval_grounding(benchmark: str, *, data: Path | None, policy: str,
                   policy_options: dict[str, Any], suite_options: dict[str, Any],
                   out_dir: Path, profile: str | None, batch_size: int, limit: int | None,
                   seed: int, invocation: dict[str, Any], console: Console) -> Path:
    """Run one grounding benchmark (see the module docstring); returns the run folder.

    Raises GroundingCommandError / GroundingDataError for bad options or data, and the
    policies' PolicyUnavailable when a model cannot be loaded or reached.
    """
    if data is None:
        raise GroundingCommandError(
            f"{benchmark} needs --data DIR: the folder of the downloaded benchmark "
            "(see docs/grounding.md), or one written by `cua generate-grounding`")
    unknown = set(suite_options) - _LOADER_OPTIONS[benchmark]
    if unknown:
        raise GroundingCommandError(
            f"{benchmark} takes --suite-option {', '.join(sorted(_LOADER_OPTIONS[benchmark]))}"
            f"; not {', '.join(sorted(unknown))}")
    if "splits" in suite_options and isinstance(suite_options["splits"], str):
        suite_options["splits"] = tuple(suite_options["splits"].split(","))
    if profile is not None and profile not in GROUNDING_PROFILES:
        raise GroundingCommandError(f"unknown --grounding-profile {profile!r}: use one of "
                                    f"{', '.join(sorted(GROUNDING_PROFILES))}")
    samples, report = load_benchmark(benchmark, data, **suite_options)
    console.print(f"{report.benchmark}: {report.samples} samples from {', '.join(report.files)}"
                  f" — format: {report.variant}; images in {report.image_dir}",
                  highlight=False)
    if limit is not None:
        samples = samples[:limit]
    if policy == "oracle":
        grounder: Any = OracleGrounder()
        profile_name = None
    elif policy == "random":
        grounder = RandomGrounder(seed)
        profile_name = None
    else:
        from policies.registry import make_policy

        chosen = get_grounding_profile(profile) if profile else None
        options = dict(policy_options)
        if chosen is not None:
            options.setdefault("dialect", chosen.dialect.value)
        # the published grounding setups decode greedily with 256 new tokens
        options.setdefault("greedy", True)
        default = "qwen2_5vl" if options.get("dialect") == "qwen25" else "qwen3vl-report"
        options.setdefault("max_new_tokens", (chosen or GROUNDING_PROFILES[default])
                           .max_new_tokens)
        policy_obj = make_policy(policy, **options)
        profile_name = _profile_for(profile, policy_obj)
        grounder = PolicyGrounder(policy_obj, get_grounding_profile(profile_name))
        policy_options = options
    config = {"suite": benchmark, "data": str(Path(data).resolve()), "policy": policy,
              "policy_options": policy_options, "grounding_profile": profile_name,
              "loader_options": {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in suite_options.items()},
              "seed": seed if policy == "random" else None}
    try:
        summary = run_grounding(samples, grounder, out_dir, config, batch_size=batch_size,
                                invocation=invocation, console=console)
    finally:
        close = getattr(grounder, "close", None)
        if close is not None:
            close()
    for table in table_for(benchmark, summary.scores):
        console.print(table.render())
    console.print(f"{summary.ran} samples run, {summary.skipped} already in {out_dir}; "
                  f"view them with `cua view {out_dir}`", highlight=False)
    return Path(out_dir)


__all__ += ["GroundingDataError", "generate_grounding_command"]


@app.command("generate-grounding")
def generate_grounding_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (ScreenSpot-Pro "
                                      "format: annotations/, images/).")],
    pages: Annotated[int, typer.Option(
        "--pages", min=0, help="Synthetic web pages to render (~40 samples each).")] = 13,
    simple_pages: Annotated[int, typer.Option(
        "--simple-pages", min=0, help="Single-target 160x210 pages to render (one sample "
        "each, seeded difficulty; the learning curriculum's pages).")] = 0,
    miniwob_task: Annotated[list[str] | None, typer.Option(
        "--miniwob-task", help="Also read the screens of this MiniWoB++ task (repeatable).")
    ] = None,
    miniwob_seeds: Annotated[int, typer.Option(
        "--miniwob-seeds", min=1, help="Seeded episodes per MiniWoB++ task.")] = 1,
    android_task: Annotated[list[str] | None, typer.Option(
        "--android-task", help="Also read the screens of this local Android task and of its "
        "apps (repeatable); the virtual phone unless --suite-option serial=... names a "
        "device.")] = None,
    suite_option: Annotated[list[str] | None, typer.Option(
        "--suite-option", help="Android suite option KEY=VALUE (serial, adb_port).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="First page seed.")] = 0,
    width: Annotated[int, typer.Option("--width", min=64, help="Viewport width, CSS px.")] = 1280,
    height: Annotated[int, typer.Option("--height", min=64, help="Viewport height, CSS px.")
                      ] = 720,
    scale: Annotated[float, typer.Option(
        "--scale", min=0.5, max=4, help="Device scale factor (screenshot px per CSS px).")] = 1.0,
) -> None:
    """Generate grounding samples from live environments (Chromium pages, MiniWoB++):
    element boxes from the DOM, instructions from what each element shows. Evaluate them
    with `cua eval screenspot-pro --data OUT`."""
    import shutil

    from actions.observation import Size
    from benchmarks.grounding.generate import generate_miniwob, generate_web, write_screenspot_pro

    console = Console()
    if out.exists() and any(out.iterdir()):
        if {p.name for p in out.iterdir()} - {"annotations", "images"}:
            console.print(f"[red]error:[/red] {out} is not empty and not a generated grounding "
                          "folder: choose a new --out folder")
            raise typer.Exit(2)
        for name in ("annotations", "images"):  # an earlier generated set: replace it
            shutil.rmtree(out / name, ignore_errors=True)
    screens = generate_web(pages, seed=seed, viewport=Size(width=width, height=height),
                           device_scale_factor=scale) if pages else []
    if simple_pages:
        from benchmarks.grounding.simple_pages import generate_simple

        screens += generate_simple(simple_pages, seed=seed, device_scale_factor=scale)
    if miniwob_task:
        screens += generate_miniwob(list(miniwob_task), range(seed, seed + miniwob_seeds))
    if android_task:
        from agent.cli.options import parse_key_values
        from benchmarks.base import get_suite
        from benchmarks.grounding.generate import generate_android

        suite = get_suite("android")
        env = suite.make_environment(**parse_key_values(suite_option, "--suite-option"))
        try:
            screens += generate_android(env, [suite.make_task(t, seed) for t in android_task])
        finally:
            env.close()
    written = write_screenspot_pro(screens, out)
    console.print(f"{written} samples from {len(screens)} screens written to {out}; evaluate "
                  f"with `cua eval screenspot-pro --data {out} --policy oracle`", highlight=False)
