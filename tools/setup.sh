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
# With --garage (tools/test.sh, tools/bench-remote, .ci/run): Garage, the S3
# server the remote tests and benchmark run against (tools/garage.sh starts
# it), built once per machine and cached in /var/cache/vzstore/garage. Only
# the features a single test node uses (sqlite metadata, bundled libsodium),
# at opt-level 2; this build took 15 minutes on an idle 2-core machine here
# (.ci/run overlaps it with clippy and the test build). Its build
# folder is removed afterwards (0.8 GB). One build at a time (flock).
garage_root=/var/cache/vzstore/garage
if [[ ${1:-} == --garage ]]; then
  mkdir -p "$garage_root"
  exec 9>"$garage_root/.lock"
  flock 9
  if ! [[ -x $garage_root/bin/garage ]] && ! command -v garage >/dev/null; then
    echo "setup: building garage 2.5.0 (once per machine)"
    CARGO_TARGET_DIR=/var/cache/vzstore/garage-build CARGO_PROFILE_RELEASE_OPT_LEVEL=2 \
      CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_LTO=false \
      cargo install --locked --quiet garage --version 2.5.0 --root "$garage_root" \
      --no-default-features --features bundled-libs,sqlite
    rm -rf /var/cache/vzstore/garage-build
  fi
  flock -u 9
fi
