"""The package's layout: no import cycles between keras_frcnn modules, and one name per
concept (no module named like the package beside it)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_frcnn"


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path, modules):
    """keras_frcnn modules that ``path`` imports anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from keras_frcnn import training" imports the module keras_frcnn.training.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def test_no_import_cycles():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports(path, paths) - {name} for name, path in paths.items()}
    # A package's __init__ importing its own submodules is how packages are built, not a
    # cycle; only edges between distinct non-parent modules count.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")
                       and not name.startswith(m + ".")}
    state, cycles = {}, []

    def visit(name, stack):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other, stack + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def same_concept(module, package):
    """Whether a module name and a sibling package name name one concept: the shorter,
    less a trailing "e", begins the longer (evaluate/evaluation, detect/detection,
    proposal/proposals, model/models)."""
    short, long = sorted((module, package), key=len)
    return long.startswith(short[:-1] if short.endswith("e") else short)


def test_no_module_named_like_a_sibling_package():
    assert same_concept("evaluate", "evaluation") and same_concept("detect", "detection")
    assert not same_concept("export", "evaluation") and not same_concept("boxes", "ops")
    clashes = []
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]:
        packages = [p.name for p in folder.iterdir()
                    if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))]
        modules = [p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
        clashes += [f"{folder.relative_to(PACKAGE.parent)}: {m}.py beside {d}/"
                    for m in modules for d in packages if same_concept(m, d)]
    assert not clashes, f"a module and a package name one concept: {clashes}"
    assert not (PACKAGE / "evaluate.py").exists()  # the evaluation run is evaluation/run.py
