"""The package's modules import each other top-down: no import cycle among gps_ros modules.

Every import counts, wherever it is written (module level, inside a function, under
``TYPE_CHECKING``): a lower module that imports a higher one lazily still ties the two together.
The check is static (an AST walk), so it needs none of the optional dependencies (ROS, torch).
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

PKG = Path(__file__).resolve().parents[1] / "gps_ros"


def _modules(pkg: Path) -> Dict[str, Path]:
    """Dotted module name -> file for every .py file of the package (``__init__``: the package)."""
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imported(name: str, path: Path, mods: Dict[str, Path]) -> Set[str]:
    """The package modules that ``name`` (defined in ``path``) imports, anywhere in its code.

    ``import a.b.c`` names a.b.c (or its nearest enclosing module of the package); ``from a.b
    import c`` names a.b.c when that is a module, else a.b; relative imports are resolved."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = here[:len(here) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in mods:
                    out.add(f"{base}.{alias.name}")
                elif base in mods:
                    out.add(base)
    out.discard(name)
    return out


def import_graph(pkg: Path = PKG) -> Dict[str, Set[str]]:
    mods = _modules(pkg)
    return {name: _imported(name, path, mods) for name, path in mods.items()}


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_the_checker_sees_cycles_and_lazy_imports(tmp_path):
    """The check itself: a cycle closed by an import inside a function, one under TYPE_CHECKING
    and a relative one are all found; a DAG passes."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.low import X\n")
    (pkg / "sub" / "low.py").write_text("def f():\n    from ..high import g\n")
    (pkg / "high.py").write_text("from .sub import low\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    import pkg.b\n")
    (pkg / "b.py").write_text("import pkg.a\n")
    (pkg / "c.py").write_text("import os\nfrom pkg import a, high\n")
    assert import_cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"], ["pkg.high", "pkg.sub.low"]]
    (pkg / "sub" / "low.py").write_text("def f():\n    return 1\n")
    (pkg / "b.py").write_text("import os\n")
    assert import_cycles(import_graph(pkg)) == []


def test_no_import_cycle_in_gps_ros():
    graph = import_graph()
    assert "gps_ros.experiment" in graph and "gps_ros.sim.arm" in graph
    cycles = import_cycles(graph)
    assert cycles == [], "import cycles among gps_ros modules: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_layers_read_top_down():
    """The two circles this test was written for stay broken in the intended direction: the
    experiment directory uses the MCAP format module (not the reverse), and the simulator uses
    its camera (the camera renders anything that has the simulator's few attributes)."""
    graph = import_graph()
    assert "gps_ros.record" in graph["gps_ros.experiment"]
    assert "gps_ros.experiment" not in graph["gps_ros.record"]
    assert "gps_ros.sim.camera" in graph["gps_ros.sim.arm"]
    assert "gps_ros.sim.arm" not in graph["gps_ros.sim.camera"]
    for low in ("gps_ros.atomic", "gps_ros.sample"):
        assert not graph[low] - {"gps_ros.atomic"}, (low, graph[low])
