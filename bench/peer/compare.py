"""Checks that SecureCart's Qn and PostGraphile's Pn answer with the same rows and fields.

    python3 bench/peer/compare.py Q1 securecart.json peer.json

Prints one `SHAPE` line per side (response bytes, leaf values, rows) for bench/report.py and
exits 1 when the two sides' rows differ (in count, or in any value once both are normalised:
SecureCart's decimal money strings to minor units, PostGraphile's BigInt strings to integers,
both global ids to the row id, timestamps to UTC instants).
"""
import base64
import datetime
import json
import sys
from decimal import Decimal

# ISO 4217 minor-unit exponents that are not 2 (SecureCart's currencies are all 2 today).
EXPONENT = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}


def minor(amount, currency="USD"):
    """SecureCart's `"19.99"` as 1999."""
    return int(Decimal(amount).scaleb(EXPONENT.get(currency, 2)))


def b64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def securecart_id(gid):
    """`Order:42` (base64url) -> 42."""
    return int(b64(gid).split(":", 1)[1])


def peer_id(node_id):
    """PostGraphile's node id, base64 of `["Order","42"]` -> 42."""
    return int(json.loads(b64(node_id.replace("+", "-").replace("/", "_")))[1])


def instant(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(datetime.timezone.utc)


def leaves(value):
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(leaves(v) for v in value)
    return 1


def stock(inv):
    return None if inv is None else int(inv["available"])


def rows_securecart(shape, data):
    if shape == "Q1":
        return [
            (n["name"], minor(n["price"]["amount"], n["price"]["currencyCode"]), n["price"]["currencyCode"], stock(n["inventory"]))
            for n in (e["node"] for e in data["products"]["edges"])
        ]
    if shape == "Q2":
        p = data["product"]
        return [] if p is None else [
            (p["sku"], p["name"], p["description"], minor(p["price"]["amount"], p["price"]["currencyCode"]),
             p["price"]["currencyCode"], stock(p["inventory"]))
        ]
    if shape == "Q3":
        # Q3 selects no order currency: amounts are read with 2 decimals (the seed's USD).
        return [
            (securecart_id(n["id"]), n["status"], instant(n["createdAt"]), minor(n["total"]["amount"]),
             tuple((int(l["quantity"]), minor(l["unitPrice"]["amount"]), l["product"]["name"]) for l in n["lines"]))
            for n in (e["node"] for e in data["orders"]["edges"])
        ]
    raise SystemExit(f"unknown shape {shape}")


def rows_peer(shape, data):
    if shape == "Q1":
        return [
            (n["name"], int(n["priceAmount"]), n["currencyCode"], stock(n["inventoryByProductId"]))
            for n in (e["node"] for e in data["allProducts"]["edges"])
        ]
    if shape == "Q2":
        p = data["productByRowId"]
        return [] if p is None else [
            (p["sku"], p["name"], p["description"], int(p["priceAmount"]), p["currencyCode"], stock(p["inventoryByProductId"]))
        ]
    if shape == "Q3":
        return [
            (peer_id(n["id"]), n["status"], instant(n["createdAt"]), int(n["totalAmount"]),
             tuple((int(l["quantity"]), int(l["unitPriceAmount"]), l["productByProductId"]["name"])
                   for l in n["orderItemsByOrderId"]["nodes"]))
            for n in (e["node"] for e in data["allOrders"]["edges"])
        ]
    raise SystemExit(f"unknown shape {shape}")


def main():
    shape, ours_file, peer_file = sys.argv[1:4]
    peer_shape = "P" + shape[1:]
    ours_raw, peer_raw = open(ours_file, "rb").read(), open(peer_file, "rb").read()
    ours, peer = json.loads(ours_raw), json.loads(peer_raw)
    for name, doc in ((shape, ours), (peer_shape, peer)):
        if doc.get("errors") or not doc.get("data"):
            print(f"compare {name}: errors or no data: {json.dumps(doc)[:500]}", file=sys.stderr)
            return 1
    a, b = rows_securecart(shape, ours["data"]), rows_peer(shape, peer["data"])

    def count(rows):  # Q3 counts lines too
        return len(rows) + (sum(len(r[-1]) for r in rows) if shape == "Q3" else 0)

    for name, raw, doc, rows in ((shape, ours_raw, ours, a), (peer_shape, peer_raw, peer, b)):
        print(f"SHAPE {name} bytes={len(raw)} leaves={leaves(doc['data'])} rows={count(rows)}")
    if count(a) != count(b):
        print(f"compare {shape}: row counts differ: SecureCart {count(a)}, PostGraphile {count(b)}", file=sys.stderr)
        return 1
    if a != b:
        for x, y in zip(a, b):
            if x != y:
                print(f"compare {shape}: first differing row:\n  SecureCart   {x}\n  PostGraphile {y}", file=sys.stderr)
                break
        return 1
    if not a:
        print(f"compare {shape}: both sides returned no rows; nothing was compared", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
