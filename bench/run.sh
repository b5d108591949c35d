#!/usr/bin/env bash
# The catalog/order benchmark: one command, one run, every figure in bench/RESULTS.md.
#
#   bash bench/run.sh            # needs PostgreSQL (BENCH_ADMIN_URL) and installs wrk if missing
#
# It seeds a PostgreSQL database with `securecart seed` (10,000 products, 1,000 customers, 20,000
# orders of about 3 lines), starts the release server, drives it with wrk at 64 connections
# over loopback for each shape (F, Q1, Q2, Q3, M1), runs the same SQL shapes through pgbench with
# 10 clients (S1-S3), profiles Q1 with perf, and writes the results and their ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
admin=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=${BENCH_DB:-securecart_bench}
duration=${BENCH_DURATION:-15}
connections=${BENCH_CONNECTIONS:-64}
port=${BENCH_PORT:-18400}
url="${admin%/*}/$db"
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
command -v pgbench >/dev/null || { echo "pgbench (PostgreSQL client) is needed"; exit 1; }

echo "== build (release)"
cargo build --release --quiet --bin securecart
bin="$root/target/release/securecart"

echo "== seed $db"
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
seed_out=$(DATABASE_URL="$url" "$bin" seed --products 10000 --vendors 50 --customers 1000 --orders 20000)
echo "$seed_out"
psql "$url" -qc "VACUUM ANALYZE"

echo "== start the server"
DATABASE_URL="$url" SECURECART_LISTEN="127.0.0.1:$port" SECURECART_INTERNAL_LISTEN=127.0.0.1:0 \
  SECURECART_LOG=warn SECURECART_ANON_RATE=10000000 SECURECART_ANON_BURST=10000000 \
  SECURECART_USER_RATE=10000000 SECURECART_USER_BURST=10000000 \
  SECURECART_BUDGET_ANONYMOUS=1000000000000/1000000000000 SECURECART_BUDGET_CUSTOMER=1000000000000/1000000000000 \
  "$bin" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

# Inputs: product ids, customer tokens.
gid() { printf '%s:%d' "$1" "$2" | base64 | tr '+/' '-_' | tr -d '='; }
ids=$(for _ in $(seq 1 1000); do printf '"%s",' "$(gid Product $((RANDOM % 10000 + 1)))"; done)
alice=$("$bin" token --sub alice --role customer --ttl 2h)
tokens=$(for i in $(seq 3 202); do printf '"%s",' "$("$bin" token --sub "customer-$i" --role customer --ttl 2h)"; done)

Q1='query Q1 { products(first: 20) { edges { node { name price { amount currencyCode } inventory { available } } } } }'
Q2='query Q2($id: ID!) { product(id: $id) { sku name description price { amount currencyCode } inventory { available } } }'
Q3='query Q3 { orders(first: 10) { edges { node { id status createdAt total { amount } lines { quantity unitPrice { amount } product { name } } } } } }'
M1='mutation M1($p: ID!) { addCartItem(productId: $p, quantity: 1) { cart { totalQuantity } userErrors { code } } }'

lua() { # name, body-expression, extra lua
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
ids = { ${ids%,} }
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
lua Q1 "" "wrk.body = [[{\"query\":$(json "$Q1")}]]"
lua Q2 "" "request = function() return wrk.format(nil, nil, nil, [[{\"query\":$(json "$Q2"),\"variables\":{\"id\":\"]] .. ids[math.random(#ids)] .. [[\"}}]]) end"
lua Q3 "" "wrk.headers[\"Authorization\"] = \"Bearer $alice\"
wrk.body = [[{\"query\":$(json "$Q3")}]]"
lua M1 "" "request = function()
  local h = { [\"Content-Type\"] = \"application/json\", [\"Authorization\"] = \"Bearer \" .. tokens[math.random(#tokens)] }
  return wrk.format(\"POST\", nil, h, [[{\"query\":$(json "$M1"),\"variables\":{\"p\":\"]] .. ids[math.random(#ids)] .. [[\"}}]])
end"

echo "== check every shape answers without errors"
check() { # name, auth header value or "", body
  local out
  out=$(curl -fsS "http://127.0.0.1:$port/graphql" -H 'content-type: application/json' ${2:+-H "authorization: $2"} -d "$3")
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); assert "errors" not in d and d.get("data"), (sys.argv[1], d)' "$1" "$out"
}
first_id=$(gid Product 1)
check F "" '{"query":"{ __typename }"}'
check Q1 "" "{\"query\":$(json "$Q1")}"
check Q2 "" "{\"query\":$(json "$Q2"),\"variables\":{\"id\":\"$first_id\"}}"
check Q3 "Bearer $alice" "{\"query\":$(json "$Q3")}"
check M1 "Bearer $alice" "{\"query\":$(json "$M1"),\"variables\":{\"p\":\"$first_id\"}}"

results="$work/results.txt"
for name in F Q1 Q2 Q3 M1; do
  echo "== wrk $name (${duration}s, $connections connections)"
  wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/$name.lua" "http://127.0.0.1:$port/graphql" | tee "$work/$name.out" | grep RESULT | tee -a "$results"
done

echo "== profile Q1 (perf, cpu-clock samples of the server)"
if perf record -e cpu-clock -F 499 -g -p "$server" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1 &
then
  perf_pid=$!
  wrk -t2 -c"$connections" -d8s -s "$work/Q1.lua" "http://127.0.0.1:$port/graphql" >/dev/null
  wait "$perf_pid" || true
  perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep '%' | head -40 >"$root/bench/profile-q1.txt" || true
fi

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
for s in S1 S2 S3; do
  out=$(pgbench -n -M prepared -c 10 -j 2 -T "$duration" -f "$work/$s.sql" "$url" 2>&1)
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
  echo "RESULT $s $tps $lat - 0 0" | tee -a "$results"
done

echo "== write bench/RESULTS.md"
python3 "$root/bench/report.py" "$results" "$seed_out" "$duration" "$connections" >"$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
