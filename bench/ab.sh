#!/usr/bin/env bash
# Interleaved A/B of two server binaries on the database bench/run.sh seeded (same data, same
# settings, cache off, rate limits lifted): F, Q1, Q2, Q3 with wrk, 64 connections, each shape
# on A then B.   bash bench/ab.sh OLD_BINARY NEW_BINARY [seconds per run]
set -euo pipefail
base=$1; new=$2; secs=${3:-8}
url=postgres://postgres@127.0.0.1:5432/securecart_bench
work=$(mktemp -d)
env_common="DATABASE_URL=$url SECURECART_INTERNAL_LISTEN=127.0.0.1:0 SECURECART_LOG=warn SECURECART_ANON_RATE=10000000 SECURECART_ANON_BURST=10000000 SECURECART_USER_RATE=10000000 SECURECART_USER_BURST=10000000 SECURECART_BUDGET_ANONYMOUS=1000000000000/1000000000000 SECURECART_BUDGET_CUSTOMER=1000000000000/1000000000000 SECURECART_CACHE_TTL_SECS=0"
env $env_common SECURECART_LISTEN=127.0.0.1:18501 "$base" serve > "$work/a.log" 2>&1 & pa=$!
env $env_common SECURECART_LISTEN=127.0.0.1:18502 "$new" serve > "$work/b.log" 2>&1 & pb=$!
trap 'kill $pa $pb 2>/dev/null; rm -rf $work' EXIT
for p in 18501 18502; do for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done; done
alice=$("$new" token --sub alice --role customer --ttl 2h)
mk() { printf 'wrk.method="POST"\nwrk.headers["Content-Type"]="application/json"\n%s\nwrk.body=[[%s]]\n' "$2" "$3" > "$work/$1.lua"; }
mk F "" '{"query":"{ __typename }"}'
mk Q1 "" '{"query":"query Q1 { products(first: 20) { edges { node { name price { amount currencyCode } inventory { available } } } } }"}'
mk Q2 "" '{"query":"query Q2($id: ID!) { product(id: $id) { sku name description price { amount currencyCode } inventory { available } } }","variables":{"id":"UHJvZHVjdDo0Mg"}}'
mk Q3 "wrk.headers[\"Authorization\"]=\"Bearer $alice\"" '{"query":"query Q3 { orders(first: 10) { edges { node { id status createdAt total { amount } lines { quantity unitPrice { amount } product { name } } } } } }"}'
for q in F Q1 Q2 Q3; do
  for side in base:18501 new:18502; do
    name=${side%%:*}; port=${side##*:}
    out=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$work/$q.lua" "http://127.0.0.1:$port/graphql")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '/ 99%/ {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    echo "$q $name rps=$rps p99=$p99 non2xx=${non2xx:-0}"
  done
done
