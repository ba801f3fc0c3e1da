#!/usr/bin/env bash
# Install what building and testing vzstore needs on Debian 12 (idempotent).
# Needs root. Rust itself (cargo) must already be installed (rustup).
set -euo pipefail
pkgs=(libclang-dev clang build-essential pkg-config librocksdb-dev fuse3 debootstrap attr util-linux mount e2fsprogs erofs-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
