#!/usr/bin/env bash
# Property-based tests of the REST API from its own OpenAPI documents (v1 and v2): no 5xx, every
# status, content type, header and body as documented. Runs the built server on a scratch
# SQLite database with the demo catalog, as a customer with a development token.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --manifest-path "$root/Cargo.toml" --quiet
bin="$root/target/debug/securecart"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Fuzzing sends bursts: lift the rate limits and budgets for this run (they have their own tests).
cd "$work"
SECURECART_LISTEN="127.0.0.1:$port" SECURECART_INTERNAL_LISTEN=127.0.0.1:0 \
  SECURECART_ANON_RATE=1000000 SECURECART_ANON_BURST=1000000 \
  SECURECART_USER_RATE=1000000 SECURECART_USER_BURST=1000000 \
  SECURECART_BUDGET_ANONYMOUS=1000000000/1000000000 SECURECART_BUDGET_CUSTOMER=1000000000/1000000000 \
  "$bin" serve >"$work/server.log" 2>&1 &
pid=$!
cd "$root"
# Keep the script's own exit status: `wait` on the killed server would otherwise become it.
cleanup() {
  local rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$("$bin" token --sub alice --role customer)
for version in v1 v2; do
  schemathesis run "http://127.0.0.1:$port/$version/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    -H "Authorization: Bearer $token" --max-examples 40 --seed 1
done
echo "schemathesis: ok"
