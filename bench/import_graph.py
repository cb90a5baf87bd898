"""The import graph of runner/, with its folders as floors: prints figures, asserts nothing.

    python bench/import_graph.py            # figures and the list of climbs
    python bench/import_graph.py --quiet    # figures only

Nodes. Each folder of runner/ (spec, data, train, ...) is one node; each module at the top of the
package (errors, console, files, stopping, redact, cli, __main__, ...) is a node of its own.
Edges. Every import of one of runner's modules counts, at the top of a module or inside a function,
`import runner.x`, `from runner.x import y` and relative imports alike.

The floor order. A node sits above what it imports. The strongly connected components of the node
graph (Tarjan) are ordered topologically, what is imported first (lowest floor); inside a component
(nodes that import each other through a cycle) the order is the one that makes the fewest module
imports climb (an exact minimum feedback arc set, by dynamic programming over the component's subsets),
ties broken by the nodes' names. With no cycle this is just a topological order.

Figures.
- climbs: module imports (importing module, imported module) that run from a lower floor to a higher
  one; by construction each is an import of a node that imports the importer's node back, directly or
  through a cycle;
- mutual folder pairs: pairs of nodes that each import the other directly;
- cyclic components: components of two or more nodes;
- imports inside functions, and cross-folder imports of a private (`_name`) name.
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "runner"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def node_of(module: str) -> str:
    """`runner.data.prepare` -> `data`; `runner.errors` -> `errors`; `runner` -> `runner`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports_of(path: Path, known: set[str], own: str) -> list[tuple[str, str, bool]]:
    """(imported module, names taken, inside a function) for each runner import in `path`."""
    found = []
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested = set()
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(func) if n is not func)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(head + ([base] if base else []))
            pairs = []
            for alias in node.names:
                full = f"{base}.{alias.name}"
                pairs.append((full, "") if full in known else (base, alias.name))
        else:
            continue
        for name, taken in pairs:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != own and name.startswith("runner"):
                found.append((name, taken, id(node) in nested))
    return found


def components(nodes: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each emitted after every component it reaches."""
    index, low, stack, on, out = {}, {}, [], set(), []
    succ = {n: sorted(b for a, b in edges if a == n) for n in nodes}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return out


def best_order(comp: list[str], weight: dict[tuple[str, str], int]) -> list[str]:
    """The order of `comp`, lowest floor first, with the least weight of edges running upwards."""
    if len(comp) == 1:
        return comp
    n = len(comp)
    cost = {0: (0, ())}
    for mask in range(1, 1 << n):
        best = None
        for i in range(n):
            if not mask >> i & 1:
                continue
            rest = mask & ~(1 << i)
            base, order = cost[rest]
            # comp[i] goes on top of the nodes in `rest`: imports from below to it climb
            add = sum(weight.get((comp[j], comp[i]), 0) for j in range(n) if rest >> j & 1)
            candidate = (base + add, order + (comp[i],))
            if best is None or candidate < best:
                best = candidate
        cost[mask] = best
    return list(cost[(1 << n) - 1][1])


def measure() -> dict:
    found = modules()
    known = set(found)
    module_edges = {}  # (importer, imported) -> [(taken, nested)]
    for name, path in found.items():
        for target, taken, nested in imports_of(path, known, name):
            module_edges.setdefault((name, target), []).append((taken, nested))
    nodes = sorted({node_of(m) for m in found})
    weight: dict[tuple[str, str], int] = {}
    for a, b in module_edges:
        pair = (node_of(a), node_of(b))
        if pair[0] != pair[1]:
            weight[pair] = weight.get(pair, 0) + 1
    floors = []
    comps = components(nodes, set(weight))
    for comp in comps:
        floors += best_order(comp, weight)
    floor = {n: i for i, n in enumerate(floors)}
    climbs = sorted(f"{a} -> {b}" for a, b in module_edges if floor[node_of(a)] < floor[node_of(b)])
    mutual = sorted(f"{a} <-> {b}" for a, b in itertools.combinations(nodes, 2)
                    if (a, b) in weight and (b, a) in weight)
    private = sorted({
        f"{a} imports {taken} from {b}"
        for (a, b), uses in module_edges.items()
        for taken, _ in uses
        if taken.startswith("_") and not taken.startswith("__") and node_of(a) != node_of(b)
    })
    nested = sum(1 for uses in module_edges.values() for _, inside in uses if inside)
    return {
        "modules": len(found),
        "nodes": len(nodes),
        "floors": floors,
        "cyclic": [c for c in comps if len(c) > 1],
        "climbs": climbs,
        "mutual": mutual,
        "private": private,
        "nested": nested,
        "imports": sum(len(uses) for uses in module_edges.values()),
    }


def main(argv: list[str]) -> None:
    m = measure()
    print(f"modules {m['modules']}, nodes {m['nodes']}, runner imports {m['imports']} "
          f"({m['nested']} inside functions)")
    print("floors, lowest first: " + " < ".join(m["floors"]))
    print(f"cyclic components: {len(m['cyclic'])}" + "".join(f"\n  {{{', '.join(c)}}}" for c in m["cyclic"]))
    print(f"imports climbing back up: {len(m['climbs'])}")
    print(f"folder pairs importing each other both ways: {len(m['mutual'])}")
    print(f"cross-folder imports of a private name: {len(m['private'])}")
    if "--quiet" not in argv:
        for title, key in (("climbs", "climbs"), ("mutual pairs", "mutual"), ("private names", "private")):
            if m[key]:
                print(f"\n{title}:")
                for line in m[key]:
                    print(f"  {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
