#!/usr/bin/env bash
# Self-contained test of scripts/schema-compat.py on copies of schema/schema.graphql:
#   (a) breaking changes (field removed, argument type changed, enum value removed) with a
#       changelog that does not name them, or only nearly names them: exit 1, coordinates listed
#   (b) the same with a changelog that names them on `- BREAKING:` lines: exit 0 (and only
#       some named: exit 1 listing the rest)
#   (c) non-breaking changes (new optional fields) with an empty changelog: exit 0
#   (d) identical schemas: exit 0
#   (e) one small schema pair that makes every BreakingChangeType of graphql-core: each maps
#       to its coordinate (so a graphql-core upgrade that rewords a description fails here)
#   (f) --git-base against trees of a scratch repository (no commits are made)
#   (g) input errors: exit 2
# Prints `schema-compat tests: N passed, M failed` and exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
script="$root/scripts/schema-compat.py"
reqs="$root/scripts/requirements-ci.txt"
schema="$root/schema/schema.graphql"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# graphql-core, from the pinned requirements when it is missing.
pin=$(sed -n 's/^graphql-core==\([^ #]*\).*/\1/p' "$reqs")
if ! python3 -c 'import graphql' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check -r "$reqs" >/dev/null
fi
have=$(python3 -c 'import graphql; print(graphql.__version__)')
[ "$have" = "$pin" ] || echo "note: graphql-core $have is installed; scripts/requirements-ci.txt pins $pin"

passed=0
failed=0
out="$work/out.txt"

# check NAME EXPECTED_RC [--has TEXT]... [--lacks TEXT]... -- COMMAND...
check() {
  local name=$1 want=$2; shift 2
  local has=() lacks=()
  while [ "$1" != "--" ]; do
    case $1 in
      --has) has+=("$2") ;;
      --lacks) lacks+=("$2") ;;
      *) echo "check: bad option $1" >&2; exit 2 ;;
    esac
    shift 2
  done
  shift
  local rc=0 why=""
  "$@" >"$out" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || why="exit $rc, wanted $want"
  local t
  for t in ${has[@]+"${has[@]}"}; do
    grep -qF -- "$t" "$out" || why="${why:+$why; }output lacks: $t"
  done
  for t in ${lacks[@]+"${lacks[@]}"}; do
    if grep -qF -- "$t" "$out"; then why="${why:+$why; }output has: $t"; fi
  done
  if [ -z "$why" ]; then
    passed=$((passed + 1)); echo "ok   - $name"
  else
    failed=$((failed + 1)); echo "FAIL - $name: $why"; sed 's/^/     | /' "$out"
  fi
}
compat() { python3 "$script" "$@"; }

# Line edits of an SDL file, with the docstring above a removed member removed too.
cat >"$work/edit.py" <<'PY'
import sys

src, dst, *ops = sys.argv[1:]
lines = open(src, encoding="utf-8").read().split("\n")

def block(kind_name):
    start = next(i for i, l in enumerate(lines) if l.startswith(kind_name + " ") or l == kind_name + " {")
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return start, end

def member(kind_name, line):
    start, end = block(kind_name)
    hits = [i for i in range(start, end) if lines[i] == line]
    if len(hits) != 1:
        sys.exit(f"edit.py: {line!r} found {len(hits)} times in {kind_name}")
    return hits[0]

while ops:
    op = ops.pop(0)
    if op == "drop":            # drop 'type Product' '\tsku: String!'
        kind_name, line = ops.pop(0), ops.pop(0)
        i = j = member(kind_name, line)
        if lines[i - 1].strip() == '"""':
            i -= 1
            while lines[i - 1].strip() != '"""':
                i -= 1
            i -= 1
        del lines[i : j + 1]
    elif op == "sub":           # sub 'type QueryRoot' OLD_LINE NEW_LINE
        kind_name, old, new = ops.pop(0), ops.pop(0), ops.pop(0)
        lines[member(kind_name, old)] = new
    elif op == "add":           # add 'type Product' '\tweightGrams: Int'
        kind_name, line = ops.pop(0), ops.pop(0)
        lines.insert(block(kind_name)[1], line)
    else:
        sys.exit(f"edit.py: unknown op {op}")
open(dst, "w", encoding="utf-8").write("\n".join(lines))
PY
edit() { python3 "$work/edit.py" "$@"; }
T=$'\t'

old="$work/old.graphql"
cp "$schema" "$old"
: >"$work/empty.md"

# (a) breaking changes, not named
broken="$work/broken.graphql"
edit "$old" "$broken" \
  drop 'type Product' "${T}sku: String!" \
  sub 'type QueryRoot' "${T}${T}sortBy: ProductSortKeys" "${T}${T}sortBy: String" \
  drop 'enum ProductStatus' "${T}ARCHIVED"
if cmp -s "$old" "$broken"; then echo "test setup: the edits changed nothing" >&2; exit 1; fi

cat >"$work/unnamed.md" <<'MD'
# Changelog

## Unreleased

- BREAKING: `Money.amount` is now a string — an unrelated entry.
MD
check "(a) breaking changes not named: exit 1, each coordinate listed" 1 \
  --has "3 breaking (0 named), 0 dangerous" \
  --has "not named" \
  --has "- Product.sku  [FIELD_REMOVED" \
  --has "- QueryRoot.products(sortBy:)  [ARG_CHANGED_KIND" \
  --has "- ProductStatus.ARCHIVED  [VALUE_REMOVED_FROM_ENUM" \
  -- compat "$old" "$broken" --changelog "$work/unnamed.md"

cat >"$work/nearly.md" <<'MD'
# Changelog

## Unreleased

- BREAKING: `Product.skuCode` was renamed (a longer name is another coordinate).
* BREAKING: QueryRoot.products(sortBy:) (a `*` bullet is not `- BREAKING:`)
  - BREAKING: QueryRoot.products(sortBy:) (indented: not in column 1)
- Breaking: ProductStatus.ARCHIVED (wrong case)
- BREAKING: QueryRoot.products changed (the field, not its argument)
- BREAKING: ProductStatus.ARCHIVEDX (a longer name)

```
- BREAKING: Product.sku (inside a fenced block: an example, not an entry)
```
MD
check "(a) nearly named (other bullet, indent, case, longer names, fenced): exit 1 with hints" 1 \
  --has "3 breaking (0 named)" \
  --has "- Product.sku  [FIELD_REMOVED" \
  --has "- QueryRoot.products(sortBy:)  [ARG_CHANGED_KIND" \
  --has "- ProductStatus.ARCHIVED  [VALUE_REMOVED_FROM_ENUM" \
  --has "(mentioned on line 6, 7, but not" \
  --has "(mentioned on line 8, but not" \
  -- compat "$old" "$broken" --changelog "$work/nearly.md"

# (b) named
cat >"$work/named.md" <<'MD'
# Changelog

## Unreleased

- BREAKING: `Product.sku` removed — SKUs are internal now; use `Product.id`.
- BREAKING: `QueryRoot.products(sortBy:)` takes a String — pass the sort key's name.

## 0.1.0

- BREAKING: ProductStatus.ARCHIVED removed; archived products are no longer returned.
MD
check "(b) all named on - BREAKING: lines (any section): exit 0" 0 \
  --has "3 breaking (3 named), 0 dangerous" \
  --has "named (" \
  --lacks "FAIL" \
  -- compat "$old" "$broken" --changelog "$work/named.md"

head -n 6 "$work/named.md" >"$work/partly.md"
check "(b) two of three named: exit 1 listing only the third" 1 \
  --has "3 breaking (2 named)" \
  --has "- ProductStatus.ARCHIVED  [" \
  --lacks "- Product.sku  [" \
  -- compat "$old" "$broken" --changelog "$work/partly.md"

# (c) non-breaking: new optional fields (on an input type that is "dangerous": a warning)
grown="$work/grown.graphql"
edit "$old" "$grown" \
  add 'type Product' "${T}weightGrams: Int" \
  add 'input ProductFilterInput' "${T}color: String"
check "(c) optional fields added, empty changelog: exit 0, dangerous change warned" 0 \
  --has "0 breaking (0 named), 1 dangerous" \
  --has "warning: dangerous change: ProductFilterInput.color" \
  -- compat "$old" "$grown" --changelog "$work/empty.md"

# (d) identical
check "(d) identical schemas: exit 0" 0 \
  --has "0 breaking (0 named), 0 dangerous" \
  -- compat "$old" "$schema" --changelog "$work/empty.md"

# (e) every kind of breaking change that graphql-core reports
cat >"$work/all-old.graphql" <<'SDL'
directive @gone on FIELD
directive @tag(name: String, extra: Int) repeatable on FIELD | QUERY
interface Node { id: ID! }
interface Named { name: String title: String }
type Query {
  a: A
  search: SearchResult
  kind: Kind
  items(first: Int, filter: String, old: Int): [A]
  ratio: Float
  named: Named
}
type A implements Node { id: ID! name: String removed: String }
type B { id: ID! }
union SearchResult = A | B
enum Color { RED GREEN }
input Filter { x: Int color: Color }
scalar Kind
type Removed { id: ID }
SDL
cat >"$work/all-new.graphql" <<'SDL'
directive @tag(name: String, req: Int!) on FIELD
interface Node { id: ID! }
interface Named { title: String }
type Query {
  a: A
  search: SearchResult
  kind: Kind
  items(first: Int, filter: Int, req: Int!): [A]
  named: Named
}
type A { id: ID! name: Int }
type B { id: ID! }
union SearchResult = A
enum Color { RED }
input Filter { x: String color: Color y: Int! }
enum Kind { K }
SDL
all_coords=(Removed Float Kind SearchResult Color.GREEN Filter.y A A.removed Named.name Query.ratio
  A.name Filter.x "Query.items(req:)" "Query.items(old:)" "Query.items(filter:)"
  @gone "@tag(extra:)" "@tag(req:)" @tag)
mapfile -t all_types < <(python3 -c 'from graphql import BreakingChangeType as B; print("\n".join(t.name for t in B))')
has=()
for c in "${all_coords[@]}"; do has+=(--has "- $c  ["); done
for t in "${all_types[@]}"; do has+=(--has "[$t: "); done
check "(e) each of the ${#all_types[@]} BreakingChangeTypes maps to its coordinate" 1 \
  "${has[@]}" -- compat "$work/all-old.graphql" "$work/all-new.graphql" --changelog "$work/empty.md"
{ echo "## Unreleased"; for c in "${all_coords[@]}"; do echo "- BREAKING: \`$c\` — test."; done; } >"$work/all.md"
check "(e) all of them named: exit 0" 0 --lacks "FAIL" \
  -- compat "$work/all-old.graphql" "$work/all-new.graphql" --changelog "$work/all.md"

# (f) --git-base REV: OLD from `git show REV:schema/schema.graphql` in the current repository
repo="$work/repo"
mkdir -p "$repo/schema"
git -C "$repo" init -q
echo "no schema yet" >"$repo/README"
git -C "$repo" add README
tree_without=$(git -C "$repo" write-tree)
cp "$old" "$repo/schema/schema.graphql"
git -C "$repo" add schema/schema.graphql
tree_with=$(git -C "$repo" write-tree)
in_repo() { (cd "$repo" && compat "$@"); }
check "(f) --git-base where schema/schema.graphql does not exist: exit 0" 0 \
  --has "no previous schema; nothing to compare" \
  -- in_repo --git-base "$tree_without" "$broken" --changelog "$work/empty.md"
check "(f) --git-base with the schema, breaking changes not named: exit 1" 1 \
  --has "3 breaking (0 named)" --has "- Product.sku  [" \
  -- in_repo --git-base "$tree_with" "$broken" --changelog "$work/unnamed.md"
check "(f) --git-base with the schema, named: exit 0" 0 \
  --has "3 breaking (3 named)" \
  -- in_repo --git-base "$tree_with" "$broken" --changelog "$work/named.md"
check "(f) --git-base with an unknown revision: exit 2" 2 \
  --has "not a commit or tree" \
  -- in_repo --git-base no-such-rev "$broken" --changelog "$work/empty.md"

# (g) input errors
echo "type Query { oops" >"$work/invalid.graphql"
check "(g) invalid SDL: exit 2" 2 --has "is not a valid schema" \
  -- compat "$old" "$work/invalid.graphql" --changelog "$work/empty.md"
check "(g) missing changelog: exit 2" 2 --has "cannot read changelog" \
  -- compat "$old" "$broken" --changelog "$work/no-such.md"
check "(g) --git-base with two schemas: exit 2" 2 --has "only NEW.graphql" \
  -- compat --git-base HEAD "$old" "$broken" --changelog "$work/empty.md"

echo "schema-compat tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
