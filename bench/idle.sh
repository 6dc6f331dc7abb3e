#!/usr/bin/env bash
# The idle daemon: `picture-book sync` with N target registries (default
# 50), each run over the API once per round, and the daemon's resident
# memory (VmRSS) and threads read from /proc when every run has ended: at
# start, after each round, and after a quiet minute. Each registry mirrors
# the same small image with the native engine (the first round copies, the
# later ones are no-ops), so what is measured is what runs leave behind.
#
# Everything runs on loopback: a docker daemon only to build the image, one
# source registry and N targets (distribution, one process each).
#
# Not part of `cargo test`; prints a table, exits 0 unless the setup fails
# (exit 2). Needs root and the Debian packages docker.io and
# docker-registry, plus curl and python3.
# Usage: bench/idle.sh [N] [ROUNDS]   (PB=BINARY to use another binary;
#        MALLOC_ARENA_MAX and other environment reach the daemon)
set -euo pipefail

N=${1:-50}
ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/bench/lib.sh"
bench_init idle docker dockerd docker-registry curl python3

start_dockerd
start_registry src SRC
build_images 1 "$SRC"

API_PORT=$(free_port)
{
    echo "registries:"
    for i in $(seq 1 "$N"); do
        start_registry "t$i" TARGET
        printf "  - hostname: '%s'\n    engine: native\n    syncerScript: list.sh\n" "$TARGET"
        echo "$TARGET" >>"$WORK/targets"
    done
    printf "api:\n  enabled: true\n  port: %s\n" "$API_PORT"
} >"$WORK/config.yaml"
printf '#!/bin/sh\necho %s/bench/img1:1\n' "$SRC" >"$WORK/list.sh"
chmod +x "$WORK/list.sh"

API=http://127.0.0.1:$API_PORT
"$BIN" --config "$WORK/config.yaml" --state-dir "$WORK/state" -q sync >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 1 100); do curl -sf "$API/healthz" >/dev/null && break; sleep 0.1; done

# rss_threads: "VmRSS_KiB THREADS" of the daemon.
rss_threads() {
    awk '/^VmRSS:/ { r = $2 } /^Threads:/ { t = $2 } END { print r, t }' "/proc/$DAEMON/status"
}

# Runs every registry once over the API and waits until no run is going
# and each has a last run newer than the round's start.
round() {
    local host pending
    while read -r host; do
        curl -s -o /dev/null -X POST "$API/ops?sync=$host&action=run"
    done <"$WORK/targets"
    for _ in $(seq 1 600); do
        pending=$(curl -s "$API/list?type=configured" >/dev/null &&
            while read -r host; do
                curl -s "$API/ops?sync=$host&action=details"
                echo
            done <"$WORK/targets" | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    if line.strip():
        s = json.loads(line)["status"]
        n += s["running"] or s["lastRun"] is None or s["numberOfSyncs"] < int(sys.argv[1])
print(n)' "$1")
        [ "$pending" = 0 ] && return
        sleep 0.5
    done
    echo "round $1 did not end" >&2
    exit 2
}

printf '%-26s %10s %8s\n' "moment" "RSS (KiB)" "threads"
printf '%-26s %10s %8s\n' "start" $(rss_threads)
for r in $(seq 1 "$ROUNDS"); do
    round "$r"
    sleep 2
    printf '%-26s %10s %8s\n' "after round $r" $(rss_threads)
done
sleep 60
printf '%-26s %10s %8s\n' "after a quiet minute" $(rss_threads)
echo "registries: $N; environment: MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-unset}"
grep -c ' failed' "$WORK/daemon.log" >/dev/null && echo "failures in the daemon's log: $(grep -c 'ERROR' "$WORK/daemon.log")" || true
# SMAPS=1: where the memory is, the largest mappings by Rss.
if [ "${SMAPS:-0}" = 1 ]; then
    awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6); range = $1 }
         /^Rss:/ { if ($2 > 0) print $2, range, name }' "/proc/$DAEMON/smaps" | sort -rn | head -25
    awk '/^Rss:/ { if ($2 > 0) n[$2 >= 64 ? "64KiB+" : $2 "KiB"]++ } END { for (k in n) print k, n[k] }' "/proc/$DAEMON/smaps" | sort -rn -k2 | head
fi
