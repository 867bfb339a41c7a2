#!/usr/bin/env python3
"""Checks the links of README.md and docs/**/*.md: every relative link must name a file or folder
inside the repository that exists (anchors are not checked), and no link may leave the repository
except to a web address. Prints each bad link with its file and line; exits 1 if there is one."""
import os
import re
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
files = [os.path.join(root, "README.md")]
for d, _, names in os.walk(os.path.join(root, "docs")):
    files += [os.path.join(d, n) for n in names if n.endswith(".md")]
link = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
bad = []
for f in sorted(files):
    in_code = False
    for n, line in enumerate(open(f, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        for target in link.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            path = target.split("#", 1)[0]
            full = os.path.abspath(os.path.join(os.path.dirname(f), path))
            rel = os.path.relpath(f, root)
            if not (full == root or full.startswith(root + os.sep)):
                bad.append(f"{rel}:{n}: {target}: points outside the repository")
            elif not os.path.exists(full):
                bad.append(f"{rel}:{n}: {target}: no such file")
for b in bad:
    print(b)
print(f"check-links: {len(files)} files, {len(bad)} bad link(s)")
sys.exit(1 if bad else 0)
