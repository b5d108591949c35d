"""Turns bench/run.sh's RESULT lines into bench/RESULTS.md (figures, ratios, targets)."""
import datetime
import os
import platform
import subprocess
import sys

results_file, seed, duration, connections = sys.argv[1:5]
rows = {}
for line in open(results_file):
    parts = line.split()
    if parts and parts[0] == "RESULT":
        name = parts[1]
        rows[name] = {
            "rps": float(parts[2]) if parts[2] not in ("", "-") else 0.0,
            "p50": parts[3],
            "p99": parts[4],
            "errors": int(parts[5]),
            "requests": int(parts[6]),
        }


def sh(cmd):
    try:
        return subprocess.check_output(cmd, shell=True, text=True).strip()
    except Exception:
        return "?"


cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
mem = sh("free -g | awk '/Mem:/ {print $2}'")
commit = sh("git rev-parse --short HEAD")
pg = sh("psql --version")
out = []
w = out.append
w("# Benchmark results")
w("")
w(f"Run on {datetime.date.today()} at commit `{commit}` by `bash bench/run.sh` (one run; every figure below comes from it).")
w("")
w("## Machine and method")
w("")
w(f"- {os.cpu_count()} vCPUs ({cpu}), {mem} GiB RAM, {platform.system()} {platform.release()}; {pg}.")
w("  The load generator, the server and PostgreSQL share these cores, so absolute figures are low and")
w("  noisy; the ratios, measured in the same run, are the point.")
w(f"- Data: `securecart seed --products 10000 --vendors 50 --customers 1000 --orders 20000` ({seed.strip()}).")
w(f"- GraphQL: the release server on PostgreSQL (pool of 10), driven by wrk with 2 threads and {connections}")
w(f"  connections over loopback for {duration} s per shape, `POST /graphql` with a JSON body.")
w("- SQL: pgbench, 10 clients, 2 threads, prepared statements, the same shapes as one statement each.")
w("")
w("| shape | what | requests/s | p50 ms | p99 ms | p99/p50 | errors | ratio to F | ratio to its SQL |")
w("|---|---|---|---|---|---|---|---|---|")
what = {
    "F": "`{ __typename }` (the floor: HTTP + GraphQL, no database)",
    "Q1": "`products(first: 20)` with name, price, `inventory { available }`",
    "Q2": "`product(id:)` by a random id: sku, name, description, price, inventory",
    "Q3": "a customer's 10 newest orders, their lines and each line's product name",
    "M1": "`addCartItem` for a random customer and product",
    "S1": "SQL: the Q1 page joined with inventory",
    "S2": "SQL: one product by a random id joined with inventory",
    "S3": "SQL: a random customer's 10 newest orders, lines and product names",
}
sql_of = {"Q1": "S1", "Q2": "S2", "Q3": "S3"}
floor = rows.get("F", {}).get("rps") or 1.0
for name in ["F", "Q1", "Q2", "Q3", "M1", "S1", "S2", "S3"]:
    r = rows.get(name)
    if not r:
        continue
    try:
        tail = f"{float(r['p99']) / float(r['p50']):.2f}"
    except (ValueError, ZeroDivisionError):
        tail = "-"
    to_floor = f"{r['rps'] / floor:.2f}" if not name.startswith("S") else "-"
    s = rows.get(sql_of.get(name, ""), {})
    to_sql = f"{r['rps'] / s['rps']:.2f}" if s.get("rps") else "-"
    p99 = r["p99"] if not name.startswith("S") else "-"
    p50 = r["p50"] if not name.startswith("S") else f"{r['p50']} (mean)"
    w(f"| {name} | {what[name]} | {r['rps']:.0f} | {p50} | {p99} | {tail if not name.startswith('S') else '-'} | {r['errors']} | {to_floor} | {to_sql} |")
w("")
w("## Targets")
w("")
for q in ["Q1", "Q2", "Q3"]:
    r, s = rows.get(q), rows.get(sql_of[q])
    if not r or not s or not s["rps"]:
        continue
    ratio = r["rps"] / s["rps"]
    try:
        tail = float(r["p99"]) / float(r["p50"])
    except (ValueError, ZeroDivisionError):
        tail = float("nan")
    verdict = "met" if ratio >= 0.5 else "not met"
    tail_verdict = "met" if tail <= 3 else "not met"
    w(f"- {q}: {ratio:.2f} of {sql_of[q]} (target ≥ 0.50: {verdict}); p99/p50 = {tail:.2f} (target ≤ 3: {tail_verdict}).")
w("")
profile = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile-q1.txt")
if os.path.exists(profile) and os.path.getsize(profile) > 0:
    w("## Where Q1's time goes (perf, cpu-clock samples of the server under Q1 load)")
    w("")
    w("```")
    w(open(profile).read().rstrip())
    w("```")
    w("")
notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
if os.path.exists(notes):
    w(open(notes).read().rstrip())
    w("")
print("\n".join(out))
