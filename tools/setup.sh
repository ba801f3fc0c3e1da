#!/usr/bin/env bash
# Install what building and testing vzstore needs on Debian 12 (idempotent).
# Needs root. Rust itself (cargo) must already be installed (rustup).
set -euo pipefail
# Besides the build: FUSE, debootstrap and loop file systems for the tests;
# GNU tar, bsdtar (libarchive-tools), podman, skopeo, umoci and runc are the
# real archive and image clients the tar/OCI tests round-trip through (crun
# cannot start containers in this machine kind's hybrid cgroup setup; runc can).
# rclone is the baseline of the push/pull benchmark.
pkgs=(libclang-dev clang build-essential pkg-config librocksdb-dev fuse3 debootstrap attr util-linux mount e2fsprogs erofs-utils
  tar libarchive-tools zstd xz-utils bzip2 podman skopeo umoci runc python3 rclone)
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
# With --garage (tools/test.sh, tools/bench-remote): Garage, the S3 server
# the remote tests and benchmark run against (tools/garage.sh starts it),
# built once per machine (about 9 minutes on 2 cores) and cached; its build
# folder is removed afterwards (0.8 GB).
garage_root=/var/cache/vzstore/garage
if [[ ${1:-} == --garage ]] && ! [[ -x $garage_root/bin/garage ]] && ! command -v garage >/dev/null; then
  echo "setup: building garage 2.5.0 (once per machine, about 9 minutes)"
  CARGO_TARGET_DIR=/var/cache/vzstore/garage-build \
    cargo install --locked --quiet garage --version 2.5.0 --root "$garage_root"
  rm -rf /var/cache/vzstore/garage-build
fi
