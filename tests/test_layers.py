"""The layers of `workbench/` stay layers.

The import graph of every module under `workbench/` is read with `ast` (absolute and relative imports, imports inside
functions too; imports under `if TYPE_CHECKING:` never run and do not count). It must have no circle, and no module
may import from a layer above its own (`workbench.LAYERS`, lowest first). And where the strategy contract says no
strategy may be named (the engine, codegen, the estimate, the pages), none is.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workbench import LAYERS

from .conftest import REPO

PACKAGE = "workbench"
CLI_MODULES = {"workbench.cli", "workbench.__main__"}  # the "cli" layer is two modules, not a sub-package


# ---------------------------------------------------------------------------------------------------------------
# Reading the import graph


@dataclass(frozen=True)
class Import:
    """One import statement that runs: `source` imports `target` (both module names under the package)."""

    source: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def find_modules(package_dir: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name; a package's `__init__.py` is the package's own name."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below `node` that can run: the body of `if TYPE_CHECKING:` is left out (its `else:` is kept)."""
    yield node
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children = node.orelse
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from runtime_nodes(child)


def _owner(name: str, modules: dict[str, Path]) -> str:
    """The module that `name` lives in: itself if it is a module, else the longest dotted prefix that is one."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name a `from X import ...` reads from, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str, path: Path, modules: dict[str, Path], display_root: Path) -> list[Import]:
    """The package modules `module` imports when it runs. `from a.b import c` imports the module `a.b.c` when there
    is one, otherwise `a.b` (c is a name defined there). Importing a submodule also runs its parent packages'
    `__init__`, but those are not edges: every module of a package would seem to circle through its `__init__`. That
    hides no circle across layers: a parent package is in the same layer as its submodule, and a circle across layers
    needs an upward import, which the layer check reports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    shown = path.relative_to(display_root)
    found: dict[tuple[str, int], Import] = {}  # one edge per target and line: `from a import b, c` is one import
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module, is_package)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = _owner(name, modules)
                if target != module:
                    found.setdefault((target, node.lineno), Import(module, target, shown, node.lineno))
    return list(found.values())


def import_graph(package_dir: Path, display_root: Path) -> tuple[dict[str, Path], list[Import]]:
    modules = find_modules(package_dir)
    edges = [edge for name, path in modules.items() for edge in imports_of(name, path, modules, display_root)]
    return modules, edges


# ---------------------------------------------------------------------------------------------------------------
# Circles


def strongly_connected(nodes: list[str], edges: list[Import]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of the graph, each a list of module names."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        successors[edge.source].append(edge.target)
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in on_stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:  # node is the root of a component: pop it off the stack
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return components


def one_cycle(component: list[str], edges: list[Import]) -> list[Import]:
    """A shortest circle of imports through the component's first module (breadth-first, inside the component)."""
    inside = set(component)
    start = component[0]
    came_by: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in edges:
                if edge.source != node or edge.target not in inside or edge.target in came_by:
                    continue
                came_by[edge.target] = edge
                if edge.target == start:
                    cycle = [edge]
                    while cycle[0].source != start:
                        cycle.insert(0, came_by[cycle[0].source])
                    return cycle
                following.append(edge.target)
        frontier = following
    raise AssertionError(f"{component} is not a circle")


def circles(modules: dict[str, Path], edges: list[Import]) -> list[str]:
    """One readable line per import circle: its modules, and one way round it with file and line."""
    found = []
    for component in strongly_connected(list(modules), edges):
        if len(component) > 1:
            steps = " -> ".join(f"{edge.source} ({edge.where()})" for edge in one_cycle(component, edges))
            found.append(f"circle of {len(component)} modules: {', '.join(component)}\n    e.g. {steps} -> "
                         f"{component[0]}")
    return found


# ---------------------------------------------------------------------------------------------------------------
# Layers


def layer_of(module: str, layers: tuple[str, ...]) -> str | None:
    """The layer a module belongs to; None for the package's own `__init__`, which belongs to none."""
    if module == PACKAGE:
        return None
    if module in CLI_MODULES:
        return "cli"
    layer = module.split(".")[1]
    if layer not in layers:
        raise ValueError(f"{module} is in no layer: add '{layer}' to workbench.LAYERS, in its place in the order.")
    return layer


def upward_imports(edges: list[Import], layers: tuple[str, ...]) -> list[str]:
    """One line per import from a lower layer to a higher one (the package's `__init__` may import nothing)."""
    found = []
    for edge in edges:
        source, target = layer_of(edge.source, layers), layer_of(edge.target, layers)
        if source is None:
            found.append(f"{edge.where()}: workbench/__init__.py must import nothing, but imports {edge.target}")
        elif target is not None and layers.index(target) > layers.index(source):
            found.append(f"{edge.where()}: {edge.source} (layer {source}) imports {edge.target} (layer {target}, "
                         f"higher)")
    return found


# ---------------------------------------------------------------------------------------------------------------
# The checks on workbench/


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import]]:
    return import_graph(REPO / PACKAGE, REPO)


def test_every_module_is_in_a_declared_layer_and_every_layer_exists(graph):
    modules, _ = graph
    unplaced = []
    for module in modules:
        try:
            layer_of(module, LAYERS)
        except ValueError as error:
            unplaced.append(str(error))
    assert not unplaced, "\n".join(unplaced)
    missing = [layer for layer in LAYERS if layer != "cli" and f"{PACKAGE}.{layer}" not in modules]
    assert not missing, f"workbench.LAYERS names layers with no sub-package: {missing}"
    assert set(modules) >= CLI_MODULES, f"the cli layer is the modules {sorted(CLI_MODULES)}"


def test_the_lessons_sit_above_deploy_and_below_the_cli():
    """A lesson queues runs, analyses and compresses them: it may use every library layer, and only the CLI above."""
    assert LAYERS.index("deploy") < LAYERS.index("lessons") < LAYERS.index("cli")


def test_no_import_circle(graph):
    found = circles(*graph)
    assert not found, "Import circles in workbench/ (break them by moving the shared piece to a lower module):\n" + \
        "\n".join(found)


def test_no_import_from_a_lower_layer_to_a_higher_one(graph):
    _, edges = graph
    found = upward_imports(edges, LAYERS)
    assert not found, (f"Imports that reach up a layer (order, lowest first: {' -> '.join(LAYERS)}; a type-only "
                       f"import may go under `if TYPE_CHECKING:`):\n" + "\n".join(found))


# ---------------------------------------------------------------------------------------------------------------
# The checks catch what they should: a small package with a circle and an upward import


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / PACKAGE


SYNTHETIC = {
    "__init__.py": "",
    "core/__init__.py": "",
    "core/errors.py": """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:  # never runs: not an upward import
            from workbench.runs.records import RunRecord
    """,
    "core/metrics.py": """
        def late():
            from workbench.engine import loop  # inside a function: it still runs, so it counts
    """,
    "engine/__init__.py": "from workbench.engine.loop import train\n",
    "engine/loop.py": """
        from workbench.core import errors
        from . import run

        def train():
            pass
    """,
    "engine/run.py": "from .schedule import lr_at\n",
    "engine/schedule.py": "import workbench.engine.loop\n\nlr_at = 1\n",
    "runs/__init__.py": "",
    "runs/records.py": "from ..engine import train\n",
}


@pytest.fixture
def synthetic(tmp_path) -> tuple[dict[str, Path], list[Import]]:
    return import_graph(write_package(tmp_path, SYNTHETIC), tmp_path)


def test_the_graph_reads_absolute_relative_and_function_imports_but_not_type_checking_ones(synthetic):
    _, edges = synthetic
    pairs = {(e.source, e.target) for e in edges}
    assert ("workbench.engine.loop", "workbench.engine.run") in pairs  # from . import run: a submodule
    assert ("workbench.engine.run", "workbench.engine.schedule") in pairs  # from .schedule import lr_at
    assert ("workbench.runs.records", "workbench.engine") in pairs  # from ..engine import train: a name
    assert ("workbench.core.metrics", "workbench.engine.loop") in pairs
    assert not any(e.source == "workbench.core.errors" for e in edges)


def test_a_circle_is_caught_and_named(synthetic):
    found = circles(*synthetic)
    assert len(found) == 1
    assert "workbench.engine.loop, workbench.engine.run, workbench.engine.schedule" in found[0]
    assert "engine/loop.py:3" in found[0]  # the import that closes it, with file and line


def test_an_upward_import_is_caught_with_file_and_line(synthetic):
    _, edges = synthetic
    found = upward_imports(edges, ("core", "engine", "runs"))
    assert found == ["workbench/core/metrics.py:3: workbench.core.metrics (layer core) imports workbench.engine.loop "
                     "(layer engine, higher)"]


def test_the_package_init_may_import_nothing_and_every_module_needs_a_layer(tmp_path):
    _, edges = import_graph(write_package(tmp_path, {**SYNTHETIC, "__init__.py": "from workbench.core import x\n",
                                                     "extras/__init__.py": ""}), tmp_path)
    assert any("must import nothing" in line for line in upward_imports(edges, ("core", "engine", "runs")))
    with pytest.raises(ValueError, match="extras"):
        layer_of("workbench.extras", ("core", "engine", "runs"))


# ---------------------------------------------------------------------------------------------------------------
# No strategy named where the contract speaks for them

NO_STRATEGY_NAMES = ["workbench/engine", "workbench/deploy/codegen.py", "workbench/analysis/estimate.py", "pages",
                     "ui_common.py", "ui_lessons.py"]


@dataclass(frozen=True)
class StrategyVocabulary:
    """How code can name a registered strategy."""

    names: set[str]  # registered names, which are also their modules' names: "full", "l2sp"
    classes: set[str]  # their classes: "Full", "L2SP"
    modules: set[str]  # their modules: "workbench.strategies.full"

    @classmethod
    def registered(cls) -> StrategyVocabulary:
        from workbench.strategies import STRATEGIES

        modules = {type(strategy).__module__ for strategy in STRATEGIES.values()}
        return cls(names=set(STRATEGIES) | {module.rpartition(".")[2] for module in modules},
                   classes={type(strategy).__name__ for strategy in STRATEGIES.values()}, modules=modules)

    def identifier(self, name: str | None) -> bool:
        return name in self.names or name in self.classes

    def module(self, name: str) -> bool:
        """`name` is a strategy's module or something inside one."""
        return any(name == module or name.startswith(module + ".") for module in self.modules)


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _outside_names(tree: ast.AST) -> set[str]:
    """Names bound to things imported from outside the workbench (`torch`, `np`, `functools`, `st`...): `torch.full`
    or `functools.partial` is theirs, not a strategy."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {alias.asname or alias.name.split(".")[0] for alias in node.names
                      if not alias.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith(PACKAGE):
            bound |= {alias.asname or alias.name for alias in node.names}
    return bound


def _root_name(node: ast.expr) -> str | None:
    """The name an attribute chain starts from: `torch` for `torch.nn.functional.relu(x).sum`."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _imported_from(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module a `from X import ...` in the file `path` reads from (relative imports resolved from the
    file's place under `workbench/`)."""
    if node.level == 0:
        return node.module or ""
    parts = path.parent.parts
    package = list(parts[len(parts) - 1 - parts[::-1].index(PACKAGE):])
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def strategy_mentions(path: Path, vocabulary: StrategyVocabulary, display_root: Path = REPO) -> list[str]:
    """Where the code of `path` names a strategy: a string that is exactly a strategy's name (`"full"`, not "a full
    fine-tune"), an attribute, definition, parameter or keyword named after one (`strategy.gradual`), or an import of
    a strategy's module or class. Comments, prose and other libraries' words (`torch.full`, `functools.partial`) do
    not count, nor do local variables that happen to share a name (`as scratch`): what a strategy means to the code
    reaches it through one of the forms above."""
    tree = ast.parse(path.read_text(), filename=str(path))
    outside = _outside_names(tree)
    found = []  # (line, column, what)
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in vocabulary.names:
            what = f"the string {node.value!r}"
        elif isinstance(node, ast.Attribute) and vocabulary.identifier(node.attr) and _root_name(node) not in outside:
            what = f"the attribute .{node.attr}"
        elif isinstance(node, DEFINITIONS) and vocabulary.identifier(node.name):
            what = f"the definition {node.name}"
        elif isinstance(node, ast.arg) and vocabulary.identifier(node.arg):
            what = f"the parameter {node.arg}"
        elif isinstance(node, ast.keyword) and vocabulary.identifier(node.arg):
            what = f"the keyword {node.arg}="
        elif isinstance(node, ast.Import):
            hits = [alias.name for alias in node.names if vocabulary.module(alias.name)]
            what = f"an import of {', '.join(hits)}" if hits else None
        elif isinstance(node, ast.ImportFrom) and _imported_from(node, path).startswith(PACKAGE):
            base = _imported_from(node, path)
            hits = [f"{base}.{alias.name}" for alias in node.names
                    if vocabulary.module(f"{base}.{alias.name}") or vocabulary.identifier(alias.name)]
            what = f"an import of {', '.join(hits)}" if hits else None
        if what:
            found.append((node.lineno, node.col_offset, what))
    return [f"{path.relative_to(display_root)}:{line}: {what}" for line, _, what in sorted(found)]


def guarded_files() -> list[Path]:
    files = []
    for entry in NO_STRATEGY_NAMES:
        path = REPO / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_no_strategy_is_named_in_the_engine_codegen_the_estimate_or_the_pages():
    vocabulary = StrategyVocabulary.registered()
    found = [line for path in guarded_files() for line in strategy_mentions(path, vocabulary)]
    assert not found, ("These files name a strategy; they should ask the strategy's hooks instead "
                       "(workbench/strategies/base.py):\n" + "\n".join(found))


def test_the_strategy_name_check_catches_names_but_not_prose_or_other_libraries(tmp_path):
    path = tmp_path / "page.py"
    path.write_text(textwrap.dedent('''
        """A full fine-tune, explained in prose: no strategy named here."""
        import functools
        import torch
        from workbench.strategies import dann, get_strategy
        from workbench.strategies.distill import teacher_candidates

        ones = torch.full((2,), 1.0)
        later = functools.partial(print, "the full picture")
        with open(__file__) as scratch:
            pass
        if config.strategy == "gradual" or strategy.bitfit:
            get_strategy("linear_probe")
        def partial(l2sp=None):
            return RunConfig(full=True)
    '''))
    found = strategy_mentions(path, StrategyVocabulary.registered(), display_root=tmp_path)
    assert found == [
        "page.py:5: an import of workbench.strategies.dann",
        "page.py:6: an import of workbench.strategies.distill.teacher_candidates",
        "page.py:12: the string 'gradual'",
        "page.py:12: the attribute .bitfit",
        "page.py:13: the string 'linear_probe'",
        "page.py:14: the definition partial",
        "page.py:14: the parameter l2sp",
        "page.py:15: the keyword full=",
    ]


def test_the_strategy_name_check_resolves_relative_imports(tmp_path):
    path = write_package(tmp_path, {"engine/loop.py": "from ..strategies import dann\nfrom . import run\n"}) / \
        "engine" / "loop.py"
    found = strategy_mentions(path, StrategyVocabulary.registered(), display_root=tmp_path)
    assert found == ["workbench/engine/loop.py:1: an import of workbench.strategies.dann"]
