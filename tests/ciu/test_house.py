"""The house: imports run one way, no modules in a circle, no dead SQL files.

The direction: core ← store ← twin ← {ingest, forecasting} ← models ← {api, viz} ← cli.
Every module of the installed ``ciu`` namespace is given one layer; an import
of a module from a higher layer, or from a peer of the same height, fails the
test, and so does a circle of modules importing each other.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: where each part of the namespace lives in the checkout
FOLDERS = {"ciu": "ciu", "ciu.ingest": "ingest", "ciu.models": "models", "ciu.viz": "viz"}
#: (height, layer, module prefixes); the longest matching prefix decides
LAYERS: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "core", ("ciu.errors", "ciu.settings", "ciu.rollup", "ciu.skill", "ciu.alerts", "ciu.clock", "ciu.domain",
                  "ciu.levels")),
    (1, "store", ("ciu.store", "ciu.pgcopy", "ciu.db", "ciu.cluster", "ciu.migrate",
                  "ciu.migrations", "ciu.sql")),
    (2, "twin", ("ciu.twin", "ciu")),
    (3, "ingest", ("ciu.ingest",)),
    (3, "forecasting", ("ciu.forecast", "ciu.scenarios")),
    (4, "models", ("ciu.models",)),
    (5, "api", ("ciu.api",)),
    (5, "viz", ("ciu.viz",)),
    (6, "cli", ("ciu.cli", "ciu.ingest.cli", "ciu.models.cli", "ciu.viz.cli", "ciu.api.cli")),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "node_modules" in path.parts:
                continue
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> tuple[int, str]:
    best = max(((len(prefix), height, name) for height, name, prefixes in LAYERS for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} has no layer: add it to LAYERS"
    return best[1], best[2]


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports (at any depth of the file, type-checking imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known}


def test_every_import_runs_down_the_layers() -> None:
    known = modules()
    wrong = []
    for module, path in sorted(known.items()):
        height, name = layer(module)
        for target in sorted(imports(path, known)):
            t_height, t_name = layer(target)
            if t_height > height or (t_height == height and t_name != name):
                wrong.append(f"{module} ({name}) imports {target} ({t_name})")
    assert not wrong, "imports against the direction:\n" + "\n".join(wrong)


def test_no_modules_import_each_other_in_a_circle() -> None:
    known = modules()
    graph = {m: imports(p, known) - {m} for m, p in known.items()}
    # a package's __init__ importing its own modules is not a circle of the modules' logic
    graph = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in graph.items()}
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"modules importing each other: {circles}"


def test_the_layers_name_every_module() -> None:
    for module in modules():
        layer(module)


def test_every_sql_file_is_used() -> None:
    code = "\n".join(p.read_text() for p in modules().values())
    unused = [p.name for p in sorted((ROOT / "ciu" / "sql").glob("*.sql")) if f'"{p.stem}"' not in code]
    assert not unused, f"SQL files no code loads: {unused}"


def test_the_dashboard_pages_read_through_their_data_provider_only() -> None:
    known = modules()
    for module, path in known.items():
        if module.startswith("ciu.viz.pages"):
            reached = {t for t in imports(path, known) if t.split(".")[1] != "viz" or t == "ciu.viz.data"}
            assert reached <= {"ciu.errors", "ciu.clock"}, (module, reached)  # errors and the clock's pure rules
            assert ".twin" not in path.read_text(), module


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+ciu\.|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|FUNCTION)|"
                 r"ALTER\s+TABLE|set_config\()", re.S)


def test_sql_is_written_in_the_store_layer_only() -> None:
    known = modules()
    wrong = []
    for module, path in sorted(known.items()):
        if layer(module)[1] == "store":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)  # docstrings may speak of SQL
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(n)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and SQL.search(node.value):
                wrong.append(f"{module}:{node.lineno}: {node.value[:60]!r}")
    assert not wrong, "SQL outside the store layer:\n" + "\n".join(wrong)


def test_no_module_is_over_500_lines() -> None:
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_one_door_nothing_reaches_past_the_twin_into_its_store() -> None:
    """Ingest, forecasting, models, the API and the dashboard go through :class:`ciu.twin.Twin`'s methods."""
    for module, path in modules().items():
        if module != "ciu.twin":
            assert not re.search(r"\btwin\.store\b", path.read_text()), module
