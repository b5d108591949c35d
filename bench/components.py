#!/usr/bin/env python3
"""Where the server's CPU goes, by component, from `perf script` output of a DWARF call-graph
recording (bench/run.sh's Q1 profile).

Each sample is charged to the innermost frame that belongs to a named component (the crate or
SecureCart module whose code runs, read from the function's own path: see `owner`), skipping
frames that belong to none (the allocator,
memcpy, the kernel): a sample in `malloc` called from sqlx's row decoding is sqlx's, a sample in
the kernel's `sendto` called through mio is mio's. Only the innermost frames are read, so the
16 KiB stack copies that cut deep async stacks short do not change the result.

    perf script -F comm,tid,ip,sym --no-inline | python3 bench/components.py
"""

import collections
import re
import sys

# First match wins, in this order: SecureCart's modules before the crate as a whole, and a
# crate's own frames before the generic adaptors (futures, tokio) that poll it.
COMPONENTS = [
    ("SecureCart: store (SQL, row mapping)", r"securecart::store"),
    ("SecureCart: spec completion", r"securecart::graphql::completion"),
    ("SecureCart: limits gate (measure, cost, bill)", r"securecart::graphql::limits"),
    ("SecureCart: resolvers and loaders", r"securecart::graphql"),
    ("SecureCart: HTTP transport", r"securecart::http"),
    ("SecureCart: other", r"securecart::"),
    ("sqlx (driver, row decoding)", r"sqlx_postgres|sqlx_sqlite|sqlx_core|^sqlite3"),
    ("async-graphql validation", r"async_graphql::validation"),
    ("async-graphql executor", r"async_graphql"),
    ("tracing (spans entered per poll)", r"tracing_subscriber|tracing_core|tracing::"),
    ("metrics", r"metrics"),
    ("serde_json", r"serde_json"),
    ("tower-governor (rate limit)", r"governor"),
    ("tower-http (CORS, ids, trace, compression)", r"tower_http"),
    ("axum (routing, extractors, middleware)", r"axum"),
    ("hyper (HTTP/1)", r"hyper"),
    ("socket I/O (mio: read, write, sendto)", r"\bmio::"),
    ("tokio (scheduler, timers)", r"tokio"),
    ("futures adaptors", r"futures"),
    ("formatting (core::fmt)", r"core::fmt|alloc::fmt"),
    ("hash maps (std, indexmap)", r"hashbrown|core::hash|indexmap"),
    ("chrono / decimal", r"chrono|rust_decimal"),
]
PATTERNS = [(name, re.compile(pattern)) for name, pattern in COMPONENTS]


def samples(lines):
    """Yields each sample's frames, innermost first."""
    frames = None
    for line in lines:
        if not line.strip():
            if frames is not None:
                yield frames
            frames = None
        elif line[0] not in " \t":
            frames = []
        elif frames is not None:
            parts = line.strip().split(" ", 1)
            frames.append(parts[1] if len(parts) > 1 else "?")
    if frames:
        yield frames


def strip_generics(text):
    """`a::b::<c::D>::e` -> `a::b::::e`: the generic arguments name other crates' types."""
    out, depth = [], 0
    for ch in text:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def owner(frame):
    """The path that says whose code a frame runs: a function's own path without its generic
    arguments (`resolve_container::<securecart::Product>` is async-graphql's code); for a trait
    method `<T as Trait>::f`, the type `T` (`<securecart::Product as OutputType>::resolve` is
    SecureCart's); for `drop_in_place<T>`, `T`."""
    symbol = re.sub(r"(\+0x[0-9a-f]+)?( \(.*\))?$", "", frame.strip())
    if symbol.startswith("core::ptr::drop_in_place<"):
        return owner(symbol[len("core::ptr::drop_in_place<"):-1])
    if symbol.startswith("<"):
        depth = 0
        for i, ch in enumerate(symbol):
            depth += ch == "<"
            depth -= ch == ">"
            if depth == 1 and symbol.startswith(" as ", i):
                symbol = symbol[1:i]
                break
            if depth == 0:
                symbol = symbol[1:i]
                break
        symbol = re.sub(r"^(&(mut )?|dyn |\*(const|mut) )+", "", symbol)
    return strip_generics(symbol)


def component(frames):
    for frame in frames:
        path = owner(frame)
        for name, pattern in PATTERNS:
            if pattern.search(path):
                return name
    return "unattributed (kernel, allocator, unknown)"


def main():
    counts = collections.Counter(component(f) for f in samples(sys.stdin))
    total = sum(counts.values())
    if not total:
        print("no samples")
        return
    print(f"CPU by component ({total} samples; each charged to its innermost named frame)")
    for name, n in counts.most_common():
        print(f"{100 * n / total:6.2f}%  {name}")


if __name__ == "__main__":
    main()
