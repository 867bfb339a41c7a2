#!/usr/bin/env bash
# Installs cvmsim's build and test dependencies (clang-format: the format check) from Debian 12
# packages, only those that are missing.
set -euo pipefail
pkgs=(cmake g++ make pkg-config libsystemc-dev libboost-graph-dev catch2 nlohmann-json3-dev libcli11-dev
      clang-format)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "cvmsim: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
