#!/usr/bin/env bash
# Install test dependencies and run the whole test suite. Needs root (device nodes,
# owners, mounts). The first run builds rocksdb (15-25 minutes on 2 cores) and
# debootstraps a Debian root into /var/cache/vzstore (network to a Debian mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
. tools/env.sh
cargo test --release --features failpoints --no-run
# Garage after the test build: on a new machine .ci/run builds it meanwhile.
tools/setup.sh --garage
cargo test --release --features failpoints "$@"
tools/conformance.sh
