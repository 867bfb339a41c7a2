#!/usr/bin/env bash
# Quick start, step 2: install what is missing, build everything (release) and run every test
# through ctest: the Catch2 unit tests of the functional cores and the scenario regressions.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release "$@"
