#!/usr/bin/env python3
"""Schema compatibility check: every breaking GraphQL schema change must be named in the changelog.

Usage:
  python3 scripts/schema-compat.py OLD.graphql NEW.graphql --changelog CHANGELOG.md
  python3 scripts/schema-compat.py --git-base REV NEW.graphql --changelog CHANGELOG.md

With --git-base, OLD is `git show REV:schema/schema.graphql`, run in the current directory's
repository (REV may be any commit or tree); when that path does not exist at REV the check
prints "no previous schema; nothing to compare" and passes.

graphql-core's find_breaking_changes lists the breaking changes and find_dangerous_changes
the dangerous ones (printed as warnings, never failing). Each change is mapped to the schema
coordinate it concerns:

  type, scalar, enum, input, interface, union   Money
  field or input field                          Product.inStock
  field argument                                QueryRoot.products(sortBy:)
  enum value                                    ProductSortKeys.NAME
  directive / directive argument                @name / @name(arg:)

(a type removed from a union names the union; "no longer implements interface X" names the
implementing type; a directive location or repeatable flag removed names the directive).

A breaking change is *named* when its coordinate appears, as a whole coordinate, on a line of
the changelog that starts (in column 1) with `- BREAKING:`, anywhere in the file, outside
``` fenced blocks. "Whole" means the characters around it do not continue it: `Product` is
not named by `ProductStatus` nor by `Product.sku`, and `QueryRoot.products` is not named by
`QueryRoot.products(sortBy:)`. Backticks and punctuation around it are fine.

Exit status: 0 when every breaking change is named (or there are none), 1 when some are not
(they are listed), 2 on a usage or input error (unreadable file, invalid SDL, unknown REV,
or a change description this script cannot map to a coordinate).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GIT_SCHEMA_PATH = "schema/schema.graphql"
BREAKING_PREFIX = "- BREAKING:"

try:
    import graphql
    from graphql import (
        BreakingChangeType,
        DangerousChangeType,
        GraphQLError,
        build_schema,
        find_breaking_changes,
        find_dangerous_changes,
    )
except ImportError:  # pragma: no cover - depends on the machine
    print(
        "schema-compat: graphql-core is not installed; run "
        "`pip install -r scripts/requirements-ci.txt`",
        file=sys.stderr,
    )
    sys.exit(2)


class UsageError(Exception):
    """A problem with the inputs: reported on stderr, exit status 2."""


# --- change description -> schema coordinate -------------------------------------------
#
# The description formats are those of graphql-core 3.2 (graphql/utilities/
# find_breaking_changes.py), matched per change type because two texts are ambiguous
# without it: "X was removed." is a type or a directive, and "A was removed from B." is a
# directive argument or a directive location.

N = r"[_A-Za-z][_0-9A-Za-z]*"  # a GraphQL name
T = r"\S+"  # a printed type reference such as [String!]!


def _field(m: re.Match) -> str:
    return f"{m['type']}.{m['field']}"


def _arg(m: re.Match) -> str:
    return f"{m['type']}.{m['field']}({m['arg']}:)"


B = BreakingChangeType
D = DangerousChangeType

PATTERNS: dict[object, list[tuple[str, object]]] = {
    B.TYPE_REMOVED: [
        (rf"Standard scalar (?P<type>{N}) was removed because it is not referenced anymore\.", "type"),
        (rf"(?P<type>{N}) was removed\.", "type"),
    ],
    B.TYPE_CHANGED_KIND: [(rf"(?P<type>{N}) changed from an? .+ type to an? .+ type\.", "type")],
    B.TYPE_REMOVED_FROM_UNION: [
        (rf"(?P<member>{N}) was removed from union type (?P<type>{N})\.", "type")
    ],
    B.VALUE_REMOVED_FROM_ENUM: [
        (rf"(?P<value>{N}) was removed from enum type (?P<type>{N})\.", lambda m: f"{m['type']}.{m['value']}")
    ],
    B.REQUIRED_INPUT_FIELD_ADDED: [
        (rf"A required field (?P<field>{N}) on input type (?P<type>{N}) was added\.", _field)
    ],
    B.IMPLEMENTED_INTERFACE_REMOVED: [
        (rf"(?P<type>{N}) no longer implements interface (?P<iface>{N})\.", "type")
    ],
    B.FIELD_REMOVED: [(rf"(?P<type>{N})\.(?P<field>{N}) was removed\.", _field)],
    B.FIELD_CHANGED_KIND: [
        (rf"(?P<type>{N})\.(?P<field>{N}) changed type from {T} to {T}\.", _field)
    ],
    B.REQUIRED_ARG_ADDED: [
        (rf"A required arg (?P<arg>{N}) on (?P<type>{N})\.(?P<field>{N}) was added\.", _arg)
    ],
    B.ARG_REMOVED: [(rf"(?P<type>{N})\.(?P<field>{N}) arg (?P<arg>{N}) was removed\.", _arg)],
    B.ARG_CHANGED_KIND: [
        (
            rf"(?P<type>{N})\.(?P<field>{N}) arg (?P<arg>{N}) has changed type from {T} to {T}\.",
            _arg,
        )
    ],
    B.DIRECTIVE_REMOVED: [(rf"(?P<dir>{N}) was removed\.", lambda m: f"@{m['dir']}")],
    B.DIRECTIVE_ARG_REMOVED: [
        (rf"(?P<arg>{N}) was removed from (?P<dir>{N})\.", lambda m: f"@{m['dir']}({m['arg']}:)")
    ],
    B.REQUIRED_DIRECTIVE_ARG_ADDED: [
        (
            rf"A required arg (?P<arg>{N}) on directive (?P<dir>{N}) was added\.",
            lambda m: f"@{m['dir']}({m['arg']}:)",
        )
    ],
    B.DIRECTIVE_REPEATABLE_REMOVED: [
        (rf"Repeatable flag was removed from (?P<dir>{N})\.", lambda m: f"@{m['dir']}")
    ],
    B.DIRECTIVE_LOCATION_REMOVED: [
        (rf"(?P<loc>[A-Z_]+) was removed from (?P<dir>{N})\.", lambda m: f"@{m['dir']}")
    ],
    # Dangerous changes: coordinates are only shown, never required in the changelog.
    D.VALUE_ADDED_TO_ENUM: [
        (rf"(?P<value>{N}) was added to enum type (?P<type>{N})\.", lambda m: f"{m['type']}.{m['value']}")
    ],
    D.TYPE_ADDED_TO_UNION: [(rf"(?P<member>{N}) was added to union type (?P<type>{N})\.", "type")],
    D.OPTIONAL_INPUT_FIELD_ADDED: [
        (rf"An optional field (?P<field>{N}) on input type (?P<type>{N}) was added\.", _field)
    ],
    D.OPTIONAL_ARG_ADDED: [
        (rf"An optional arg (?P<arg>{N}) on (?P<type>{N})\.(?P<field>{N}) was added\.", _arg)
    ],
    D.IMPLEMENTED_INTERFACE_ADDED: [
        (rf"(?P<iface>{N}) added to interfaces implemented by (?P<type>{N})\.", "type")
    ],
    D.ARG_DEFAULT_VALUE_CHANGE: [
        (rf"(?P<type>{N})\.(?P<field>{N}) arg (?P<arg>{N}) defaultValue was removed\.", _arg),
        (
            rf"(?P<type>{N})\.(?P<field>{N}) arg (?P<arg>{N}) has changed defaultValue from .* to .*\.",
            _arg,
        ),
    ],
}


def coordinate(change_type: object, description: str) -> str | None:
    """The schema coordinate a change concerns, or None for a description not understood."""
    for pattern, make in PATTERNS.get(change_type, []):
        m = re.fullmatch(pattern, description, flags=re.DOTALL)
        if m:
            return m[make] if isinstance(make, str) else make(m)
    return None


# --- the changelog ------------------------------------------------------------------------


@dataclass
class Mention:
    line_no: int
    text: str
    on_breaking_line: bool


def coordinate_regex(coord: str) -> re.Pattern:
    """Matches `coord` as a whole: not continued by a name character, `.name` or `(`."""
    return re.compile(
        r"(?<![_0-9A-Za-z.@])" + re.escape(coord) + r"(?![_0-9A-Za-z]|\.[_A-Za-z]|\()"
    )


def changelog_lines(text: str) -> list[tuple[int, str, bool]]:
    """(line number, line, starts with `- BREAKING:`) for each line outside ``` fences."""
    out, fenced = [], False
    for no, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((no, line, line.startswith(BREAKING_PREFIX)))
    return out


def mentions(coord: str, lines: list[tuple[int, str, bool]]) -> list[Mention]:
    rx = coordinate_regex(coord)
    return [Mention(no, line, brk) for no, line, brk in lines if rx.search(line)]


# --- inputs -----------------------------------------------------------------------------


def read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from e


def git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True)
    except OSError as e:
        raise UsageError(f"cannot run git: {e}") from e


def read_git_base(rev: str) -> str | None:
    """The schema at `rev`, or None when the path does not exist there."""
    if git("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}").returncode != 0:
        raise UsageError(
            f"--git-base {rev}: not a commit or tree in this repository "
            "(in CI: is it fetched? a shallow clone may lack it)"
        )
    spec = f"{rev}:{GIT_SCHEMA_PATH}"
    if git("cat-file", "-e", spec).returncode != 0:
        return None
    shown = git("show", spec)
    if shown.returncode != 0:
        raise UsageError(f"git show {spec} failed: {shown.stderr.strip()}")
    return shown.stdout


def parse_schema(sdl: str, label: str):
    try:
        return build_schema(sdl)
    except (GraphQLError, TypeError) as e:
        raise UsageError(f"{label} is not a valid schema: {e}") from e


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="schema-compat.py",
        description="Fail when a breaking GraphQL schema change is not named on a "
        "`- BREAKING:` line of the changelog.",
        usage="%(prog)s (OLD.graphql | --git-base REV) NEW.graphql --changelog CHANGELOG.md",
    )
    parser.add_argument("schemas", nargs="+", metavar="SCHEMA", help="OLD and NEW, or NEW with --git-base")
    parser.add_argument("--changelog", required=True, help="the changelog that names breaking changes")
    parser.add_argument(
        "--git-base", metavar="REV", help=f"read OLD from `git show REV:{GIT_SCHEMA_PATH}`"
    )
    args = parser.parse_args(argv)

    want = 1 if args.git_base else 2
    if len(args.schemas) != want:
        parser.error(
            "with --git-base give only NEW.graphql" if args.git_base else "give OLD.graphql and NEW.graphql"
        )

    try:
        if args.git_base:
            old_sdl = read_git_base(args.git_base)
            if old_sdl is None:
                print(f"schema-compat: {args.git_base}:{GIT_SCHEMA_PATH} does not exist")
                print("no previous schema; nothing to compare")
                return 0
            old_label = f"{args.git_base}:{GIT_SCHEMA_PATH}"
        else:
            old_label = args.schemas[0]
            old_sdl = read_file(old_label, "old schema")
        new_label = args.schemas[-1]
        new_sdl = read_file(new_label, "new schema")
        changelog = read_file(args.changelog, "changelog")

        old_schema = parse_schema(old_sdl, old_label)
        new_schema = parse_schema(new_sdl, new_label)
        breaking = find_breaking_changes(old_schema, new_schema)
        dangerous = find_dangerous_changes(old_schema, new_schema)

        unknown = [c for c in breaking if coordinate(c.type, c.description) is None]
        if unknown:
            raise UsageError(
                f"cannot map these graphql-core {graphql.__version__} descriptions to a schema "
                "coordinate (update PATTERNS in scripts/schema-compat.py):\n"
                + "\n".join(f"  {c.type.name}: {c.description}" for c in unknown)
            )
    except UsageError as e:
        print(f"schema-compat: error: {e}", file=sys.stderr)
        return 2

    lines = changelog_lines(changelog)
    named, unnamed = [], []
    for c in breaking:
        coord = coordinate(c.type, c.description)
        found = mentions(coord, lines)
        on_breaking = [m for m in found if m.on_breaking_line]
        (named if on_breaking else unnamed).append((c, coord, on_breaking or found))

    print(f"schema-compat: {old_label} -> {new_label}, changelog {args.changelog}")
    for c, coord, found in named:
        print(f"  breaking, named ({args.changelog}:{found[0].line_no}): {coord}  [{c.description}]")
    for c in dangerous:
        coord = coordinate(c.type, c.description) or "?"
        print(f"  warning: dangerous change: {coord}  [{c.description}]")
    print(f"schema-compat: {len(breaking)} breaking ({len(named)} named), {len(dangerous)} dangerous")

    if not unnamed:
        return 0
    print(
        f"schema-compat: FAIL: {len(unnamed)} breaking change(s) not named on a "
        f"`{BREAKING_PREFIX}` line of {args.changelog}:"
    )
    for c, coord, found in unnamed:
        hint = ""
        if found:
            where = ", ".join(str(m.line_no) for m in found[:5])
            hint = f" (mentioned on line {where}, but not on a line starting with `{BREAKING_PREFIX}`)"
        print(f"  - {coord}  [{c.type.name}: {c.description}]{hint}")
    print(
        f"Add a line `{BREAKING_PREFIX} <coordinate> — why, and what to use instead` "
        f"for each, under the Unreleased section of {args.changelog}."
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
