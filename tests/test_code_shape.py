"""The package stays readable: no function in spot/ a reader cannot hold at once (over 60 lines, docstring
included); no import cycle between its modules; no module importing a layer above its own; no import inside a
function without a stated reason."""
import ast
from pathlib import Path

LIMIT = 60
SPOT = Path(__file__).resolve().parents[1] / "spot"
# modules the workflow imports while it builds the DAG, which must not import torch (workflow/rules/common.smk): their
# torch-dependent imports are made where they are used
TORCH_FREE = ("__init__.py", "config.py", "train/recipes.py", "train/__init__.py", "experiments/protocol.py",
              "results.py", "provenance.py", "stats.py", "_lazy.py", "_checks.py", "core/placement/", "data/canvas.py",
              "data/__init__.py", "paper/", "settings/", "findings/")
# the layers, lowest first, along the data path (docs/architecture.md): a module imports its own layer or lower ones
LAYERS = (
    ("foundation", ("spot._version", "spot._lazy", "spot._checks", "spot.config", "spot.provenance", "spot.results",
                    "spot.stats")),
    ("data", ("spot.data",)),
    ("core", ("spot.core",)),
    ("settings", ("spot.settings",)),
    ("weights", ("spot.weights",)),
    ("measure", ("spot.measure",)),
    ("train", ("spot.train",)),
    ("experiments", ("spot.experiments",)),
    ("results read", ("spot.findings", "spot.paper")),
    ("reproduce", ("spot.reproduce",)),
    ("app", ("spot.app", "spot.__main__", "spot")),
)
# optional or heavy libraries, imported where they are used: plotting, CLIPSeg, the hub, downloads, the demo's data
OPTIONAL = ("matplotlib", "transformers", "huggingface_hub", "torchvision", "sklearn")


def _modules():
    return sorted(SPOT.rglob("*.py"))


def _name(path: Path) -> str:
    return ".".join(path.relative_to(SPOT.parent).with_suffix("").parts).removesuffix(".__init__")


def test_no_function_over_sixty_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.relative_to(SPOT.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert len(_modules()) > 50
    assert not long, "split these into functions a reader can hold: " + "; ".join(long)


def _top_level_imports(path: Path) -> set:
    """The spot modules ``path`` imports at its top level (relative imports, resolved; ``from . import x`` → x)."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            out.add(target)
            if not node.module:
                out.update(f"{base}.{a.name}" for a in node.names)
    known = {_name(p) for p in _modules()}
    return {t for t in out if t in known}


def test_no_import_cycle():
    graph = {_name(p): _top_level_imports(p) for p in _modules()}
    # a package's __init__ importing its own submodules is how packages are assembled, not a cycle of layers
    graph = {m: {t for t in ts if t != m and not t.startswith(m + ".")} for m, ts in graph.items()}
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" → ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert len(graph) > 50 and any(graph.values())
    assert not cycles, cycles


def test_every_import_inside_a_function_has_a_reason():
    """An import inside a function is where the module must stay importable without torch (TORCH_FREE), of an optional
    or heavy library (OPTIONAL), or says why on its line."""
    unexplained = []
    for path in _modules():
        rel = path.relative_to(SPOT).as_posix()
        if rel.startswith(TORCH_FREE):
            continue
        text = path.read_text()
        lines = text.split("\n")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(node):
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    module = n.module if isinstance(n, ast.ImportFrom) and n.module else n.names[0].name
                    if not getattr(n, "level", 0) and module.split(".")[0] in OPTIONAL:
                        continue
                    if "#" not in lines[n.lineno - 1]:
                        unexplained.append(f"spot/{rel}:{n.lineno} {ast.unparse(n)}")
    assert not unexplained, "move these to the module's top, or say on the line why not: " + "; ".join(unexplained)


def _layer(module: str) -> int:
    ranks = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
             if module == prefix or module.startswith(prefix + ".")]
    assert ranks, f"{module} is in no layer of LAYERS: add its folder to one"
    return max(ranks)[1]


def _all_imports(path: Path) -> set:
    """Every spot module ``path`` imports, at its top or inside a function (relative or absolute, resolved)."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    known = {_name(p) for p in _modules()}
    out: set = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (package.rsplit(".", node.level - 1)[0] if node.level > 1 else package) if node.level else ""
            target = ".".join(x for x in (base, node.module) if x)
            names = {f"{target}.{a.name}" for a in node.names} & known  # `from . import module`
            out.update(names if names else {target})
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {t for t in out if t in known}


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in _modules():
        source = _name(path)
        for target in sorted(_all_imports(path)):
            if _layer(target) > _layer(source):
                upward.append(f"{source} ({LAYERS[_layer(source)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert len(_modules()) > 50
    assert not upward, upward


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check above is not vacuous: a core module that imported an experiment would be named."""
    planted = SPOT / "core" / "_planted_upward.py"
    planted.write_text("from ..experiments import protocol  # noqa: F401\n")
    try:
        source = _name(planted)
        assert "spot.experiments.protocol" in _all_imports(planted)
        assert _layer("spot.experiments.protocol") > _layer(source)
    finally:
        planted.unlink()
