#!/usr/bin/env bash
# Install what building and testing vzstore needs on Debian 12 (idempotent).
# Needs root. Rust itself (cargo) must already be installed (rustup).
set -euo pipefail
# Besides the build: FUSE, debootstrap and loop file systems for the tests;
# GNU tar, bsdtar (libarchive-tools), podman, skopeo, umoci and runc are the
# real archive and image clients the tar/OCI tests round-trip through (crun
# cannot start containers in this machine kind's hybrid cgroup setup; runc can).
pkgs=(libclang-dev clang build-essential pkg-config librocksdb-dev fuse3 debootstrap attr util-linux mount e2fsprogs erofs-utils
  tar libarchive-tools zstd xz-utils bzip2 podman skopeo umoci runc python3)
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
