#!/bin/sh
# Regenerates docs/machines/: for every declared state machine (cvmsim list --machines) the plain
# drawing MACHINE.dot (checked by ctest against the tables), and, from a run of the regression
# suite, MACHINE.coverage.dot coloured by what the suite exercises (a snapshot: it changes when
# scenarios change). If Graphviz's dot is installed, both are rendered to SVG as well; nothing in
# the build needs Graphviz. Run from the repository root.
# Usage: scripts/regen-machine-docs.sh [path/to/cvmsim]
set -e
cvmsim=${1:-build/release/cvmsim}
dir=docs/machines
mkdir -p "$dir"
machines=$("$cvmsim" list --machines | sed -n 's/^\([a-z][a-z0-9.-]*\)  (.*/\1/p')
cov=$(mktemp -d)
# One suite run, its merged coverage kept as one file.
"$cvmsim" coverage scenarios --jobs 2 --quiet > "$cov/report.txt" || true
for m in $machines; do
  "$cvmsim" coverage --dot "$m" --plain > "$dir/$m.dot"
  "$cvmsim" coverage --dot "$m" scenarios --jobs 2 --quiet > "$dir/$m.coverage.dot" || true
  if command -v dot >/dev/null 2>&1; then
    dot -Tsvg "$dir/$m.dot" -o "$dir/$m.svg"
    dot -Tsvg "$dir/$m.coverage.dot" -o "$dir/$m.coverage.svg"
  fi
done
cp "$cov/report.txt" "$dir/suite-coverage.txt"
rm -rf "$cov"
echo "regenerated $dir for:" $machines
