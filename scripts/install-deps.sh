#!/usr/bin/env bash
# Installs what tollgate needs to build and to be tested on a fresh Debian 12 machine (as root):
# the Debian packages listed in .ci/apt-packages, and the crates (cargo fetches them on build).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: needs root to apt-get install (run: sudo $0)" >&2
  exit 1
fi
mapfile -t pkgs < <(grep -vE '^\s*(#|$)' "$here/.ci/apt-packages" | sort -u)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -q
  # Debian ships services (kamailio, rtpengine) enabled: tests start their own, on loopback, by hand.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found (Rust toolchain required)" >&2; exit 1; }
