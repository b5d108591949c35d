"""Turns bench/run.sh's RESULT, CPU and SHAPE lines into bench/RESULTS.md (figures, ratios, targets).

    python3 bench/report.py RESULTS_FILE SEED_OUTPUT DURATION CONNECTIONS

Lines it reads (anything else is ignored):
    RESULT <name> <req/s> <p50 ms> <p99 ms, or -> <errors> <requests>
        one per wrk or pgbench run; a name may appear once per round (Q1-Q3, P1-P3): the
        figures of a name are the mean over its rounds (req/s, p50 and p99 each averaged;
        errors and requests summed), and the spread of req/s is shown beside the mean.
    CPU <name> <requests> server=<ms> peer=<ms> postgres=<ms> floor=<ms>
        CPU milliseconds per request of each process during that run (`-`: not running);
        over rounds, weighted by requests.
    SHAPE <name> bytes=<n> leaves=<n> rows=<n>
        one response of each shape from each side (bench/peer/compare.py).
    METRIC <metric> <value>
        a figure of the subscriber and rejection benches (bench/common.rs).
Environment: BENCH_ROUNDS (rounds of Q1-Q3/P1-P3), BENCH_WARMUP (seconds), BENCH_PEER (the peer's
version line), BENCH_SUBSCRIBERS_TABLE and BENCH_REJECTIONS_TABLE (the Markdown tables those
benches printed), BENCH_HISTORY (bench/history.tsv: each figure is shown beside the last one
recorded there, then this run's figures are appended to it).
A missing P line (the peer did not start) prints "peer not measured".
"""
import datetime
import os
import platform
import subprocess
import sys

results_file, seed, duration, connections = sys.argv[1:5]
rounds = os.environ.get("BENCH_ROUNDS", "?")
warmup = os.environ.get("BENCH_WARMUP", "?")
peer_version = os.environ.get("BENCH_PEER", "")

runs = {}  # name -> [run]
cpu_runs = {}  # name -> [(requests, {process: ms or None})]
shapes = {}  # name -> {bytes, leaves, rows}
metrics = {}  # metric -> value, from the subscriber and rejection benches


def num(text):
    try:
        return float(text)
    except ValueError:
        return None


for line in open(results_file):
    parts = line.split()
    if not parts:
        continue
    if parts[0] == "RESULT" and len(parts) >= 7:
        runs.setdefault(parts[1], []).append({
            "rps": num(parts[2]) or 0.0,
            "p50": num(parts[3]),
            "p99": num(parts[4]),
            "errors": int(parts[5]),
            "requests": int(parts[6]),
        })
    elif parts[0] == "CPU" and len(parts) >= 4:
        fields = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        cpu_runs.setdefault(parts[1], []).append((int(parts[2]), {k: num(v) for k, v in fields.items()}))
    elif parts[0] == "METRIC" and len(parts) == 3 and num(parts[2]) is not None:
        metrics[parts[1]] = num(parts[2])
    elif parts[0] == "SHAPE" and len(parts) >= 3:
        shapes[parts[1]] = dict(p.split("=", 1) for p in parts[2:] if "=" in p)


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


rows = {}
for name, rs in runs.items():
    rows[name] = {
        "rps": mean([r["rps"] for r in rs]) or 0.0,
        "p50": mean([r["p50"] for r in rs]),
        "p99": mean([r["p99"] for r in rs]),
        "errors": sum(r["errors"] for r in rs),
        "requests": sum(r["requests"] for r in rs),
        "runs": len(rs),
        "spread": (min(r["rps"] for r in rs), max(r["rps"] for r in rs)),
    }

cpu = {}  # name -> {process: ms per request, weighted by requests}
for name, entries in cpu_runs.items():
    total = sum(n for n, _ in entries)
    out = {}
    for proc in ("server", "peer", "postgres", "floor"):
        vals = [(n, f.get(proc)) for n, f in entries]
        if total and vals and all(v is not None for _, v in vals):
            out[proc] = sum(n * v for n, v in vals) / total
        else:
            out[proc] = None
    cpu[name] = out


def sh(cmd):
    try:
        return subprocess.check_output(cmd, shell=True, text=True).strip()
    except Exception:
        return "?"


def ms(value):
    return "-" if value is None else f"{value:.3f}"


def fmt_rps(r):
    if r["runs"] > 1:
        lo, hi = r["spread"]
        return f"{r['rps']:.0f} ({lo:.0f}–{hi:.0f})"
    return f"{r['rps']:.0f}"


def verdict_at_least(value, target):
    """`met`, or `not met, short by ×F`: F is the factor by which value misses target."""
    if value >= target:
        return "met"
    return f"not met, short by ×{target / value:.1f}" if value > 0 else "not met"


def verdict_at_most(value, target):
    if value <= target:
        return "met"
    return f"not met, over by ×{value / target:.1f}"


cpu_model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
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
w(f"- {os.cpu_count()} vCPUs ({cpu_model}), {mem} GiB RAM, {platform.system()} {platform.release()}; {pg}.")
w("  The load generator, the servers and PostgreSQL share these cores, so absolute figures are low and")
w("  noisy; the ratios, measured in the same run, are the point.")
w(f"- Data: `securecart seed --products 10000 --vendors 50 --customers 1000 --orders 20000` ({seed.strip()}).")
w(f"- GraphQL: the release server on PostgreSQL (pool of 10) with its cache off (`SECURECART_CACHE_TTL_SECS=0`),")
w(f"  driven by wrk with 2 threads and {connections} connections over loopback for {duration} s per run,")
w("  `POST /graphql` with a JSON body.")
if peer_version:
    w(f"- Node peer: {peer_version} (`bench/peer`: Amber preset, library mode on Node's HTTP server,")
    w("  pool of 10, no GraphiQL, watch, explain or auth; its default caches: parsed documents, operation")
    w("  plans, prepared statements; no response cache), on the same database. P1–P3 return the same rows")
    w("  and fields as Q1–Q3 (checked by `bench/peer/compare.py` before the load; sizes below).")
    w(f"  Q1–Q3 and P1–P3 are interleaved, SecureCart then PostGraphile, {rounds} rounds after an unrecorded")
    w(f"  warm-up of {warmup} s per shape and side; each figure is the mean over its rounds (req/s, p50 and")
    w("  p99 each averaged), with the range of req/s in brackets. SecureCart's responses also carry an")
    w("  `extensions.cost` block (about 170 bytes) that PostGraphile's do not.")
else:
    w("- Node peer (PostGraphile): not measured in this run (it did not install or start).")
w("- SQL: pgbench, 10 clients, 2 threads, prepared statements, the same shapes as one statement each")
w("  (SM1: M1's statements as SecureCart sends them: the caller's customer row, the `addCartItem`")
w("  transaction, the cart's lines; as many transactions as M1 made requests, both from empty carts).")
w("- CPU: utime + stime from `/proc/<pid>/stat` of the server, the peer and every `postgres` process,")
w("  read before and after each wrk run, divided by the run's requests.")
w("")
w("| shape | what | requests/s | p50 ms | p99 ms | p99/p50 | errors | ratio to F | ratio to its SQL |")
w("|---|---|---|---|---|---|---|---|---|")
what = {
    "F": "`{ __typename }` (the floor: HTTP + GraphQL, no database)",
    "Q1": "`products(first: 20)` with name, price, `inventory { available }`",
    "P1": "PostGraphile: Q1's rows (`allProducts`, ACTIVE, newest first)",
    "Q2": "`product(id:)` by a random id: sku, name, description, price, inventory",
    "P2": "PostGraphile: Q2's row (`productByRowId`)",
    "Q3": "a customer's 10 newest orders, their lines and each line's product name",
    "P3": "PostGraphile: Q3's rows (`allOrders` by customer id, no auth)",
    "M1": "`addCartItem` for a random customer and product",
    "R0": "framework floor (`bench/floor.rs`): `{ __typename }` on async-graphql + axum alone",
    "R1": "framework floor: Q1's document answered from memory (same keys and leaves, no database)",
    "S1": "SQL: the Q1 page joined with inventory",
    "S2": "SQL: one product by a random id joined with inventory",
    "S3": "SQL: a random customer's 10 newest orders, lines and product names",
    "SM1": "SQL: M1's statements (the customer row, the `addCartItem` transaction, the cart's lines)",
}
sql_of = {"Q1": "S1", "Q2": "S2", "Q3": "S3", "M1": "SM1", "P1": "S1", "P2": "S2", "P3": "S3", "Q1c": "S1", "Q2c": "S2"}
floor = rows.get("F", {}).get("rps") or 1.0
for name in ["F", "R0", "Q1", "R1", "P1", "Q2", "P2", "Q3", "P3", "M1", "S1", "S2", "S3", "SM1"]:
    r = rows.get(name)
    if not r:
        if name.startswith("P"):
            w(f"| {name} | {what[name]} | peer not measured | | | | | | |")
        continue
    sql = name.startswith("S")
    try:
        tail = f"{r['p99'] / r['p50']:.2f}"
    except (TypeError, ZeroDivisionError):
        tail = "-"
    to_floor = f"{r['rps'] / floor:.2f}" if name in ("F", "Q1", "Q2", "Q3", "M1") else "-"
    s = rows.get(sql_of.get(name, ""), {})
    to_sql = f"{r['rps'] / s['rps']:.2f}" if s.get("rps") else "-"
    p99 = ms(r["p99"]) if not sql else "-"
    p50 = ms(r["p50"]) if not sql else f"{ms(r['p50'])} (mean)"
    w(f"| {name} | {what[name]} | {fmt_rps(r)} | {p50} | {p99} | {tail if not sql else '-'} | {r['errors']} | {to_floor} | {to_sql} |")
w("")

w("## SecureCart vs PostGraphile (cache off, interleaved)")
w("")
w("| shape | SecureCart req/s | PostGraphile req/s | ratio | SecureCart p99 ms | PostGraphile p99 ms | p99 ratio | SQL req/s | SecureCart / SQL | PostGraphile / SQL |")
w("|---|---|---|---|---|---|---|---|---|---|")
for q in ["Q1", "Q2", "Q3"]:
    r, p, s = rows.get(q), rows.get("P" + q[1:]), rows.get(sql_of[q])
    if not r:
        continue
    sql = f"{s['rps']:.0f}" if s and s["rps"] else "-"
    ours_sql = f"{r['rps'] / s['rps']:.2f}" if s and s["rps"] else "-"
    if not p:
        w(f"| {q} | {r['rps']:.0f} | peer not measured | - | {ms(r['p99'])} | - | - | {sql} | {ours_sql} | - |")
        continue
    ratio = f"{r['rps'] / p['rps']:.2f}" if p["rps"] else "-"
    p99_ratio = f"{r['p99'] / p['p99']:.2f}" if r["p99"] and p["p99"] else "-"
    peer_sql = f"{p['rps'] / s['rps']:.2f}" if s and s["rps"] else "-"
    w(f"| {q} | {r['rps']:.0f} | {p['rps']:.0f} | {ratio} | {ms(r['p99'])} | {ms(p['p99'])} | {p99_ratio} | {sql} | {ours_sql} | {peer_sql} |")
w("")
w("Ratio: SecureCart's req/s over PostGraphile's; p99 ratio: SecureCart's p99 over PostGraphile's (lower is better).")
w("")

if cpu:
    w("## CPU per request (ms, user + system)")
    w("")
    w("Each run's CPU time of the process divided by that run's requests (rounds weighted by requests).")
    w("`postgres` is every postgres process on the machine; an idle process shows its idle cost.")
    w("")
    w("| run | requests | SecureCart server | PostGraphile (node) | postgres | floor program | total |")
    w("|---|---|---|---|---|---|---|")
    for name in ["F", "R0", "Q1", "R1", "P1", "Q2", "P2", "Q3", "P3", "M1", "Q1c", "Q2c"]:
        c = cpu.get(name)
        if not c:
            if name.startswith("P") and name[1:].isdigit() and ("Q" + name[1:]) in cpu:
                w(f"| {name} | - | - | peer not measured | - | - | - |")
            continue
        n = sum(k for k, _ in cpu_runs[name])
        total = sum(v for v in c.values() if v is not None)
        w(f"| {name} | {n} | {ms(c['server'])} | {ms(c['peer'])} | {ms(c['postgres'])} | {ms(c.get('floor'))} | {total:.3f} |")
    w("")

if rows.get("R1", {}).get("rps") and rows.get("Q1"):
    q1, r0, r1, p1 = rows["Q1"], rows.get("R0"), rows["R1"], rows.get("P1")
    w("## The framework's floor (async-graphql alone, same run)")
    w("")
    w("`bench/floor.rs` answers Q1's document from memory with async-graphql 7 and axum: SimpleObject")
    w("types, mimalloc, no database, no limits, no extensions. What it costs is the engine's own cost")
    w("for Q1's ~80 leaves; everything SecureCart spends above it is its own (the database round trip,")
    w("decoding, authorization, limits, cost, metrics, the spec completion).")
    w("")
    w("| figure | value |")
    w("|---|---|")
    if r0:
        w(f"| R0 / F: bare `{{ __typename }}` against SecureCart's | {r0['rps']:.0f} / {rows.get('F', {}).get('rps', 0):.0f} req/s |")
    w(f"| R1: Q1's shape from memory | {r1['rps']:.0f} req/s, p99 {ms(r1['p99'])} ms |")
    w(f"| Q1 / R1: SecureCart's Q1 as a share of the engine's floor for it | {q1['rps'] / r1['rps']:.2f} |")
    c1, cr = cpu.get("Q1", {}).get("server"), cpu.get("R1", {}).get("floor")
    if c1 and cr:
        w(f"| server CPU per request: Q1 / R1 | {c1:.3f} / {cr:.3f} ms ({c1 / cr:.2f}×) |")
    if p1 and p1["rps"]:
        w(f"| R1 / P1: the engine's floor against PostGraphile's Q1 (with its database) | {r1['rps'] / p1['rps']:.2f} |")
        need = 5 * p1["rps"]
        w(f"| Q1's target, 5× PostGraphile | {need:.0f} req/s = {need / r1['rps']:.2f}× the engine's floor |")
    w("")
    w("R1 has no database and no PostgreSQL beside it on the two cores, so it is a ceiling, not a")
    w("like-for-like figure: a target above 1.00× it cannot be met through async-graphql's executor;")
    w("below it, the gap between Q1 and R1 is SecureCart's own work and its database round trip.")
    w("")

if shapes:
    w("## Same rows, same fields (one response of each, before the load)")
    w("")
    w("`bench/peer/compare.py` normalises both sides (money to minor units, ids to row ids,")
    w("timestamps to UTC) and stops the run if any row differs. Sizes differ by field names, ids and")
    w("money formats (SecureCart: `\"19.99\"` and global ids; PostGraphile: BigInt strings such as `\"1999\"`).")
    w("")
    w("| shape | SecureCart bytes | PostGraphile bytes | SecureCart leaves | PostGraphile leaves | rows (lines too for Q3) |")
    w("|---|---|---|---|---|---|")
    for q in ["Q1", "Q2", "Q3"]:
        a, b = shapes.get(q), shapes.get("P" + q[1:])
        if a and b:
            w(f"| {q} / P{q[1:]} | {a.get('bytes')} | {b.get('bytes')} | {a.get('leaves')} | {b.get('leaves')} | {a.get('rows')} / {b.get('rows')} |")
    w("")

if rows.get("Q1c") or rows.get("Q2c"):
    w("## Cache on (SecureCart restarted with `SECURECART_CACHE_TTL_SECS=30`, one run each)")
    w("")
    w("Not part of the comparison above, which is cache off; PostGraphile has no response cache.")
    w("")
    w("| shape | cache on req/s | p50 ms | p99 ms | errors | cache off req/s | on / off | on / PostGraphile | on / SQL |")
    w("|---|---|---|---|---|---|---|---|---|")
    for c in ["Q1c", "Q2c"]:
        r = rows.get(c)
        if not r:
            continue
        off, p, s = rows.get(c[:2]), rows.get("P" + c[1]), rows.get(sql_of[c])
        on_off = f"{r['rps'] / off['rps']:.2f}" if off and off["rps"] else "-"
        on_peer = f"{r['rps'] / p['rps']:.2f}" if p and p["rps"] else "peer not measured"
        on_sql = f"{r['rps'] / s['rps']:.2f}" if s and s["rps"] else "-"
        off_rps = f"{off['rps']:.0f}" if off else "-"
        w(f"| {c} | {r['rps']:.0f} | {ms(r['p50'])} | {ms(r['p99'])} | {r['errors']} | {off_rps} | {on_off} | {on_peer} | {on_sql} |")
    w("")

w("## Targets (cache off)")
w("")
w("Each of Q1–Q3: at least 5× PostGraphile's requests/s; p99 at most ⅓ of PostGraphile's p99; at least")
w("0.5 of pgbench's rate for the same shape; p99/p50 at most 3.")
w("")
for q in ["Q1", "Q2", "Q3"]:
    r, p, s = rows.get(q), rows.get("P" + q[1:]), rows.get(sql_of[q])
    if not r:
        w(f"- {q}: not measured.")
        continue
    items = []
    if p and p["rps"]:
        ratio = r["rps"] / p["rps"]
        items.append(f"{ratio:.2f}× PostGraphile's req/s (target ≥ 5: {verdict_at_least(ratio, 5.0)})")
        if r["p99"] and p["p99"]:
            p99r = r["p99"] / p["p99"]
            items.append(f"p99 {ms(r['p99'])} ms = {p99r:.2f} of PostGraphile's {ms(p['p99'])} ms (target ≤ 0.33: {verdict_at_most(p99r, 1 / 3)})")
    else:
        items.append("vs PostGraphile: peer not measured")
    if s and s["rps"]:
        sr = r["rps"] / s["rps"]
        items.append(f"{sr:.2f} of {sql_of[q]} (target ≥ 0.50: {verdict_at_least(sr, 0.5)})")
    try:
        tail = r["p99"] / r["p50"]
        items.append(f"p99/p50 = {tail:.2f} (target ≤ 3: {verdict_at_most(tail, 3.0)})")
    except (TypeError, ZeroDivisionError):
        pass
    w(f"- {q}: " + "; ".join(items) + ".")
m, sm = rows.get("M1"), rows.get("SM1")
if m and sm and sm.get("rps"):
    w(f"- M1 (no target in the issue; measured against the same transaction in SQL): {m['rps'] / sm['rps']:.2f} of SM1 "
      f"({m['rps']:.0f} against {sm['rps']:.0f} req/s; pgbench with 10 clients, SecureCart with 64 connections on a pool of 10).")
w("")


def table_file(variable):
    path = os.environ.get(variable, "")
    if path and os.path.exists(path):
        text = open(path).read().strip()
        if text.startswith("|"):
            return text
    return None


def bench_section(variable, title, intro):
    """A cargo bench's table from the file `variable` names, under `title` and its `intro` lines."""
    table = table_file(variable)
    w(title)
    w("")
    if table:
        for line in intro:
            w(line)
        w("")
        w(table)
    else:
        w("Not measured in this run (the bench did not run or failed).")
    w("")


bench_section("BENCH_SUBSCRIBERS_TABLE", "## Subscriber fan-out (`cargo bench --bench subscribers`, same run)", [
    "N idle graphql-transport-ws subscribers of `inventoryChanged` on the release server (SQLite, in-process",
    "bus), then one `adjustInventory`: memory is the server's RSS growth over N, delivery runs from sending the",
    "mutation to each subscriber receiving the event; server CPU covers the mutation and the delivery. The",
    "second table has each subscriber on its own product, so one change concerns one of them: fan-out by",
    "topic wakes only that one. In brackets: the last figure in `bench/history.tsv`. bench/SUBSCRIBERS.md",
    "explains the figures.",
])
bench_section("BENCH_REJECTIONS_TABLE", "## What a rejected document costs (`cargo bench --bench rejections`, same run)", [
    "Server CPU per request for documents the limits refuse, against an accepted `{ __typename }` measured",
    "alongside (2,000 of each over one keep-alive connection, 10 ms CPU ticks, so ±5 µs). In brackets: the",
    "last figure in `bench/history.tsv`. bench/REJECTIONS.md explains the figures.",
])

# Every figure that has a history, beside the last one recorded, then recorded itself.
current = dict(metrics)
for name in ("F", "Q1", "Q2", "Q3", "M1"):
    r, c = rows.get(name), cpu.get(name, {})
    if r and r["rps"]:
        current[f"{name}.rps"] = r["rps"]
        if r["p99"] is not None:
            current[f"{name}.p99_ms"] = r["p99"]
        if c.get("server") is not None:
            current[f"{name}.server_cpu_ms"] = c["server"]
if rows.get("R1") and rows["R1"]["rps"]:
    current["R1.rps"] = rows["R1"]["rps"]
history_path = os.environ.get("BENCH_HISTORY", "")
last = {}  # metric -> (value, date, commit)
if history_path and os.path.exists(history_path):
    for line in open(history_path):
        f = line.rstrip("\n").split("\t")
        if len(f) == 4 and not line.startswith("#") and num(f[3]) is not None:
            last[f[2]] = (num(f[3]), f[0], f[1])
if history_path:
    w("## Beside the previous figures (no regression elsewhere)")
    w("")
    w("Each figure of this run beside the last one `bench/history.tsv` holds for it (recorded by an earlier")
    w("run of this script or of the bench). `change` is this run over the previous one; for req/s higher is")
    w("better, for everything else lower is. The machine is shared, so a change within about ±15% is noise;")
    w("F, measured in the same run, shows how fast the machine was.")
    w("")
    w("| figure | this run | previous | recorded | change |")
    w("|---|---|---|---|---|")
    for metric in sorted(current, key=lambda m: (m.split(".")[0] not in ("F", "Q1", "Q2", "Q3", "M1"), m)):
        value = current[metric]
        was = last.get(metric)
        if was:
            change = f"×{value / was[0]:.2f}" if was[0] else "-"
            w(f"| `{metric}` | {value:.3f} | {was[0]:.3f} | {was[1]}, {was[2]} | {change} |")
        else:
            w(f"| `{metric}` | {value:.3f} | - | - | - |")
    w("")
    with open(history_path, "a") as f:
        for metric, value in sorted(current.items()):
            f.write(f"{datetime.date.today()}\t{commit}\t{metric}\t{round(value, 3)}\n")

here = os.path.dirname(os.path.abspath(__file__))
profile = os.path.join(here, "profile-q1.txt")
if os.path.exists(profile) and os.path.getsize(profile) > 0:
    w("## Where Q1's time goes (perf, cpu-clock samples of the server under Q1 load, cache off)")
    w("")
    if os.path.exists(os.path.join(here, "flamegraph-q1.svg")):
        w("Flame graph of the same samples: [`bench/flamegraph-q1.svg`](flamegraph-q1.svg).")
        w("")
    w("```")
    w(open(profile).read().rstrip())
    w("```")
    w("")
notes = os.path.join(here, "NOTES.md")
if os.path.exists(notes):
    w(open(notes).read().rstrip())
    w("")
print("\n".join(out))
