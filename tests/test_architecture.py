"""The layout the architecture page describes: no import cycle inside ``finelip_kit``, counting
imports made inside functions too, and the weights layer below the model."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "finelip_kit"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the kit's modules it imports anywhere in its body (``from .x import y`` may name
    a submodule ``y``); a package's implicit import of its parent is not an edge."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    edges.add(candidate if candidate in modules else target)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_import_inside_the_kit_names_a_module_that_exists():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    missing = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if target not in modules:
                    missing.append(f"{name}: from {'.' * node.level}{node.module or ''} (no module {target})")
    assert missing == []


def test_the_graph_sees_the_imports_it_must():
    graph = import_graph()
    assert "finelip_kit.weights.load" in graph["finelip_kit.model"]
    assert "finelip_kit.model" in graph["finelip_kit.pretrained"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle_in_the_kit():
    assert cycles(import_graph()) == []


def test_the_weights_layer_never_imports_the_model_or_what_sits_above_it():
    graph = import_graph()
    above = {"finelip_kit.model", "finelip_kit.pretrained", "finelip_kit.train", "finelip_kit.recipe",
             "finelip_kit.ablation", "finelip_kit.evaluate"}
    for name, edges in graph.items():
        if name.startswith("finelip_kit.weights"):
            assert not (edges & above), (name, edges & above)
