"""The layers of hostbatch, as a test: the executable form of the README's Design section.

Every module under ``src/hostbatch`` is read with :mod:`ast` (never imported) and placed in
one layer of :data:`LAYERS`, low to high. The rules:

* **No upward import.** A module imports only from its own layer or lower ones.
* **No private import.** A module never imports, or reaches through an imported module for,
  a name with a leading underscore from another module (dunder names such as ``__version__``
  are public).
* **No cycle** between modules (not packages): two modules that need each other are one
  design split in two, even when one side defers its import into a function so that Python
  does not trip over it (as ``inventory/loader`` <-> ``inventory/ansible`` did).
  ``from PACKAGE import NAME`` is an edge to the submodule ``PACKAGE.NAME`` when one exists,
  else to ``PACKAGE``.
* **paramiko stays in the SSH layer.** Only modules under ``hostbatch/ssh/`` import it, so
  the parent process can stay free of it.

Every import counts, for every rule: at module level, inside functions and under
``if TYPE_CHECKING:``. Each failure lists every violation, one a line, so a whole cleanup can
be planned from one run.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "hostbatch"

#: The layers, low to high: each entry names the top-level modules or packages of one layer.
#: ``__init__`` is the package itself (``import hostbatch``: the public API).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "secrets", "nodeset", "known_hosts", "actions", "atomic", "exit_status"),
    ("inventory",),
    ("selection", "settings", "credentials", "local_files", "rollout", "userconfig"),
    ("ssh",),
    ("prepare",),
    ("engine", "relay"),
    ("render",),
    ("history",),
    ("keyscan",),
    ("api", "__init__"),
    ("cli", "console", "__main__"),
]



@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen in ``importer`` at ``line``."""

    importer: str
    imported: str
    line: int
    names: tuple[str, ...] = ()


def module_name(path: Path) -> str:
    """``src/hostbatch/ssh/command.py`` -> ``hostbatch.ssh.command``; a package's
    ``__init__.py`` is the package."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a ``hostbatch`` module; KeyError when unplaced."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise KeyError(module)


def layer_name(index: int) -> str:
    """A layer's name: its first member."""
    return LAYERS[index][0]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import in ``path``, wherever it stands, with the names each brings in."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    found.append(Import(module, submodule, node.lineno))
                else:
                    found.append(Import(module, source, node.lineno, (alias.name,)))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str, path: Path, known: set[str]) -> list[str]:
    """``module:LINE -> other.NAME`` for each private name taken from another module, by
    ``from other import _NAME`` or through an imported module (``other._NAME``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = [f"{module}:{imp.line} -> {imp.imported}.{name}"
             for imp in imports_of(module, path, known) if imp.imported != module
             for name in imp.names if _private(name)]
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in known:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)
                and aliases[node.value.id] != module):
            found.append(f"{module}:{node.lineno} -> {aliases[node.value.id]}.{node.attr}")
    return sorted(set(found), key=_line_order)


def _line_order(text: str) -> tuple[str, int, str]:
    match = re.match(r"([^:]+):(\d+) (.*)", text)
    assert match
    return match[1], int(match[2]), match[3]


def _package_imports() -> list[Import]:
    modules = all_modules()
    known = set(modules)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, known)]


def upward_imports(imports: list[Import]) -> list[str]:
    """``importer:LINE -> imported (layer X below layer Y)`` for each import of a higher
    layer."""
    found = []
    for imp in imports:
        if imp.imported != PACKAGE and not imp.imported.startswith(PACKAGE + "."):
            continue
        low, high = layer_of(imp.importer), layer_of(imp.imported)
        if high > low:
            found.append(f"{imp.importer}:{imp.line} -> {imp.imported} "
                         f"(layer {layer_name(low)} below layer {layer_name(high)})")
    return found


def cycles(imports: list[Import]) -> list[list[str]]:
    """The import cycles among ``hostbatch`` modules, each as the modules of one strongly
    connected component, sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.imported.startswith(PACKAGE):
            graph.setdefault(imp.importer, set()).add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _report(title: str, violations: list[str]) -> str:
    return f"{len(violations)} {title}:\n" + "\n".join(f"  {v}" for v in violations)


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in all_modules():
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, _report("modules in no layer (add them to LAYERS)", unplaced)


def test_no_module_imports_a_higher_layer() -> None:
    violations = upward_imports(_package_imports())
    assert not violations, _report("imports of a higher layer", violations)


def test_no_module_imports_a_private_name_of_another() -> None:
    modules = all_modules()
    violations = [use for name, path in modules.items()
                  for use in private_uses(name, path, set(modules))]
    assert not violations, _report("private names used across modules", violations)


def test_no_import_cycle() -> None:
    found = [" <-> ".join(component) for component in cycles(_package_imports())]
    assert not found, _report("import cycles (modules that import each other)",
                              found)


def test_only_the_ssh_layer_imports_paramiko() -> None:
    violations = [f"{imp.importer}:{imp.line} -> {imp.imported}"
                  for imp in _package_imports()
                  if imp.imported.split(".")[0] == "paramiko"
                  and not imp.importer.startswith(f"{PACKAGE}.ssh")]
    assert not violations, _report("paramiko imports outside hostbatch/ssh/", violations)


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The rules themselves, on made-up imports: an upward import, a private name, a cycle."""
    up = Import("hostbatch.ssh.command", "hostbatch.engine.events", 3)
    same = Import("hostbatch.engine.pool", "hostbatch.engine.events", 4)
    down = Import("hostbatch.cli.main", "hostbatch.errors", 5)
    assert upward_imports([up, same, down]) == [
        "hostbatch.ssh.command:3 -> hostbatch.engine.events (layer ssh below layer engine)"]
    back = Import("hostbatch.engine.events", "hostbatch.engine.pool", 9)
    assert cycles([same, back]) == [["hostbatch.engine.events", "hostbatch.engine.pool"]]
    assert cycles([same, down]) == []
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "from hostbatch.inventory import loader\n"
                      "from hostbatch.errors import _hidden, __doc__\n"
                      "if TYPE_CHECKING:\n    import hostbatch.engine\n"
                      "def f():\n    import hostbatch.render\n    return loader._Validator\n")
    known = {"hostbatch.inventory.loader", "hostbatch.errors", "hostbatch.engine",
             "hostbatch.render"}
    assert private_uses("hostbatch.x", source, known) == [
        "hostbatch.x:3 -> hostbatch.errors._hidden",
        "hostbatch.x:8 -> hostbatch.inventory.loader._Validator"]
    found = {imp.imported for imp in imports_of("hostbatch.x", source, known)}
    assert found == {"typing", "hostbatch.inventory.loader", "hostbatch.errors",
                     "hostbatch.engine", "hostbatch.render"}  # under TYPE_CHECKING, in f()
