#!/usr/bin/env bash
# Follows the README as a new user would, running its marked blocks exactly as printed
# (scripts/readme-blocks.py extracts them): the quick start (`cargo run`, `cargo test`), every
# example query against that server, the token commands, development on PostgreSQL, and the
# production example on PostgreSQL and Redis with a token-authenticated query.
#
# A command that serves (a `cargo run` with no subcommand but `serve`) runs in the background
# until it prints its banner, as in a second terminal; the rest run in this shell, so `export`s
# carry on to later blocks. Run from a fresh clone: it uses ports 8080 and 9090, writes
# ./securecart.db, and drops and recreates the PostgreSQL database `securecart` on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# The production block's `cargo run --release` is a release build from scratch, the longest step
# of CI (10 to 15 minutes on this machine kind). This script checks that the README's commands
# work as printed, not how fast the binary they build runs, so the release profile is built here
# at opt-level 1, without LTO or line tables: the same code and behaviour, in about two thirds
# of the time (6m23s against 9m48s from scratch, measured in the same hour).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_DEBUG=false
log=$(mktemp -d)
server=""
stop_server() {
  if [ -n "$server" ]; then
    kill -TERM -- "-$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap 'stop_server; rm -rf "$log"' EXIT

serves() { # a `cargo run` that starts the server (no subcommand, or `serve`)
  [[ "$1" =~ (^|[[:space:]])cargo\ run ]] && ! [[ "$1" =~ --\ (migrate|seed|token|schema) ]]
}

run_block() { # $1: block name; each command as printed
  echo "---- README block: $1"
  while IFS= read -r line; do
    [[ -z "${line// }" || "$line" =~ ^[[:space:]]*# ]] && continue
    echo "\$ $line"
    if serves "$line"; then
      stop_server
      setsid bash -c "$line" >"$log/server.log" 2>&1 &
      server=$!
      for _ in $(seq 1 1800); do
        grep -q "SecureCart API listening on" "$log/server.log" && break
        kill -0 "$server" 2>/dev/null || { cat "$log/server.log"; echo "the server exited"; exit 1; }
        sleep 0.5
      done
      grep -q "SecureCart API listening on" "$log/server.log" || { cat "$log/server.log"; echo "no banner"; exit 1; }
      grep "SecureCart API listening on" "$log/server.log"
    else
      eval "$line"
    fi
  done < <(python3 scripts/readme-blocks.py "$1")
}

output_of_block() { # runs a block of queries in a subshell; prints its output
  (set -euo pipefail; eval "$(python3 scripts/readme-blocks.py "$1")")
}

expect_data() { # $1: label, $2: GraphQL answers (JSON bodies, back to back); each has data, no errors
  python3 - "$1" "$2" <<'PY'
import json, sys
label, text = sys.argv[1], sys.argv[2]
decoder, bodies, i = json.JSONDecoder(), [], 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    body, i = decoder.raw_decode(text, i)
    bodies.append(body)
assert bodies, f"{label}: no answer"
for body in bodies:
    assert body.get("data") and not body.get("errors"), f"{label}: {body}"
print(f"{label}: {len(bodies)} answers with data, no errors")
PY
}

# Fresh state, as on a new machine (not README commands: they only clear what an earlier run left).
rm -f securecart.db securecart.db-shm securecart.db-wal
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS securecart WITH (FORCE)"

run_block quickstart
out=$(output_of_block examples)
expect_data "example queries" "$out"
[ "$(python3 -c 'import json,sys; print(len(json.JSONDecoder().raw_decode(sys.argv[1])[0]["data"]["products"]["edges"]))' "$out")" = 5 ]
[ "$(grep -o '"data"' <<<"$out" | wc -l)" = "$(python3 scripts/readme-blocks.py examples | grep -c '^curl')" ] || { echo "not every example answered: $out"; exit 1; }
tokens=$(output_of_block tokens)
[ "$(echo "$tokens" | grep -cE '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$')" = 4 ] || { echo "tokens: $tokens"; exit 1; }
echo "tokens: 4 printed"
stop_server

run_block postgres-dev
body=$(curl -fsS localhost:8080/graphql -H 'content-type: application/json' -d '{"query":"{ products(first: 1) { totalCount } }"}')
expect_data "postgres (development)" "$body"
stop_server

run_block production
ready=$(curl -fsS localhost:9090/readyz 2>/dev/null || curl -fsS localhost:8080/readyz)
echo "readyz: $ready"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["status"]=="ready" and r["checks"]["bus"]=="ok", r' "$ready"
answer=$(output_of_block production-query)
expect_data "production query with a token" "$answer"
python3 -c 'import json,sys; d=json.loads(sys.argv[1])["data"]; assert d["me"]["subject"]=="root" and "ADMIN" in d["me"]["roles"], d' "$answer"
stop_server
echo "README walkthrough: every marked block ran as printed"
