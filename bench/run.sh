#!/usr/bin/env bash
# Benchmark: picture-book load against the shell loop an operator would write
# (docker pull, tag, push per image) and against skopeo sync, side by side in
# one run on loopback: a docker daemon and registries started here, N images
# of two random 1 MiB layers each. Prints a table of wall times and ratios,
# and the requests a no-op picture-book run sends to the source registry.
#
# Needs root and the Debian packages docker.io, docker-registry and skopeo.
# Usage: bench/run.sh [IMAGES] [PARALLEL]    (defaults 30 and 4)
set -euo pipefail

N=${1:-30}
PARALLEL=${2:-4}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=$HERE/target/release/picture-book
WORK=$(mktemp -d /tmp/pb-bench.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 2
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in dockerd docker docker-registry skopeo; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (dockerd needs it)" >&2; exit 2; }
(cd "$HERE" && cargo build --release -q)

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }

# The docker daemon, and registries: the source, and one target per tool
# (so that docker cannot mount one tool's layers into another's
# repositories). The access logs count what each tool asked.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
start_dockerd
export REGISTRY_ACCESS_LOG=true
# Not in $(...): the registries' pids must reach PIDS for the cleanup.
start_registry src SRC
start_registry t-pb T_PB
start_registry t-naive T_NAIVE
start_registry t-skopeo T_SKOPEO

# N images of two random 1 MiB layers, in the source only.
echo "building $N images of two random 1 MiB layers..." >&2
for i in $(seq 1 "$N"); do
    ctx=$WORK/ctx/$i
    mkdir -p "$ctx"
    head -c 1048576 /dev/urandom >"$ctx/a"
    head -c 1048576 /dev/urandom >"$ctx/b"
    printf 'FROM scratch\nCOPY a /a\nCOPY b /b\n' >"$ctx/Dockerfile"
    docker build -q -t "$SRC/bench/img$i:1" "$ctx" >/dev/null
    docker push -q "$SRC/bench/img$i:1" >/dev/null
done
clear_local() { docker image ls -q | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true; }
clear_local

# picture-book's configuration.
mkdir -p "$WORK/pb"
{
    echo '#!/bin/sh'
    for i in $(seq 1 "$N"); do echo "echo $SRC/bench/img$i:1"; done
} >"$WORK/pb/list.sh"
chmod +x "$WORK/pb/list.sh"
cat >"$WORK/pb/config.yaml" <<EOF
registries:
  - hostname: '$T_PB'
    repository: pb
    syncerScript: list.sh
    parallel: $PARALLEL
EOF
pb() { "$BIN" -q --config "$WORK/pb/config.yaml" --state-dir "$WORK/pb/state" load --all; }

naive() {
    for i in $(seq 1 "$N"); do
        docker pull -q "$SRC/bench/img$i:1" >/dev/null
        docker tag "$SRC/bench/img$i:1" "$T_NAIVE/naive/bench/img$i:1"
        docker push -q "$T_NAIVE/naive/bench/img$i:1" >/dev/null
    done
}

{
    echo "$SRC:"
    echo "  tls-verify: false"
    echo "  images:"
    for i in $(seq 1 "$N"); do echo "    bench/img$i: [\"1\"]"; done
} >"$WORK/skopeo.yaml"
skopeo_sync() {
    skopeo sync --src yaml --dest docker --dest-tls-verify=false \
        "$WORK/skopeo.yaml" "$T_SKOPEO/skopeo" >/dev/null
}

# Runs a command; prints its wall time and how busy all cores were meanwhile.
cpu() { awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }
timed() {
    local t0 t1 c0 c1
    c0=$(cpu); t0=$(now)
    "$@" || { echo "failed: $*" >&2; exit 1; }
    t1=$(now); c1=$(cpu)
    echo "$(elapsed "$t0" "$t1") $(echo "$c0 $c1" | awk '{ printf "%d", 100 * ($3 - $1) / ($4 - $2) }')"
}

# Each measurement in a variable of its own, so that a failed run stops the
# script (set -e sees a failing command substitution in an assignment).
echo "fresh runs..." >&2
clear_local; r=$(timed pb); read -r PB_FRESH PB_FRESH_CPU <<<"$r"
clear_local; r=$(timed naive); read -r NAIVE_FRESH NAIVE_FRESH_CPU <<<"$r"
r=$(timed skopeo_sync); read -r SKOPEO_FRESH SKOPEO_FRESH_CPU <<<"$r"
echo "no-op re-runs..." >&2
SRC_LOG=$WORK/src/log
BEFORE=$(wc -l <"$SRC_LOG")
r=$(timed pb); read -r PB_NOOP PB_NOOP_CPU <<<"$r"
AFTER=$(wc -l <"$SRC_LOG")
r=$(timed naive); read -r NAIVE_NOOP NAIVE_NOOP_CPU <<<"$r"
r=$(timed skopeo_sync); read -r SKOPEO_NOOP SKOPEO_NOOP_CPU <<<"$r"

# What the no-op picture-book run asked of the source, by method and kind.
REQUESTS=$(sed -n "$((BEFORE + 1)),${AFTER}p" "$SRC_LOG" | grep '^127.0.0.1 - ' |
    awk -F'"' '{ split($2, r, " "); kind = (r[2] ~ /\/manifests\//) ? "manifest" : (r[2] ~ /\/blobs\//) ? "blob" : "other"; n[r[1] " " kind]++ }
               END { for (k in n) printf "%s %d\n", k, n[k] }' | sort)
count() { echo "$REQUESTS" | awk -v k="$1 $2" '$1 " " $2 == k { print $3; found=1 } END { if (!found) print 0 }'; }

printf '\n%s images of two 1 MiB layers, picture-book parallel %s, on %s (%s cores)\n\n' \
    "$N" "$PARALLEL" "$(uname -m)" "$(nproc)"
printf 'wall time (and how busy all cores were meanwhile)\n\n'
printf '| run | picture-book | naive loop | skopeo sync | pb / naive | pb / skopeo |\n'
printf '|---|---|---|---|---|---|\n'
printf '| fresh | %.2f s (%s%%) | %.2f s (%s%%) | %.2f s (%s%%) | %s | %s |\n' \
    "$PB_FRESH" "$PB_FRESH_CPU" "$NAIVE_FRESH" "$NAIVE_FRESH_CPU" "$SKOPEO_FRESH" "$SKOPEO_FRESH_CPU" \
    "$(ratio "$PB_FRESH" "$NAIVE_FRESH")" "$(ratio "$PB_FRESH" "$SKOPEO_FRESH")"
printf '| no-op re-run | %.2f s (%s%%) | %.2f s (%s%%) | %.2f s (%s%%) | %s | %s |\n' \
    "$PB_NOOP" "$PB_NOOP_CPU" "$NAIVE_NOOP" "$NAIVE_NOOP_CPU" "$SKOPEO_NOOP" "$SKOPEO_NOOP_CPU" \
    "$(ratio "$PB_NOOP" "$NAIVE_NOOP")" "$(ratio "$PB_NOOP" "$SKOPEO_NOOP")"
printf '\nrequests of the no-op picture-book run at the source: HEAD manifest %s, GET manifest %s, blob requests %s, other %s\n' \
    "$(count HEAD manifest)" "$(count GET manifest)" \
    "$(( $(count GET blob) + $(count HEAD blob) ))" "$(( $(count GET other) + $(count HEAD other) ))"
