"""The layering of the package, checked on its import graph: a cycle or an upward import fails.

Every import counts, also those inside functions. The layers, lowest first;
a package may import its own layer's packages only where :data:`ALLOWED_SIDEWAYS`
says so (the foundation's small modules excepted), and any lower layer freely::

    foundation   errors, metrics, templating, logfmt, logsetup, plugins, extras, wording
    db           the shared database layer
    backends     storage, auth, nodes, throttle, captcha, tokenserver (each family alone)
    lifecycle    accounts (password reset needs the auth interface)
    protocol     protocol rules (they build the storage interface's types), importers
    settings     settings (resolves backend classes), health
    schema       migrations (the tables of every backend; reads settings for the CLI)
    web          web layer, routing
    controllers  controllers
    entry        app (the composition root), admin, testing, serving (paster's server)
"""

import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "syncserver"

LAYERS = (
    ("foundation", {"errors", "metrics", "templating", "logfmt", "logsetup", "plugins", "extras",
                    "wording", "(root)"}),
    ("db", {"db"}),
    ("backends", {"storage", "auth", "nodes", "throttle", "captcha", "tokenserver"}),
    ("lifecycle", {"accounts"}),
    ("protocol", {"protocol", "importers"}),
    ("settings", {"settings", "health"}),
    ("schema", {"migrations"}),
    ("web", {"web", "routing"}),
    ("controllers", {"controllers"}),
    ("entry", {"app", "admin", "testing", "serving"}),
)

#: Imports between packages of one layer that are part of the design.
ALLOWED_SIDEWAYS = {
    ("importers", "protocol"),
    ("web", "routing"),
    ("admin", "app"),
}


def modules():
    """``{dotted module name: path}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name, path, known):
    """The package modules ``name`` imports (resolved to the longest known module)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate.startswith("syncserver") and candidate != name:
                targets.add(candidate)
    return targets


def package_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def layer_of(package):
    for index, (_, members) in enumerate(LAYERS):
        if package in members:
            return index
    raise AssertionError(f"syncserver.{package} is in no layer: add it to tests/test_layers.py")


def graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_package_has_a_layer():
    for module in modules():
        layer_of(package_of(module))


def test_no_import_goes_up_or_sideways_between_packages():
    wrong = []
    for module, targets in graph().items():
        source = package_of(module)
        for target in targets:
            destination = package_of(target)
            if source == destination or module.startswith(target + "."):
                continue
            up = layer_of(destination) > layer_of(source)
            sideways = (layer_of(destination) == layer_of(source) != 0
                        and (source, destination) not in ALLOWED_SIDEWAYS)
            if up or sideways:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycle_between_modules():
    edges = graph()
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if node.startswith(target + "."):
                continue  # a module importing its own package's face is no cycle
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """An upward import planted in a copy of a low module is reported."""
    planted = {"syncserver.db.database": {"syncserver.app"}}
    real_graph = graph()
    monkeypatch.setattr(sys.modules[__name__], "graph", lambda: {**real_graph, **planted})
    try:
        test_no_import_goes_up_or_sideways_between_packages()
    except AssertionError as error:
        assert "syncserver.db.database imports syncserver.app" in str(error)
    else:
        raise AssertionError("an upward import went unnoticed")
