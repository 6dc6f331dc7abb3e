#!/usr/bin/env bash
# What one native run costs in connections, threads and requests, on
# loopback: a source and a target registry started here, N images of
# three blobs each (a layer all images share, a layer and a config of
# their own) pushed straight to the source over the registry API by
# bench/push.py (no docker needed), then `picture-book load` with the native engine, fresh
# and again (a no-op), each under `strace -f -e trace=connect,clone,clone3`.
# Prints, per run: the connects to each registry, the threads started, and
# the requests in each registry's access log, by method.
#
# Needs root (as bench/lib.sh does), the Debian packages docker-registry and
# strace, curl, python3.
# With TAGS, each of the N repositories has that many tags, sharing their
# repository's layer (each tag an image of its own: N x TAGS images).
# Usage: bench/connects.sh [IMAGES] [PARALLEL] [TAGS]   (defaults 40, 4, 1)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

N=${1:-40}
PARALLEL=${2:-4}
TAGS=${3:-1}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init connects docker-registry strace curl python3

export REGISTRY_ACCESS_LOG=true
start_registry src SRC
start_registry dst DST

echo "pushing $N repositories of $TAGS tags of three blobs to the source..." >&2
TAGS=$TAGS python3 "$HERE/bench/push.py" "http://$SRC" "$N"

mkdir -p "$WORK/pb"
{
    echo '#!/bin/sh'
    for i in $(seq 1 "$N"); do
        for t in $(seq 1 "$TAGS"); do echo "echo $SRC/bench/img$i:$t"; done
    done
} >"$WORK/pb/list.sh"
chmod +x "$WORK/pb/list.sh"
cat >"$WORK/pb/config.yaml" <<EOF
registries:
  - hostname: '$DST'
    repository: pb
    syncerScript: list.sh
    parallel: $PARALLEL
    engine: native
EOF

# The lines of a registry's log so far, once the last request's is written.
lines() { sleep 0.5; wc -l <"$WORK/$1/log"; }
# connects TRACE HOST: the connect() calls to HOST's port in the trace.
connects() { grep -c "connect(.*sin_port=htons(${2##*:})" "$1" || true; }
# threads TRACE: the threads (clone and clone3 without a new process) started.
threads() { grep -E '(clone3?)\(' "$1" | grep -c 'CLONE_THREAD' || true; }
by_method() { # LOG FROM TO
    awk -v a="$2" -v b="$3" 'NR > a && NR <= b && /^127\.0\.0\.1 - /' "$1" |
        awk -F'"' '{ split($2, r, " "); n[r[1]]++; t++ }
                   END { for (k in n) printf "%s %d, ", k, n[k]; printf "total %d\n", t }'
}

run() { # NAME
    local s0 d0 s1 d1 t0 t1
    s0=$(lines src); d0=$(lines dst)
    t0=$(now)
    strace -f -qq -e trace=connect,clone,clone3 -o "$WORK/$1.trace" \
        "$BIN" -q --config "$WORK/pb/config.yaml" --state-dir "$WORK/pb/state" load --all >/dev/null
    t1=$(now)
    s1=$(lines src); d1=$(lines dst)
    echo "$1 run ($(elapsed "$t0" "$t1") s under strace):"
    echo "  connects: source $(connects "$WORK/$1.trace" "$SRC"), target $(connects "$WORK/$1.trace" "$DST")"
    echo "  threads started: $(threads "$WORK/$1.trace")"
    echo "  requests at the source: $(by_method "$WORK/src/log" "$s0" "$s1")"
    echo "  requests at the target: $(by_method "$WORK/dst/log" "$d0" "$d1")"
}

echo "$N repositories of $TAGS tags, parallel $PARALLEL, $BIN"
run fresh
run no-op
# $OUT, when set, keeps the access logs and the traces.
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK/src/log" "$OUT/src.log"; cp "$WORK/dst/log" "$OUT/dst.log"; cp "$WORK"/*.trace "$OUT/"
fi
