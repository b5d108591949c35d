#!/usr/bin/env python3
"""Prints the shell block of README.md marked `<!-- ci: NAME -->`, one command per line
(backslash continuations joined), for scripts/readme-walkthrough.sh.

Usage: python3 scripts/readme-blocks.py NAME   (exit 1 when there is no such block)
"""

import re
import sys
from pathlib import Path

name = sys.argv[1]
text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
match = re.search(r"<!-- ci: " + re.escape(name) + r" -->\n```sh\n(.*?)```", text, re.S)
if not match:
    sys.exit(f"README.md has no block marked <!-- ci: {name} -->")
print(match.group(1).replace("\\\n", "").rstrip("\n"))
