"""binflax's import graph, read from the source (nothing is imported): no cycles, and the
layers a network and its figures are built from never reach up to the configs and runs.

Only module-level imports count (an import inside a function is taken when it runs).
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "binflax"
# What reads a config or runs one: the layers below never import it.
RUN_MACHINERY = {
    "binflax.budgets",
    "binflax.cli",
    "binflax.config_check",
    "binflax.data",
    "binflax.modes",
    "binflax.networks",
    "binflax.recipe_presets",
    "binflax.results",
    "binflax.run_dir",
    "binflax.train",
}
# The network, its cost, its selection and its export.
LOWER = ("binflax.cost", "binflax.export", "binflax.models", "binflax.packing", "binflax.select")


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module's binflax imports at module level (``from binflax import x`` is the
    module ``binflax.x``; an imported name that is not a module, its module)."""
    found = modules()

    def module_of(name: str) -> str:
        while name not in found:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in found.items():
        deps = set()
        for node in module_level(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {module_of(a.name) for a in node.names if a.name.startswith("binflax.")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("binflax"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in found else module_of(node.module))
        graph[name] = deps - {name, "binflax"}
    return graph


def module_level(node: ast.AST):
    """Every node under ``node`` but those inside a function."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from module_level(child)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_no_module_of_binflax_imports_itself_through_others():
    graph = import_graph()
    cycles = sorted(name for name in graph if name in reachable(graph, name))
    assert not cycles


def test_the_network_its_cost_selection_and_export_never_reach_the_configs_and_runs():
    graph = import_graph()
    for low in LOWER:
        assert not reachable(graph, low) & RUN_MACHINERY, low
