#!/usr/bin/env bash
# Set up, build, and run the main job on a built-in default: ingest the host's /usr
# as template "host-usr" into a demo store, verify it, serve it to one container
# of each backend (FUSE and kernel), and print the report.
# Usage: sudo tools/demo.sh [SOURCE_DIR] [STORE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
. tools/env.sh
src="${1:-/usr}"
store="${2:-/var/tmp/vzstore-demo}"
cargo build --release --quiet
# Man pages and bash completion, generated from the command definitions.
"$VZSTORE_BIN" man /usr/local/share/man/man1
mkdir -p /etc/bash_completion.d && "$VZSTORE_BIN" completions bash > /etc/bash_completion.d/vzstore
"$VZSTORE_BIN" --store "$store" init
"$VZSTORE_BIN" --store "$store" ingest "$src" --name host-usr
"$VZSTORE_BIN" --store "$store" ingest "$src" --name host-usr   # again: unchanged files are not re-read
"$VZSTORE_BIN" --store "$store" templates
"$VZSTORE_BIN" --store "$store" verify
for b in fuse kernel; do
  "$VZSTORE_BIN" --store "$store" destroy --force "demo-$b" >/dev/null 2>&1 || true
  "$VZSTORE_BIN" --store "$store" create "demo-$b" --template host-usr --backend "$b"
  "$VZSTORE_BIN" --store "$store" mount "demo-$b"
done
"$VZSTORE_BIN" --store "$store" list
for f in bin/ls lib/os-release; do
  if [ -e "$src/$f" ]; then
    cmp "$store/root/demo-fuse/$f" "$store/root/demo-kernel/$f" && echo "$f: same bytes through both backends"
  fi
done
"$VZSTORE_BIN" --store "$store" umount demo-fuse
"$VZSTORE_BIN" --store "$store" umount demo-kernel
"$VZSTORE_BIN" --store "$store" report
