#!/usr/bin/env bash
# The idle daemon's memory: `picture-book sync` with R registries (default
# 50), native engine, each mirroring the same K images (default 5, three
# blobs each, bench/push.py) from one source. The targets are one registry
# that listens on every loopback address, named 127.0.0.1:PORT to
# 127.0.0.R:PORT, so that each entry is a host of its own to picture-book.
# Every registry is asked to run over the API (a fresh round, then a no-op
# round); after each round, once nothing moves, the daemon's VmRSS and
# threads are read from /proc.
#
# Needs root (as bench/lib.sh does), the Debian package docker-registry,
# curl, python3.
# Usage: bench/idle.sh [REGISTRIES] [IMAGES]     (defaults 50 and 5)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

R=${1:-50}
K=${2:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init idle docker-registry curl python3

export REGISTRY_ACCESS_LOG=true
start_registry src SRC
python3 "$HERE/bench/push.py" "http://$SRC" "$K"

# The target, on every loopback address.
PORT=$(free_port)
mkdir -p "$WORK/dst"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$WORK/dst/data" "$PORT" >"$WORK/dst/config.yml"
sed -i "s/addr: 127.0.0.1:/addr: :/" "$WORK/dst/config.yml"
docker-registry serve "$WORK/dst/config.yml" >"$WORK/dst/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done

PBDIR=$WORK/pb
mkdir -p "$PBDIR"
{
    echo '#!/bin/sh'
    for i in $(seq 1 "$K"); do echo "echo $SRC/bench/img$i:1"; done
} >"$PBDIR/list.sh"
chmod +x "$PBDIR/list.sh"
API_PORT=$(free_port)
{
    echo "registries:"
    for r in $(seq 1 "$R"); do
        printf "  - hostname: '127.0.0.%s:%s'\n    repository: mirror\n    syncerScript: list.sh\n    syncPeriod: '@yearly'\n    engine: native\n" "$r" "$PORT"
    done
    printf 'api:\n  enabled: true\n  port: %s\n' "$API_PORT"
} >"$PBDIR/config.yaml"
API=http://127.0.0.1:$API_PORT
"$BIN" -q --config "$PBDIR/config.yaml" --state-dir "$PBDIR/state" sync >"$PBDIR/log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 1 100); do curl -sf -o /dev/null "$API/healthz" && break; sleep 0.1; done

status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON/status"; }
# Waits until no registry has a run in progress (the API's active list).
quiet() {
    for _ in $(seq 1 600); do
        if ! curl -s "$API/list?type=active" | grep -q '"running":true'; then
            sleep 2
            return
        fi
        sleep 0.5
    done
}
round() { # NAME
    for r in $(seq 1 "$R"); do
        curl -s -o /dev/null -X POST "$API/ops?sync=127.0.0.$r:$PORT&action=run"
    done
    sleep 1
    quiet
    echo "| $1 | $(($(status VmRSS) / 1024)) MiB | $(status Threads) |"
}
sleep 2
echo "$R registries of $K images each, $BIN"
echo
echo "| after | VmRSS | threads |"
echo "|---|---|---|"
echo "| start | $(($(status VmRSS) / 1024)) MiB | $(status Threads) |"
round "a fresh round"
round "a no-op round"
round "another no-op round"
