# Sourced by the tools: one persistent cargo target directory shared by every
# build on this machine (building rocksdb from scratch takes 15-25 minutes).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/vzstore/target}"
mkdir -p "$CARGO_TARGET_DIR"
VZSTORE_BIN="$CARGO_TARGET_DIR/release/vzstore"
