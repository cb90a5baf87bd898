"""How far the whole spec travels through runner/: prints figures, asserts nothing.

    python bench/spec_reach.py            # figures, the list of functions and the trip's folder moves
    python bench/spec_reach.py --quiet    # figures only

Two measures (issue #33), both static (the AST, nothing imported or run):

1. Takers: the functions (methods and nested functions too) in runner/ outside runner/flows/,
   runner/spec/ and runner/cli.py that take the whole spec: a parameter annotated `Spec` (`Spec | None`,
   `"Spec"`), or named `spec` without an annotation (`spec: str` is a spec file's path, not the Spec).

2. The short trip: start at runner/flows/recipe.py `run_spec` with its `spec` parameter, and follow the
   calls that pass the spec on (an argument that is the spec variable itself, by position or keyword),
   breadth-first, each function once; in the callee the spec variable is the parameter that receives it
   (and any name assigned from `<spec>.replace(...)`). The first 60 calls are the trip. A call resolves
   through the module's imports (at the top or inside a function), its own functions and classes
   (a class call goes to `__init__`), `self.method`, and an imported module's attribute; a method call on
   anything else (`flow.load(spec)`) goes to every runner function or method of that name, outside a
   `Protocol`, whose receiving parameter takes the spec (as above), when there are at most three
   of that name (a flow module's `load` is one of those).
   The trip is walked as the spec goes: for each call in turn, the caller, then the callee (the same
   function twice in a row counts once), so a breadth-first trip goes down into a stage and comes back
   up for the next call. A move is a step of the walk into another folder (the nodes of
   bench/import_graph.py: runner's folders, and each top-level module); a climb is a move to a higher
   floor, in the floor order of bench/import_graph.py. The calls that cross a folder (caller and callee
   apart) are counted too, with those that call a higher floor.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_graph import measure, modules, node_of  # noqa: E402

TRIP = 60
OUTSIDE = ("runner.flows", "runner.spec", "runner.cli")


def is_spec_annotation(node) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return False
    return any(isinstance(n, ast.Name) and n.id == "Spec" or isinstance(n, ast.Attribute) and n.attr == "Spec"
               for n in ast.walk(node))


def takes_spec(arg: ast.arg) -> bool:
    """Annotated `Spec`, or named `spec` with no annotation (`spec: str`, a spec's path, is not the Spec)."""
    return is_spec_annotation(arg.annotation) or arg.arg == "spec" and arg.annotation is None


def all_args(func) -> list[ast.arg]:
    a = func.args
    return a.posonlyargs + a.args + ([a.vararg] if a.vararg else []) + a.kwonlyargs + ([a.kwarg] if a.kwarg else [])


class Index:
    """Every module's functions (top level `f`, methods `C.f`, nested `f.g`) and imported names."""

    def __init__(self):
        self.paths = modules()
        self.trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in self.paths.items()}
        self.functions: dict[str, ast.AST] = {}  # "module:qualname" -> def
        self.classes: dict[str, ast.ClassDef] = {}  # "module:Class"
        self.imports: dict[str, dict[str, str]] = {}  # module -> local name -> "module" or "module:name"
        for module, tree in self.trees.items():
            self._walk(module, tree.body, "")
            self.imports[module] = self._imports(module, tree)

    def _walk(self, module, body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[f"{module}:{prefix}{node.name}"] = node
                self._walk(module, node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.ClassDef):
                self.classes[f"{module}:{prefix}{node.name}"] = node
                self._walk(module, node.body, f"{prefix}{node.name}.")

    def _imports(self, module, tree) -> dict[str, str]:
        known = set(self.paths)
        package = module if self.paths[module].name == "__init__.py" else module.rpartition(".")[0]
        out = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known:
                        out[alias.asname or alias.name.split(".")[0]] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    head = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(head + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    out[alias.asname or alias.name] = full if full in known else f"{base}:{alias.name}"
        return out

    def module_of(self, key: str) -> str:
        return key.split(":")[0]

    def by_name(self, name: str) -> list[str]:
        return sorted(k for k in self.functions if k.rsplit(":", 1)[1].split(".")[-1] == name)

    def callable_key(self, target: str) -> str | None:
        """'module:name' of a function, or of a class's __init__ (the class itself when it has none)."""
        if target in self.functions:
            return target
        if target in self.classes:
            return target + ".__init__" if target + ".__init__" in self.functions else target
        module, _, name = target.partition(":")
        if module in self.paths:  # a name re-exported by a package's __init__
            again = self.imports.get(module, {}).get(name)
            if again and again != target and ":" in again:
                return self.callable_key(again)
        return None

    def resolve(self, caller: str, call: ast.Call) -> list[str]:
        module, _, qual = caller.partition(":")
        func = call.func
        local = self.imports[module]
        if isinstance(func, ast.Name):
            parts = qual.split(".")
            for depth in range(len(parts), -1, -1):  # nested, then enclosing scopes, then the module
                prefix = ".".join(parts[:depth] + [func.id])
                key = self.callable_key(f"{module}:{prefix}")
                if key:
                    return [key]
            target = local.get(func.id)
            if target and ":" in target:
                key = self.callable_key(target)
                return [key] if key else []
            return []
        if isinstance(func, ast.Attribute):
            base = func.value
            if isinstance(base, ast.Name) and base.id == "self" and "." in qual:
                cls = qual.split(".")[0]
                key = self.callable_key(f"{module}:{cls}.{func.attr}")
                return [key] if key else []
            if isinstance(base, ast.Name) and local.get(base.id) in self.paths:
                key = self.callable_key(f"{local[base.id]}:{func.attr}")
                return [key] if key else []
            found = [k for k in self.by_name(func.attr) if not self.in_protocol(k)]
            return found if 0 < len(found) <= 3 else []
        return []

    def in_protocol(self, key: str) -> bool:
        """A method of a typing.Protocol class: a declaration, not code."""
        module, _, qual = key.partition(":")
        cls = self.classes.get(f"{module}:{qual.rpartition('.')[0]}")
        return cls is not None and any(
            isinstance(b, ast.Name) and b.id == "Protocol" or isinstance(b, ast.Attribute) and b.attr == "Protocol"
            for b in cls.bases)


def parameter_for(index: Index, callee: str, call: ast.Call, spec_names: set[str]) -> str | None | bool:
    """The callee's parameter that receives the spec; False when the spec is not an argument."""
    position = next((i for i, a in enumerate(call.args) if isinstance(a, ast.Name) and a.id in spec_names), None)
    keyword = next((k.arg for k in call.keywords if isinstance(k.value, ast.Name) and k.value.id in spec_names), None)
    if position is None and keyword is None:
        return False
    func = index.functions.get(callee)
    if func is None:
        return None
    if keyword:
        return keyword if keyword in {a.arg for a in all_args(func)} else None
    params = func.args.posonlyargs + func.args.args
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    if position < len(params):
        return params[position].arg
    return None


def spec_names_in(func, name: str) -> set[str]:
    names = {name}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            f = node.value.func
            if isinstance(f, ast.Attribute) and f.attr == "replace" and isinstance(f.value, ast.Name) \
                    and f.value.id in names:
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def spec_like(index: Index, callee: str, parameter) -> bool:
    func = index.functions.get(callee)
    arg = next((a for a in all_args(func) if a.arg == parameter), None) if func else None
    return arg is not None and takes_spec(arg)


def calls_in_order(func) -> list[ast.Call]:
    return sorted((n for n in ast.walk(func) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))


def short_trip(index: Index, limit: int = TRIP) -> list[tuple[str, str]]:
    start = "runner.flows.recipe:run_spec"
    queue, seen, trip = deque([(start, "spec")]), {start}, []
    while queue and len(trip) < limit:
        caller, name = queue.popleft()
        func = index.functions[caller]
        names = spec_names_in(func, name)
        for call in calls_in_order(func):
            callees = index.resolve(caller, call)
            for callee in callees:
                parameter = parameter_for(index, callee, call, names)
                if parameter is False or callee == caller:
                    continue
                if len(callees) > 1 and not spec_like(index, callee, parameter):
                    continue  # a method of that name elsewhere (RunRecord.load) that takes no spec
                trip.append((caller, callee))
                if len(trip) >= limit:
                    return trip
                if parameter and callee not in seen:
                    seen.add(callee)
                    queue.append((callee, parameter))
    return trip


def takers(index: Index) -> list[str]:
    out = []
    for key, func in index.functions.items():
        module = index.module_of(key)
        if module.startswith(OUTSIDE):
            continue
        if any(takes_spec(a) for a in all_args(func)):
            out.append(key)
    return sorted(out)


def main(argv: list[str]) -> None:
    index = Index()
    floors = {n: i for i, n in enumerate(measure()["floors"])}
    taking = takers(index)
    trip = short_trip(index)
    folder = lambda key: node_of(index.module_of(key))  # noqa: E731
    walk = []
    for pair in trip:
        walk += [key for key in pair if not walk or walk[-1] != key]
    moves = [(a, b) for a, b in zip(walk, walk[1:]) if folder(a) != folder(b)]
    climbs = [(a, b) for a, b in moves if floors[folder(b)] > floors[folder(a)]]
    crossing = [(a, b) for a, b in trip if folder(a) != folder(b)]
    upward = [(a, b) for a, b in crossing if floors[folder(b)] > floors[folder(a)]]
    folders = sorted({folder(k) for k in walk})
    print(f"functions outside flows/, spec/ and cli taking the whole spec: {len(taking)}")
    print(f"short trip from run_spec: {len(trip)} calls, {len(folders)} folders ({', '.join(folders)}), "
          f"{len(moves)} moves between folders, {len(climbs)} climbing back to a higher floor")
    print(f"  calls into another folder: {len(crossing)}, of them calling a higher floor: {len(upward)}")
    if "--quiet" in argv:
        return
    print("\ntakers:")
    for key in taking:
        print(f"  {key}")
    print("\nthe trip's calls into another folder (^ to a higher floor):")
    for a, b in crossing:
        print(f"  {'^' if (a, b) in upward else ' '} {a} -> {b}")


if __name__ == "__main__":
    main(sys.argv[1:])
