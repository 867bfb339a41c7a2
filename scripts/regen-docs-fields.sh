#!/bin/sh
# Regenerates the generated tables of docs/scenario-format.md: the field table (cvmsim list
# --markdown) and the step operation table (cvmsim list --steps --markdown); and the invariant
# catalogue of docs/invariants.md (cvmsim list --invariants --markdown); the policy table of
# docs/explore.md (cvmsim explore --list-policies --markdown); the statistics reference of
# docs/statistics.md (scripts/stats-doc.py, which runs a set of scenarios).
# Usage: scripts/regen-docs-fields.sh [path/to/cvmsim]
set -e
cvmsim=${1:-build/release/cvmsim}
doc=docs/scenario-format.md
tmp=$(mktemp)
tmp2=$(mktemp)
"$cvmsim" list --markdown > "$tmp"
"$cvmsim" list --steps --markdown > "$tmp2"
python3 - "$doc" "$tmp" "$tmp2" <<'PY'
import sys
doc, fields, steps = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
s = open(doc).read()
for name, gen in (("FIELDS", fields), ("STEPS", steps)):
    begin, end = "<!-- BEGIN %s -->\n" % name, "<!-- END %s -->" % name
    if begin not in s:
        s = s.rstrip("\n") + "\n\n" + begin + end + "\n"
    b = s.index(begin) + len(begin)
    e = s.index(end)
    s = s[:b] + gen + s[e:]
open(doc, "w").write(s)
PY
"$cvmsim" list --invariants --markdown > "$tmp"
python3 - docs/invariants.md "$tmp" <<'PY'
import sys
doc, gen = sys.argv[1], open(sys.argv[2]).read()
s = open(doc).read()
begin, end = "<!-- BEGIN INVARIANTS -->\n", "<!-- END INVARIANTS -->"
b = s.index(begin) + len(begin)
e = s.index(end)
open(doc, "w").write(s[:b] + gen + s[e:])
PY
"$cvmsim" explore --list-policies --markdown > "$tmp"
python3 - docs/explore.md "$tmp" <<'PY'
import sys
doc, gen = sys.argv[1], open(sys.argv[2]).read()
s = open(doc).read()
begin, end = "<!-- BEGIN POLICIES -->\n", "<!-- END POLICIES -->"
b = s.index(begin) + len(begin)
e = s.index(end)
open(doc, "w").write(s[:b] + gen + s[e:])
PY
rm -f "$tmp" "$tmp2"
python3 scripts/stats-doc.py "$cvmsim" docs/statistics.md
# The attack table runs the attack suite.
cmake -DCVMSIM="$cvmsim" -DSCN=scenarios/attacks -DDOC=docs/attacks.md -DWRITE=ON -P tests/scenario/attack_table.cmake
