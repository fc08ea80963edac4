"""The layout the architecture page describes: no import cycle inside ``finelip_kit``, counting
imports made inside functions too, and the layers, each importing only those below it."""

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


# The layers, lowest first (docs/architecture.md). A module belongs to the layer of its longest
# prefix here. The model's parts (configs, towers, tokenizer) sit below weights/, which reads and
# writes them; FineLIP and the resolver sit above weights/, which never imports them.
LAYERS = [
    ("base", ("finelip_kit", "finelip_kit._version", "finelip_kit._lazy", "finelip_kit.limits", "finelip_kit.schema",
              "finelip_kit.files")),
    ("math", ("finelip_kit.math",)),
    ("model parts", ("finelip_kit.model.config", "finelip_kit.model.towers", "finelip_kit.model.tokenizer")),
    ("weights", ("finelip_kit.weights",)),
    ("model", ("finelip_kit.model",)),
    ("data", ("finelip_kit.data",)),
    ("evaluation", ("finelip_kit.evaluation",)),
    ("train", ("finelip_kit.train",)),
    ("views", ("finelip_kit.views",)),
    ("experiments", ("finelip_kit.experiments",)),
    ("cli", ("finelip_kit.cli",)),
]
# Beside the order: the views look at models and evaluations, never at training or the experiments.
FORBIDDEN = {("views", "train")}


def layer_of(module: str) -> int:
    best = max(((len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    return best[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that goes to a higher layer, or to a layer its own may not use (FORBIDDEN)."""
    bad = []
    for module, edges in sorted(graph.items()):
        for target in sorted(edges):
            low, high = layer_of(module), layer_of(target)
            if high > low or (LAYERS[low][0], LAYERS[high][0]) in FORBIDDEN:
                bad.append(f"{module} ({LAYERS[low][0]}) imports {target} ({LAYERS[high][0]})")
    return bad


def test_the_graph_sees_the_imports_it_must():
    graph = import_graph()
    assert "finelip_kit.weights.load" in graph["finelip_kit.model.finelip"]
    assert "finelip_kit.model.finelip" in graph["finelip_kit.model.pretrained"]
    assert "finelip_kit.train.loop" in graph["finelip_kit.experiments.recipe"] or \
        "finelip_kit.train" in graph["finelip_kit.experiments.recipe"]
    assert "finelip_kit.evaluation.gallery" in graph["finelip_kit.evaluation.retrieval"]  # a submodule, by name
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_layer_check_catches_an_upward_import_of_a_submodule():
    planted = {"finelip_kit.math.clim": {"finelip_kit.train.loop"},
               "finelip_kit.views.viz": {"finelip_kit.experiments.recipe", "finelip_kit.train.checkpoint"},
               "finelip_kit.weights.load": {"finelip_kit.model.finelip", "finelip_kit.model.config"}}
    assert upward_imports(planted) == [
        "finelip_kit.math.clim (math) imports finelip_kit.train.loop (train)",
        "finelip_kit.views.viz (views) imports finelip_kit.experiments.recipe (experiments)",
        "finelip_kit.views.viz (views) imports finelip_kit.train.checkpoint (train)",
        "finelip_kit.weights.load (weights) imports finelip_kit.model.finelip (model)",
    ]


def test_no_import_cycle_in_the_kit():
    assert cycles(import_graph()) == []


def test_every_module_imports_only_its_own_layer_and_those_below():
    assert upward_imports(import_graph()) == []


def test_the_weights_layer_never_imports_the_model_or_what_sits_above_it():
    graph = import_graph()
    above = {"finelip_kit.model.finelip", "finelip_kit.model.pretrained", "finelip_kit.train", "finelip_kit.experiments",
             "finelip_kit.evaluation"}
    for name, edges in graph.items():
        if name.startswith("finelip_kit.weights"):
            assert not {e for e in edges if any(e == a or e.startswith(a + ".") for a in above)}, (name, edges)


def test_the_reference_implementations_live_in_the_tests_not_the_package():
    assert not (PACKAGE / "testing.py").exists() and (PACKAGE.parent / "tests" / "reference.py").is_file()
