#!/usr/bin/env bash
# Conformance of a mounted container root, for each backend given (default:
# fuse and kernel): pjdfstest (at least 375 of 398 pass for fuse, 341 for
# kernel; every failure must be listed in
# tests/conformance/expected-failures-<backend>.txt) and fsx (100,000
# operations on a new file and on a file from the template, the copy-up path).
# Installs pjdfstest and fsx with cargo on first use.
# Needs root, /dev/fuse, EROFS and overlayfs.
# Usage: tools/conformance.sh [FSX_OPS] [BACKEND...]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
. tools/env.sh
ops="${1:-100000}"
shift || true
backends=("$@")
[ ${#backends[@]} -gt 0 ] || backends=(fuse kernel)
command -v pjdfstest >/dev/null || cargo install --locked pjdfstest@0.2.2
command -v fsx >/dev/null || cargo install --locked fsx@0.3.2
getent group tests >/dev/null || groupadd tests
id tests >/dev/null 2>&1 || useradd -g tests -M -s /usr/sbin/nologin tests
id nobody >/dev/null && getent group nogroup >/dev/null
[ -n "${VZSTORE_PREBUILT:-}" ] || cargo build --release --quiet
vz="$VZSTORE_BIN"
run_backend() {
backend=$1
expected="tests/conformance/expected-failures-$backend.txt"
# Least number of passes: 398 tests less the 16 pjdfstest skips on Linux and
# the failures listed for the backend (kernel: 41 tests that create a 0:0
# character device, which overlayfs refuses).
case "$backend" in
  fuse) min_pass=375 ;;
  kernel) min_pass=341 ;;
  *) echo "unknown backend $backend"; exit 2 ;;
esac
echo "== conformance of the $backend backend"
# Short: pjdfstest binds unix sockets under it (108-byte sun_path limit).
work=$(mktemp -d /tmp/vzc.XXXXXX)
chmod 755 "$work"   # the tests run as other users too
cleanup() {
  "$vz" --store "$work/store" umount pjd >/dev/null 2>&1 || true
  "$vz" --store "$work/store" umount fsx >/dev/null 2>&1 || true
  rm -rf "$work"
}
[ -n "${KEEP:-}" ] || trap cleanup EXIT
mkdir -p "$work/src/etc"
head -c 1000000 /dev/urandom > "$work/src/etc/template-file"
"$vz" --store "$work/store" init >/dev/null
"$vz" --store "$work/store" ingest "$work/src" --name conf >/dev/null
"$vz" --store "$work/store" create pjd fsx --template conf --backend "$backend" >/dev/null

# pjdfstest switches to other users: mount where they can reach (the store and its
# default mount points are closed to them, see README "Integrity and safety").
mkdir -p "$work/pjd"
"$vz" --store "$work/store" mount pjd "$work/pjd"
root="$work/pjd"
mkdir "$root/work"; chmod 777 "$root/work"
(cd "$root/work" && pjdfstest -c "$repo/tests/conformance/pjdfstest-$backend.toml" -p "$root/work" 2>&1 || true) \
  > "$work/pjdfstest.out"
summary=$(grep '^Summary:' "$work/pjdfstest.out" || true)
echo "pjdfstest ($backend): ${summary:-no summary}"
[ -n "$summary" ] || { tail -20 "$work/pjdfstest.out"; exit 1; }
passed=$(echo "$summary" | sed -E 's/.* ([0-9]+) passed.*/\1/')
unexpected=0
while read -r name status; do
  [ "$status" = "failed" ] || continue
  if ! grep -Eq "^${name}[[:space:]]" "$expected"; then
    echo "pjdfstest: unexpected failure: $name"; unexpected=1
  fi
done < <(grep -E '^[A-Za-z0-9_:]+[[:space:]]+(failed|FAILED)$' "$work/pjdfstest.out" | awk '{print $1, tolower($NF)}')
"$vz" --store "$work/store" umount pjd >/dev/null
if [ "$passed" -lt "$min_pass" ] || [ "$unexpected" -ne 0 ]; then
  echo "pjdfstest: FAILED ($passed passed; need $min_pass and no unlisted failure)"; exit 1
fi

"$vz" --store "$work/store" mount fsx
froot="$work/store/root/fsx"
(cd "$froot" && fsx -q -N "$ops" -S 1 -P "$work" new-file) || { echo "fsx on a new file: FAILED"; exit 1; }
(cd "$froot" && fsx -q -N "$ops" -S 2 -P "$work" etc/template-file) || { echo "fsx on a template file: FAILED"; exit 1; }
echo "fsx: $ops operations on a new file and on a template file: OK"
"$vz" --store "$work/store" umount fsx >/dev/null
"$vz" --store "$work/store" verify | tail -1
"$vz" --store "$work/store" destroy pjd >/dev/null
"$vz" --store "$work/store" destroy fsx >/dev/null
rm -rf "$work/store" "$work/src" "$work/pjd" "$work/pjdfstest.out"
}
for b in "${backends[@]}"; do run_backend "$b"; done
