#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build (release), run the default scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target cvmsim
exec ./build/release/cvmsim run "$@"
