"""The package's layout: no import cycle among zoo/ modules (function-local imports count), and
the paper layers depend on nothing but themselves."""

import ast
from pathlib import Path

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def _modules():
    """Dotted name -> path of every module of the package (a package is its __init__)."""
    found = {}
    for path in ZOO.rglob("*.py"):
        parts = path.relative_to(ZOO.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name, path, modules):
    """The zoo modules ``name`` imports anywhere in its file (the longest known prefix of each
    imported name; a package's own parents are not counted: Python imports them first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in names:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
    return targets


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_parser_sees_function_local_and_relative_imports(tmp_path):
    modules = {"zoo.a": tmp_path / "a.py", "zoo.b": tmp_path / "b.py"}
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
    assert _imports("zoo.a", tmp_path / "a.py", modules) == {"zoo.b"}
    assert _cycle({"zoo.a": {"zoo.b"}, "zoo.b": {"zoo.a"}}) == ["zoo.a", "zoo.b", "zoo.a"]
    assert _cycle({"zoo.a": {"zoo.b"}, "zoo.b": set()}) is None


def test_no_import_cycle_among_zoo_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "zoo.protocol" in graph["zoo.evaluate"] and "zoo.export.rewrites" in graph["zoo.export.qat"]
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_paper_layers_import_only_paper_layers():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("zoo.layers"):
            outside = {t for t in _imports(name, path, modules) if not t.startswith("zoo.layers")}
            assert not outside, f"{name} imports {sorted(outside)}"
