"""No import circles among the project's modules, and dependencies point one way between
the packages (docs/architecture.md): `actions` depends on nothing of ours; `environments`,
`policies` and `trajectories` on `actions` (and not on each other where the design says an
environment never imports a policy and a policy never imports an environment).

The graph is read from the source with `ast`, not by importing: an edge A -> B for every
``import B`` / ``from B import x`` in A, wherever it stands — imports inside functions
count too. A deferred import still makes two modules depend on each other, and
deferring was how the desktop suite's circle (taskfile -> evaluators -> setup -> validate
-> taskfile) hid; only ``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actions", "environments", "policies", "trajectories", "agent", "benchmarks")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a `from package import name` that names a
    submodule is an edge to the submodule, else to the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            for alias in node.names:
                target = known(alias.name)
                if target:
                    found.add(target)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = f"{base}.{alias.name}"
                target = target if target in modules else known(base)
                if target:
                    found.add(target)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_graph_is_read_from_the_source():
    graph = _graph()
    assert "benchmarks.desktop.registry" in graph["benchmarks.desktop.taskfile"]
    assert "agent.cli.options" in graph["agent.cli.eval"]
    # a deferred import is an edge too (agent.runner imports the worker hosts lazily)
    assert "agent.engine.workers" in graph["agent.runner"]
    # and the check finds a circle when there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _cycles(_graph()) == []


# Known exceptions, each with its reason. The SFT exporter rebuilds a step's prompt in the
# training format from the recorded screenshots with the policy's own prompt builder, so
# that training and inference prompts are made by one piece of code.
CROSS_PACKAGE_EXCEPTIONS = {
    "trajectories.export_sft -> policies.profiles",
    "trajectories.export_sft -> policies.prompting",
}


def test_dependencies_point_one_way_between_packages():
    allowed = {
        "actions": {"actions"},
        "environments": {"environments", "actions"},
        "policies": {"policies", "actions"},
        "trajectories": {"trajectories", "actions"},
    }
    wrong = sorted(f"{source} -> {target}" for source, targets in _graph().items()
                   for target in targets
                   if source.split(".")[0] in allowed
                   and target.split(".")[0] not in allowed[source.split(".")[0]])
    assert sorted(set(wrong) - CROSS_PACKAGE_EXCEPTIONS) == []
