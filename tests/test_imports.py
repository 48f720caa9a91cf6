"""xpnet's modules import one another without a circle: every import statement, at module
level or inside a function, is an edge, and a module importing ``a.b`` imports the package
``a`` too. A circle makes import order matter and hides which layer depends on which."""
import ast
from pathlib import Path

import xpnet

ROOT = Path(xpnet.__file__).parent


def _modules():
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _targets(mods, name, node):
    """The xpnet modules an import statement in module ``name`` loads."""
    package = name if mods[name].name == "__init__.py" else name.rpartition(".")[0]
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        found = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    for target in found:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        while target:  # the module and every package above it that the importer is not inside
            if target != name and not name.startswith(target + "."):
                yield target
            target = target.rpartition(".")[0]


def _graph():
    mods = _modules()
    return {name: {t for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, (ast.Import, ast.ImportFrom)) for t in _targets(mods, name, node)}
            for name, path in mods.items()}


def _circles(graph):
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
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
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_xpnet():
    graph = _graph()
    circles = _circles(graph)
    assert not circles, "import circles:\n" + "\n".join(
        " ".join(c) + "\n  " + "\n  ".join(f"{v} -> {sorted(graph[v] & set(c))}" for v in c) for c in circles)


def test_the_walker_sees_a_circle_made_inside_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert "xpnet.backends" in _graph()["xpnet.device"]  # a real edge is found
