#!/usr/bin/env bash
# Interleaved A/B of two server binaries on the database bench/run.sh seeded (same data, same
# settings, cache off, rate limits lifted): F, Q1, Q2, Q3 with wrk, 64 connections.
#
#   bash bench/ab.sh OLD_BINARY NEW_BINARY [seconds per run] [rounds] [shapes]
#
# Each round runs every shape on both binaries, the order alternating between rounds (old
# first, then new first), and reads each server's CPU time (utime + stime, /proc/<pid>/stat)
# around each run. Requests/s swing by ±10% between consecutive runs on this shared machine;
# CPU per request is the steadier figure, so the summary is its new ÷ old ratio per round and
# the median of those.
set -euo pipefail
base=$1; new=$2; secs=${3:-5}; rounds=${4:-3}; shapes=${5:-F Q1 Q2 Q3}
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
# CPU ticks (utime + stime) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # shape name port pid -> one line: shape name round rps p99 cpu_ms_per_request
  local q=$1 name=$2 port=$3 pid=$4 round=$5 t0 t1 out rps reqs p99 non2xx
  t0=$(ticks "$pid")
  out=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$work/$q.lua" "http://127.0.0.1:$port/graphql")
  t1=$(ticks "$pid")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '/ 99%/ {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  awk -v q="$q" -v n="$name" -v r="$round" -v rps="$rps" -v p99="$p99" -v e="${non2xx:-0}" -v d=$((t1 - t0)) -v reqs="$reqs" -v hz="$hz" \
    'BEGIN { printf "%s %s round=%d rps=%s p99=%s non2xx=%s cpu_ms_per_req=%.4f\n", q, n, r, rps, p99, e, d * 1000 / hz / reqs }' \
    | tee -a "$work/runs"
}
for r in $(seq 1 "$rounds"); do
  for q in $shapes; do
    if (( r % 2 )); then run "$q" old 18501 $pa "$r"; run "$q" new 18502 $pb "$r"
    else run "$q" new 18502 $pb "$r"; run "$q" old 18501 $pa "$r"; fi
  done
done
echo
echo "CPU per request, new / old, per round, and the median:"
python3 - "$work/runs" <<'EOF'
import re, statistics, sys
cpu = {}
for line in open(sys.argv[1]):
    q, side, rnd = line.split()[:3]
    cpu[(q, side, rnd)] = float(re.search(r"cpu_ms_per_req=([\d.]+)", line).group(1))
for q in dict.fromkeys(k[0] for k in cpu):
    ratios = [cpu[(q, "new", r)] / cpu[(q, "old", r)] for (qq, s, r) in cpu if qq == q and s == "old" and cpu[(q, "old", r)] > 0]
    print(f"{q}: " + ", ".join(f"{x:.3f}" for x in ratios) + f"  median {statistics.median(ratios):.3f}")
EOF
