"""The package's layout rules, read from the source with :mod:`ast` (no npddpm module is
imported by checks (a), (b) and (d); (c) imports them in fresh interpreters):

(a) no import cycles among npddpm modules — imports inside functions and ``TYPE_CHECKING``
    blocks count;
(b) no module uses another module's private member (``_name``);
(c) importing the public packages loads no ``numba`` (it is imported lazily, on first use of
    a compiled kernel);
(d) no module is longer than :data:`MAX_LINES` lines.

Each check has an allow-list of today's violations, each with its reason. The test asserts
that the violations found are exactly the allow-list: a new violation fails, and so does an
entry that no longer occurs (remove it: the lists only shrink).

Deterministic: no random input.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "npddpm"
MAX_LINES = 600

# --- allow-lists of known violations (empty: add one only with a reason, remove it when fixed) -

# (a) each cycle as the set of modules of its strongly connected component
KNOWN_CYCLES: dict[frozenset[str], str] = {}

# (b) (module that reaches in, module that owns the name, the private name)
KNOWN_PRIVATE: dict[tuple[str, str, str], str] = {}

# (c) public packages whose import loads numba
KNOWN_NUMBA: dict[str, str] = {}

# (d) modules longer than MAX_LINES
KNOWN_LONG: dict[str, str] = {}


# --- reading the package ---------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def load_modules() -> dict[str, Module]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        mods[name] = Module(name, path, is_package, ast.parse(path.read_text(), str(path)))
    return mods


MODULES = load_modules()


def resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <...> import`` in ``mod``."""
    if node.level == 0:
        return node.module or ""
    base = mod.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def build_reexports() -> dict[tuple[str, str], str]:
    """{(package, name): the module that defines it} for names a package ``__init__``
    re-exports with ``from .sub import name`` (followed through nested packages)."""
    direct: dict[tuple[str, str], str] = {}
    for mod in MODULES.values():
        if not mod.is_package:
            continue
        for node in mod.tree.body:
            if isinstance(node, ast.ImportFrom):
                src = resolve_from(mod, node)
                if src in MODULES:
                    for a in node.names:
                        direct[(mod.name, a.asname or a.name)] = (src, a.name)

    def follow(pkg: str, name: str, seen=()) -> str | None:
        if (pkg, name) not in direct or (pkg, name) in seen:
            return None
        src, orig = direct[(pkg, name)]
        if f"{src}.{orig}" in MODULES:
            return f"{src}.{orig}"
        return follow(src, orig, (*seen, (pkg, name))) or src

    return {key: follow(*key) for key in direct}


REEXPORTS = build_reexports()


def target_of(base: str, name: str) -> str | None:
    """The npddpm module that ``from base import name`` depends on."""
    if f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    if (base, name) in REEXPORTS:
        return REEXPORTS[(base, name)]
    return base if base in MODULES else None


def imports_of(mod: Module):
    """Yield (line, imported npddpm module) for every import statement anywhere in ``mod``:
    module level, inside functions and inside ``if TYPE_CHECKING:``."""
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                name = a.name
                while name and name not in MODULES:  # import a.b.c of a non-module tail
                    name = name.rpartition(".")[0]
                if name:
                    yield node.lineno, name
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(mod, node)
            for a in node.names:
                t = target_of(base, a.name)
                if t is not None:
                    yield node.lineno, t


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported module: first line}} among npddpm modules (no self-edges)."""
    graph: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for mod in MODULES.values():
        for line, t in imports_of(mod):
            if t != mod.name:
                graph[mod.name].setdefault(t, line)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def one_cycle(graph, comp: list[str]) -> str:
    """A shortest cycle through the component's first module, with the import lines."""
    members, start = set(comp), comp[0]
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in graph[v]:
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                path = [*reversed(path), start]
                steps = ", ".join(f"{a}:{graph[a][b]}" for a, b in itertools.pairwise(path))
                return " -> ".join(path) + f"  (import at {steps})"
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return " <-> ".join(comp)


def check_allow_list(found: dict, known: dict, what: str, detail=lambda k: "") -> None:
    new = sorted(set(found) - set(known), key=str)
    gone = sorted(set(known) - set(found), key=str)
    lines = []
    if new:
        lines.append(f"new {what} (fix them, or allow-list them with a reason):")
        lines += [f"  {k!r}{detail(k)}" for k in new]
    if gone:
        lines.append(f"fixed {what}: remove these entries from the allow-list:")
        lines += [f"  {k!r}: {known[k]}" for k in gone]
    assert not lines, "\n".join(lines)


# --- (a) import cycles -------------------------------------------------------------------------


def test_no_import_cycles():
    graph = import_graph()
    comps = {frozenset(c): c for c in strongly_connected(graph)}
    check_allow_list(
        comps, KNOWN_CYCLES, "import cycles", lambda k: "\n    " + one_cycle(graph, comps[k])
    )


def test_the_import_graph_sees_function_level_and_reexported_imports():
    """Self-test of the graph builder on the package itself: the edges it must find."""
    graph = import_graph()
    # `from npddpm import verify` style: a package re-export resolves to the submodule
    assert "npddpm.diffusion" in graph["npddpm"]
    assert "npddpm.analytic.mixture" in graph["npddpm.analytic"]
    # imports inside functions count (a lazy import is still a dependency)
    lazy = [
        (m.name, n.lineno)
        for m in MODULES.values()
        for f in ast.walk(m.tree)
        if isinstance(f, ast.FunctionDef)
        for n in ast.walk(f)
        if isinstance(n, ast.ImportFrom | ast.Import)
    ]
    assert lazy, "expected some function-level imports in npddpm"
    for name, _ in lazy:
        assert name in graph


# --- (b) private members across modules --------------------------------------------------------


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_members() -> dict[str, set[str]]:
    """{private attribute name: modules whose classes define it} — methods, class attributes
    and ``self._x = ...`` assignments."""
    owners: dict[str, set[str]] = defaultdict(set)
    for mod in MODULES.values():
        for cls in ast.walk(mod.tree):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                names = []
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.append(node.name)
                elif isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        if isinstance(t, ast.Name):
                            names.append(t.id)
                        elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                            if t.value.id in ("self", "cls"):
                                names.append(t.attr)
                owners.update({n: owners[n] | {mod.name} for n in names if is_private(n)})
    return owners


def defined_here(mod: Module) -> set[str]:
    """Private names the module itself defines (at any level) or binds by assignment."""
    out = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return {n for n in out if is_private(n)}


def private_uses() -> dict[tuple[str, str, str], list[str]]:
    """{(module, owner module, private name): [where]} for:

    * ``from npddpm.x import _name`` (relative or absolute) from another module, unless
      ``npddpm.x._name`` is itself a module (private modules with public names are fine);
    * ``m._name`` where ``m`` is bound to an imported npddpm module;
    * ``obj._name`` (``obj`` not ``self``/``cls``) where ``_name`` is a private member of a
      class of another npddpm module and not a name of the accessing module.
    """
    owners = private_members()
    found: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for mod in MODULES.values():
        here = defined_here(mod)
        module_names: dict[str, str] = {}  # local name -> npddpm module it is bound to
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES:
                        module_names[a.asname or a.name.partition(".")[0]] = (
                            a.name if a.asname else a.name.partition(".")[0]
                        )
            elif isinstance(node, ast.ImportFrom):
                base = resolve_from(mod, node)
                for a in node.names:
                    full = f"{base}.{a.name}"
                    if full in MODULES:
                        module_names[a.asname or a.name] = full
                    elif is_private(a.name) and base in MODULES and base != mod.name:
                        owner = target_of(base, a.name) or base
                        where = f"line {node.lineno}: from {base} import {a.name}"
                        found[(mod.name, owner, a.name)].append(where)
        for node in ast.walk(mod.tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            v = node.value
            where = f"line {node.lineno}: {ast.unparse(node)}"
            if isinstance(v, ast.Name) and v.id in module_names:
                target = module_names[v.id]
                if f"{target}.{node.attr}" not in MODULES and target != mod.name:
                    found[(mod.name, target, node.attr)].append(where)
            elif isinstance(v, ast.Name) and v.id in ("self", "cls"):
                continue
            elif isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            elif node.attr in owners and node.attr not in here:
                others = owners[node.attr] - {mod.name}
                imported = others & {t for _, t in imports_of(mod)}
                others = imported or others  # the owner it imports, where that decides
                if others:
                    found[(mod.name, "|".join(sorted(others)), node.attr)].append(where)
    return found


def test_no_private_members_used_across_modules():
    found = private_uses()
    for where in found.values():
        where.sort(key=lambda w: int(w.split()[1].rstrip(":")))
    check_allow_list(
        found, KNOWN_PRIVATE, "private-member uses", lambda k: "\n    " + "\n    ".join(found[k])
    )


def test_the_private_member_scan_finds_what_it_should():
    """Self-test of the scanner on a synthetic module pair (parsed, never imported)."""
    owner = Module(
        "npddpm.fake_owner",
        Path("fake_owner.py"),
        False,
        ast.parse("class Box:\n    def __init__(self):\n        self._secret = 1\n"),
    )
    user = Module(
        "npddpm.fake_user",
        Path("fake_user.py"),
        False,
        ast.parse(
            "from . import fake_owner\n"
            "from .fake_owner import _hidden\n"
            "def f(box, self):\n"
            "    return box._secret, fake_owner._hidden, self._secret\n"
        ),
    )
    saved = dict(MODULES)
    try:
        MODULES.clear()
        MODULES.update({owner.name: owner, user.name: user})
        found = private_uses()
    finally:
        MODULES.clear()
        MODULES.update(saved)
    assert set(found) == {
        ("npddpm.fake_user", "npddpm.fake_owner", "_hidden"),
        ("npddpm.fake_user", "npddpm.fake_owner", "_secret"),
    }
    assert len(found[("npddpm.fake_user", "npddpm.fake_owner", "_hidden")]) == 2
    assert len(found[("npddpm.fake_user", "npddpm.fake_owner", "_secret")]) == 1  # not self.


# --- (c) numba stays lazy ----------------------------------------------------------------------

PUBLIC = [
    "npddpm",
    "npddpm.samplers",
    "npddpm.kernels",
    "npddpm.nn",
    "npddpm.metrics",
    "npddpm.data",
    "npddpm.conformance",
    "npddpm.analytic",
]


@pytest.mark.parametrize("package", PUBLIC)
def test_importing_a_public_package_loads_no_numba(package):
    code = (
        f"import sys, {package}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numba', 'llvmlite'))))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.split()
    found = {package: loaded} if loaded else {}
    known = {package: KNOWN_NUMBA[package]} if package in KNOWN_NUMBA else {}
    check_allow_list(
        found,
        known,
        "packages that load numba at import",
        lambda k: f": `import {k}` loaded {', '.join(loaded[:5])}{' …' if len(loaded) > 5 else ''}",
    )


def test_numba_allow_list_names_public_packages():
    assert set(KNOWN_NUMBA) <= set(PUBLIC)


# --- (d) module length -------------------------------------------------------------------------


def test_no_module_is_too_long():
    long = {}
    for mod in MODULES.values():
        n = len(mod.path.read_text().splitlines())
        if n > MAX_LINES:
            long[mod.name] = n
    check_allow_list(
        long, KNOWN_LONG, f"modules over {MAX_LINES} lines", lambda k: f": {long[k]} lines"
    )
