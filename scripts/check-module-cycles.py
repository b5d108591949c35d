#!/usr/bin/env python3
"""Fails when modules of src/ import each other in a cycle.

Two graphs are checked, from the `crate::` and `super::` paths each file names outside its
`#[cfg(test)]` module:
- the top-level modules (src/<m>.rs or src/<m>/): e.g. `http` and `rest` must not both name
  the other (the routers are composed in `app`);
- the files of each folder among themselves (siblings): e.g. `rest/v1` and `rest/v2`.
A module naming its own children (and children naming their parent) is not a cycle here.

Usage: python3 scripts/check-module-cycles.py [src]   (exit 1 and the cycles when any)
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")


def module_of(root: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def code_without_tests(text: str) -> str:
    # Everything from the first `#[cfg(test)]` on is test code in this crate's layout.
    return text.split("#[cfg(test)]", 1)[0]


def referenced(text: str, here: list[str], is_mod: bool) -> set[tuple[str, ...]]:
    """Module paths (as tuples from the crate root) that `text` names."""
    out = set()
    # `use a::{b, c::d}` groups: expand one level, which is what this crate writes.
    for m in re.finditer(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}", text):
        base, prefix, group = m.group(1), m.group(2), m.group(3)
        for item in group.split(","):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self":
                out.add(resolve(base, prefix + "::" + item, here, is_mod))
    for m in PATH.finditer(text):
        if m.group(2) != "::{":
            out.add(resolve(m.group(1), m.group(2), here, is_mod))
    return {p for p in out if p}


def resolve(base: str, rest: str, here: list[str], is_mod: bool) -> tuple[str, ...]:
    names = [n for n in rest.split("::") if n]
    if base == "crate":
        return tuple(names)
    # `super` of a mod.rs is the folder's parent; of a file, the folder it sits in.
    parent = here[:-1] if not is_mod else here[:-1]
    while names and names[0] == "super":
        names.pop(0)
        parent = parent[:-1]
    return tuple(parent + names)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    files = [f for f in root.rglob("*.rs") if f.name not in ("lib.rs", "main.rs")]
    modules = {tuple(module_of(root, f)) for f in files}
    top: dict[str, set[str]] = {m[0]: set() for m in modules if m}
    siblings: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for f in files:
        here = module_of(root, f)
        text = code_without_tests(f.read_text())
        for path in referenced(text, here, f.name == "mod.rs"):
            # The longest prefix of `path` that is a module of ours.
            target = next((path[:n] for n in range(len(path), 0, -1) if path[:n] in modules), None)
            if not target:
                continue
            top.setdefault(here[0], set())
            if target[0] != here[0]:
                top[here[0]].add(target[0])
            # Siblings: same folder, both one level below it.
            if len(here) >= 2 and len(target) >= len(here) and list(target[: len(here) - 1]) == here[:-1]:
                sibling = target[len(here) - 1]
                if sibling != here[-1]:
                    folder = tuple(here[:-1])
                    siblings.setdefault(folder, {}).setdefault(here[-1], set()).add(sibling)
    problems = [("top-level modules", c) for c in cycles(top)]
    for folder, graph in sorted(siblings.items()):
        problems += [("/".join(folder), c) for c in cycles(graph)]
    for where, component in problems:
        print(f"import cycle among {where}: {' <-> '.join(component)}")
    if not problems:
        edges = sum(len(v) for v in top.values())
        print(f"no import cycles: {len(top)} top-level modules ({edges} edges), {len(siblings)} folders checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
