#!/usr/bin/env bash
# A single-node Garage S3 server on loopback, for the remote tests, the
# benchmark and the demo. Idempotent.
#   tools/garage.sh start   start it (if not running) and print its settings
#   tools/garage.sh env     print the settings as shell exports
#   tools/garage.sh stop    stop it (its data stays in $VZSTORE_GARAGE_DIR)
# Settings (environment): VZSTORE_GARAGE_DIR (default /var/tmp/vzstore-garage),
# VZSTORE_GARAGE_PORT (S3 port, default 3900; RPC and admin use +1 and +3),
# GARAGE_BIN (default: `garage` on PATH, else /var/cache/vzstore/garage/bin/garage,
# where tools/setup.sh installs it). The access key, secret and bucket are fixed
# test values: this server is for tests on loopback, never for real data.
set -euo pipefail
dir=${VZSTORE_GARAGE_DIR:-/var/tmp/vzstore-garage}
port=${VZSTORE_GARAGE_PORT:-3900}
bin=${GARAGE_BIN:-$(command -v garage || echo /var/cache/vzstore/garage/bin/garage)}
key=GK0123456789abcdef01234567
secret=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
bucket=vzstore-test

print_env() {
  cat <<EOT
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export VZSTORE_S3_ENDPOINT=http://127.0.0.1:$port
export VZSTORE_S3_BUCKET=$bucket
export VZSTORE_S3_REGION=garage
EOT
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "${1:-start}" in
  env) print_env ;;
  stop)
    if [[ -f $dir/pid ]]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; rm -f "$dir/pid"; fi
    for _ in $(seq 50); do listening || exit 0; sleep 0.1; done
    echo "garage on port $port did not stop" >&2; exit 1 ;;
  start)
    [[ -x $bin ]] || { echo "garage not found at $bin (tools/setup.sh installs it)" >&2; exit 1; }
    if listening; then print_env; exit 0; fi
    mkdir -p "$dir/meta" "$dir/data"
    cat > "$dir/garage.toml" <<EOT
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
[admin]
api_bind_addr = "127.0.0.1:$((port + 3))"
EOT
    GARAGE_DEFAULT_ACCESS_KEY=$key GARAGE_DEFAULT_SECRET_KEY=$secret GARAGE_DEFAULT_BUCKET=$bucket \
      setsid "$bin" -c "$dir/garage.toml" server --single-node --default-bucket \
      > "$dir/garage.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    for _ in $(seq 300); do
      if listening; then print_env; exit 0; fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "garage did not start; its log:" >&2; tail -20 "$dir/garage.log" >&2; exit 1 ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
