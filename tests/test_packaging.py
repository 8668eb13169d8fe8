"""Packaging: a lean core with extras, as users install it (plumbing, against pyproject.toml).

- Every third-party module imported at the top level of a core package module is provided
  by a distribution the core `dependencies` name (extras are imported lazily, inside the
  function that needs them), so `pip install qwen-cua` imports.
- torch is a range in pyproject.toml; the CPU pin lives in scripts/install.sh, which
  installs the project with the extras the test suite needs.
- `cua` names the missing extra instead of printing a traceback.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_PACKAGES = ("actions", "agent", "environments", "policies", "trajectories", "benchmarks")
# Modules that belong to an extra: they may import its distributions at module level, and
# no core module may import them at module level (only inside the function that needs them).
EXTRA_MODULES = {"agent.service.server": "serve", "agent.service.client": "serve",
                 # loaded by verl from its config; talks to `cua serve-env` through httpx
                 "agent.trainers.verl_loop": "serve",
                 # --backend remote (imported when chosen): the env-service client
                 "agent.service.remote_host": "serve"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _top_level_imports(path: Path) -> set[str]:
    """Dotted module names imported by statements at module level (not in functions, not
    under TYPE_CHECKING, not in a `try` that catches ImportError)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                optional = any(
                    handler.type is not None
                    and re.search(r"ImportError|ModuleNotFoundError", ast.unparse(handler.type))
                    for handler in node.handlers)
                if not optional:  # `try: import x / except ImportError` is optional by design
                    visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    return names


def _our_modules() -> dict[str, Path]:
    modules = {}
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.startswith("test_"):
                dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def test_core_modules_import_only_core_dependencies() -> None:
    project = _pyproject()["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {name: {_requirement_name(r) for r in requirements}
              for name, requirements in project["optional-dependencies"].items()}
    providers = metadata.packages_distributions()
    modules = _our_modules()
    missing: list[str] = []
    for dotted, path in modules.items():
        allowed = core | extras.get(EXTRA_MODULES.get(dotted, ""), set())
        for name in _top_level_imports(path):
            top = name.split(".")[0]
            if top in CORE_PACKAGES or top in sys.stdlib_module_names or top == "__future__":
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
            if not dists & allowed:
                missing.append(f"{path.relative_to(ROOT)} imports {top!r} (from "
                               f"{sorted(dists) or 'nothing installed'})")
    assert not missing, ("imported at module level but not a core dependency (add it to "
                         "[project] dependencies, or import it inside the function that "
                         "needs it):\n" + "\n".join(sorted(set(missing))))


def test_no_core_module_imports_an_extra_module_at_load() -> None:
    modules = _our_modules()
    edges = {dotted: {n for n in _top_level_imports(path) if n in modules}
             for dotted, path in modules.items()}
    core_roots = [m for m in modules if m not in EXTRA_MODULES]
    reached: set[str] = set()
    stack = list(core_roots)
    while stack:
        module = stack.pop()
        for target in edges.get(module, ()):
            if target not in reached:
                reached.add(target)
                stack.append(target)
    leaked = sorted(set(EXTRA_MODULES) & reached)
    assert not leaked, f"core modules import these extra-only modules at load: {leaked}"


def test_extras_hold_the_toolchain_and_torch_is_a_range() -> None:
    project = _pyproject()["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    for heavy in ("pytest", "hypothesis", "ruff", "ray", "trl", "peft", "datasets"):
        assert heavy not in core, f"{heavy} must be an extra, not a core dependency"
    assert {"trl", "peft", "datasets"} <= {_requirement_name(r) for r in extras["train"]}
    assert {_requirement_name(r) for r in extras["ray"]} == {"ray"}
    assert {"pytest", "hypothesis", "ruff"} <= {_requirement_name(r) for r in extras["dev"]}
    torch = next(r for r in project["dependencies"] if _requirement_name(r) == "torch")
    assert "==" not in torch and ">=" in torch, torch
    install = (ROOT / "scripts" / "install.sh").read_text()
    pin = install.index("pip install -q torch==2.13.0")
    project_install = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", install)
    assert project_install, "install.sh must install the project with its extras"
    assert pin < project_install.start(), "the CPU torch must be installed before the project"
    assert set(project_install.group(1).split(",")) == set(extras) - {"all"}, \
        "make test installs every extra (the suite tests them all)"
    assert {_requirement_name(r) for r in extras["all"]} == {"qwen-cua"}


def test_cli_names_a_missing_extra(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main as cli

    def needs_trl() -> None:
        raise ModuleNotFoundError("No module named 'trl'", name="trl")

    monkeypatch.setattr(cli, "app", needs_trl)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "pip install 'qwen-cua[train]'" in capsys.readouterr().err

    def needs_something_else() -> None:
        raise ModuleNotFoundError("No module named 'nonexistent_x'", name="nonexistent_x")

    monkeypatch.setattr(cli, "app", needs_something_else)
    with pytest.raises(ModuleNotFoundError):
        cli.main()  # not an extra of ours: the real error, unchanged
