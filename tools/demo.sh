#!/usr/bin/env bash
# Set up, build, and run the main job on a built-in default: ingest the host's /usr
# as template "host-usr" into a demo store, verify it, and print the report.
# Usage: sudo tools/demo.sh [SOURCE_DIR] [STORE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
. tools/env.sh
src="${1:-/usr}"
store="${2:-/var/tmp/vzstore-demo}"
cargo build --release --quiet
"$VZSTORE_BIN" --store "$store" init
"$VZSTORE_BIN" --store "$store" ingest "$src" --name host-usr
"$VZSTORE_BIN" --store "$store" ingest "$src" --name host-usr   # again: unchanged files are not re-read
"$VZSTORE_BIN" --store "$store" templates
"$VZSTORE_BIN" --store "$store" verify
"$VZSTORE_BIN" --store "$store" report
