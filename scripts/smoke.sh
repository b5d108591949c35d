#!/usr/bin/env bash
# End-to-end smoke test of the built server, as a new user would run it:
#   1. `cargo run` in an empty folder (embedded SQLite, demo catalog seeded at start-up);
#      the README's curl query returns five products; GraphiQL works in headless Chromium
#      with every non-local request blocked (needs `npm ci --prefix playground` and chromium).
#   2. the same against PostgreSQL when TEST_DATABASE_URL is set (a scratch database).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --manifest-path "$root/Cargo.toml" --quiet
bin="$root/target/debug/securecart"
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

QUERY='{"query":"{ products(first: 5) { edges { node { id name price { amount currencyCode } inventory { available } vendor { name } } } } }"}'

serve_and_check() { # $1: label; the environment carries DATABASE_URL when needed
  local port; port=$(free_port)
  (cd "$work" && SECURECART_LISTEN="127.0.0.1:$port" SECURECART_INTERNAL_LISTEN=127.0.0.1:0 SECURECART_PLAYGROUND_DIR="$root/playground" exec "$bin" serve >"$work/server.log" 2>&1) &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  local body
  body=$(curl -fsS "http://127.0.0.1:$port/graphql" -H 'content-type: application/json' -d "$QUERY")
  local count
  count=$(printf '%s' "$body" | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["data"]["products"]["edges"]; assert all(n["node"]["vendor"]["name"] and n["node"]["price"]["currencyCode"] for n in e); print(len(e))')
  [ "$count" = 5 ] || { echo "$1: expected 5 products, got $count: $body"; cat "$work/server.log"; exit 1; }
  echo "$1: curl returned 5 products"
  if [ -d "$root/playground/node_modules/playwright-core" ] && [ -x /usr/bin/chromium ]; then
    node "$root/scripts/graphiql-check.mjs" "http://127.0.0.1:$port/graphql" "$work/graphiql-$1.png"
  else
    echo "$1: GraphiQL browser check skipped (run npm ci --prefix playground and install chromium)"
    [ "${CI:-}" = true ] && exit 1
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

serve_and_check sqlite
[ -f "$work/securecart.db" ] || { echo "sqlite: no securecart.db in the working directory"; exit 1; }

# Without local assets the page falls back to the CDN, with the pinned SRI hashes.
port=$(free_port)
empty=$(mktemp -d)
(cd "$work" && SECURECART_LISTEN="127.0.0.1:$port" SECURECART_INTERNAL_LISTEN=127.0.0.1:0 SECURECART_PLAYGROUND_DIR="$empty" exec "$bin" serve >"$work/server-cdn.log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
python3 "$root/scripts/check-cdn-fallback.py" "http://127.0.0.1:$port/graphql"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
rmdir "$empty"

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  db="securecart_smoke_$$"
  admin="$TEST_DATABASE_URL"
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  DATABASE_URL="${admin%/*}/$db" serve_and_check postgres
  psql "$admin" -qc "DROP DATABASE $db WITH (FORCE)"
else
  echo "postgres smoke skipped: TEST_DATABASE_URL is unset"
  [ "${CI:-}" = true ] && exit 1
fi
echo "smoke: ok"
