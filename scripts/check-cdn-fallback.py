#!/usr/bin/env python3
"""Checks the playground page a server serves without local assets (the CDN fallback): every
pinned asset of playground/assets.json is loaded from the CDN at its pinned version, with its
Subresource Integrity hash, and the hash is the SHA-384 of the installed file (so the page
would load exactly what `npm ci --prefix playground` installs).

Usage: python3 scripts/check-cdn-fallback.py http://127.0.0.1:PORT/graphql
"""

import base64
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

root = Path(__file__).resolve().parent.parent
url = sys.argv[1]
page = urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"})).read().decode()
assets = json.loads((root / "playground" / "assets.json").read_text())
problems = []
for a in assets:
    src = f"https://cdn.jsdelivr.net/npm/{a['package']}@{a['version']}/{a['file']}"
    if src not in page:
        problems.append(f"{src} is not on the page")
    if f'integrity="{a["integrity"]}"' not in page:
        problems.append(f"{a['file']}: integrity {a['integrity']} is not on the page")
    installed = root / "playground" / "node_modules" / a["package"] / a["file"]
    if installed.exists():
        digest = "sha384-" + base64.b64encode(hashlib.sha384(installed.read_bytes()).digest()).decode()
        if digest != a["integrity"]:
            problems.append(f"{a['file']}: the installed file hashes to {digest}, not the pinned {a['integrity']}")
    else:
        problems.append(f"{installed} is not installed (run npm ci --prefix playground)")
if "/playground/assets/" in page:
    problems.append("the fallback page still refers to local assets")
for p in problems:
    print(f"cdn-fallback: FAIL: {p}")
if problems:
    sys.exit(1)
print(f"cdn-fallback: ok ({len(assets)} assets from the CDN, each with its pinned SRI hash)")
