#!/bin/sh
# Regenerates the field table of docs/scenario-format.md from the schema (cvmsim list --markdown).
# Usage: scripts/regen-docs-fields.sh [path/to/cvmsim]
set -e
cvmsim=${1:-build/release/cvmsim}
doc=docs/scenario-format.md
tmp=$(mktemp)
"$cvmsim" list --markdown > "$tmp"
python3 - "$doc" "$tmp" <<'PY'
import sys
doc, gen = sys.argv[1], open(sys.argv[2]).read()
s = open(doc).read()
b = s.index("<!-- BEGIN FIELDS -->\n") + len("<!-- BEGIN FIELDS -->\n")
e = s.index("<!-- END FIELDS -->")
open(doc, "w").write(s[:b] + gen + s[e:])
PY
rm -f "$tmp"
