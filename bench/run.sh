#!/usr/bin/env bash
# Benchmark: picture-book load, with its docker engine and with its native
# engine (registry to registry over HTTP, no docker), against the shell loop
# an operator would write (docker pull, tag, push per image) and against
# skopeo sync, side by side in one run on loopback: a docker daemon and
# registries started here, N images of two random 1 MiB layers each. Prints a
# table of wall times and ratios; the requests per blob of the fresh native
# run at the source and at its target; and the requests the no-op
# picture-book runs (both engines) send to the source registry.
#
# The native engine's requests are told from docker's and skopeo's by their
# user agents: picture-book/VERSION native on its blob streams (GET at the
# source, PUT and PATCH at the target), picture-book/VERSION on the rest
# (manifests, the up-to-date checks, HEAD of blobs, POST of uploads). Each
# tool has a target of its own, and the runs take turns, so a run's lines in
# an access log are those between two counts of its lines.
#
# Needs root and the Debian packages docker.io, docker-registry and skopeo,
# plus curl and python3.
# Usage: bench/run.sh [IMAGES] [PARALLEL]    (defaults 30 and 4)
#        bench/run.sh --big [SIZE_MIB]       (one big layer: bench/big.sh)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

if [ "${1:-}" = --big ]; then
    shift
    exec "$(dirname "$0")/big.sh" "$@"
fi

N=${1:-30}
PARALLEL=${2:-4}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init bench dockerd docker docker-registry skopeo curl python3 bc
# The version in picture-book's user agents.
VERSION=$("$BIN" --version | awk '{ print $2 }')


# The docker daemon, and registries: the source, and one target per tool
# (so that docker cannot mount one tool's layers into another's
# repositories). The access logs count what each tool asked.
start_dockerd
export REGISTRY_ACCESS_LOG=true
# Not in $(...): the registries' pids must reach PIDS for the cleanup.
start_registry src SRC
start_registry t-pb T_PB
start_registry t-native T_NATIVE
start_registry t-naive T_NAIVE
start_registry t-skopeo T_SKOPEO

# N images of two random 1 MiB layers, in the source only.
build_images "$N" "$SRC"
clear_local() { docker image ls -q | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true; }
clear_local

# The distinct blobs (configs and layers) of the N images, from the source's
# manifests.
BLOBS=$(python3 - "$SRC" "$N" <<'PY'
import json, sys, urllib.request
src, n = sys.argv[1], int(sys.argv[2])
open_url = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
seen = set()
for i in range(1, n + 1):
    url = f"http://{src}/v2/bench/img{i}/manifests/1"
    m = json.load(open_url(urllib.request.Request(url, headers={"Accept": accept})))
    seen.update(d["digest"] for d in [m["config"], *m["layers"]])
print(len(seen))
PY
)

# picture-book's configurations: the docker engine (the default) and the
# native engine, each with a target, a state directory and a list of its own.
pb_config() { # DIR TARGET [EXTRA_LINE]
    mkdir -p "$WORK/$1"
    {
        echo '#!/bin/sh'
        for i in $(seq 1 "$N"); do echo "echo $SRC/bench/img$i:1"; done
    } >"$WORK/$1/list.sh"
    chmod +x "$WORK/$1/list.sh"
    cat >"$WORK/$1/config.yaml" <<EOF
registries:
  - hostname: '$2'
    repository: pb
    syncerScript: list.sh
    parallel: $PARALLEL
${3:-}
EOF
}
pb_config pb "$T_PB"
pb_config pbn "$T_NATIVE" '    engine: native'
pb() { "$BIN" -q --config "$WORK/pb/config.yaml" --state-dir "$WORK/pb/state" load --all; }
pbn() { "$BIN" -q --config "$WORK/pbn/config.yaml" --state-dir "$WORK/pbn/state" load --all; }

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

# The lines of a registry's log so far, once the last request's line is
# written (a registry logs a request after answering it).
lines() { sleep 0.5; wc -l <"$WORK/$1/log"; }

# Each measurement in a variable of its own, so that a failed run stops the
# script (set -e sees a failing command substitution in an assignment).
echo "fresh runs..." >&2
clear_local; r=$(timed pb); read -r PB_FRESH PB_FRESH_CPU <<<"$r"
clear_local
NF_SRC0=$(lines src); NF_DST0=$(lines t-native)
r=$(timed pbn); read -r PBN_FRESH PBN_FRESH_CPU <<<"$r"
NF_SRC1=$(lines src); NF_DST1=$(lines t-native)
r=$(timed naive); read -r NAIVE_FRESH NAIVE_FRESH_CPU <<<"$r"
r=$(timed skopeo_sync); read -r SKOPEO_FRESH SKOPEO_FRESH_CPU <<<"$r"
echo "no-op re-runs..." >&2
P_SRC0=$(lines src)
r=$(timed pb); read -r PB_NOOP PB_NOOP_CPU <<<"$r"
P_SRC1=$(lines src)
NN_DST0=$(lines t-native)
r=$(timed pbn); read -r PBN_NOOP PBN_NOOP_CPU <<<"$r"
NN_SRC1=$(lines src); NN_DST1=$(lines t-native)
r=$(timed naive); read -r NAIVE_NOOP NAIVE_NOOP_CPU <<<"$r"
r=$(timed skopeo_sync); read -r SKOPEO_NOOP SKOPEO_NOOP_CPU <<<"$r"

# What each picture-book run asked, by method, kind and user agent.
NF_SRC=$(requests "$WORK/src/log" "$NF_SRC0" "$NF_SRC1" "$VERSION")
NF_DST=$(requests "$WORK/t-native/log" "$NF_DST0" "$NF_DST1" "$VERSION")
P_SRC=$(requests "$WORK/src/log" "$P_SRC0" "$P_SRC1" "$VERSION")
NN_SRC=$(requests "$WORK/src/log" "$P_SRC1" "$NN_SRC1" "$VERSION")
NN_DST=$(requests "$WORK/t-native/log" "$NN_DST0" "$NN_DST1" "$VERSION")
read -r NF_DISTINCT NF_MOST <<<"$(blob_gets "$WORK/src/log" "$NF_SRC0" "$NF_SRC1")"

fmt_time() { printf '%.2f s (%s%%)' "$1" "$2"; }
printf '\n%s images of two 1 MiB layers, picture-book parallel %s, on %s (%s cores)\n\n' \
    "$N" "$PARALLEL" "$(uname -m)" "$(nproc)"
printf 'wall time (and how busy all cores were meanwhile)\n\n'
printf '| run | picture-book docker | picture-book native | naive loop | skopeo sync | pb docker / naive | pb docker / skopeo | pb native / skopeo | pb native / pb docker |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
printf '| fresh | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$(fmt_time "$PB_FRESH" "$PB_FRESH_CPU")" "$(fmt_time "$PBN_FRESH" "$PBN_FRESH_CPU")" \
    "$(fmt_time "$NAIVE_FRESH" "$NAIVE_FRESH_CPU")" "$(fmt_time "$SKOPEO_FRESH" "$SKOPEO_FRESH_CPU")" \
    "$(ratio "$PB_FRESH" "$NAIVE_FRESH")" "$(ratio "$PB_FRESH" "$SKOPEO_FRESH")" \
    "$(ratio "$PBN_FRESH" "$SKOPEO_FRESH")" "$(ratio "$PBN_FRESH" "$PB_FRESH")"
printf '| no-op re-run | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$(fmt_time "$PB_NOOP" "$PB_NOOP_CPU")" "$(fmt_time "$PBN_NOOP" "$PBN_NOOP_CPU")" \
    "$(fmt_time "$NAIVE_NOOP" "$NAIVE_NOOP_CPU")" "$(fmt_time "$SKOPEO_NOOP" "$SKOPEO_NOOP_CPU")" \
    "$(ratio "$PB_NOOP" "$NAIVE_NOOP")" "$(ratio "$PB_NOOP" "$SKOPEO_NOOP")" \
    "$(ratio "$PBN_NOOP" "$SKOPEO_NOOP")" "$(ratio "$PBN_NOOP" "$PB_NOOP")"

# row WHERE REQUESTS METHOD KIND DIVISOR: one line of the requests table.
row() {
    local native pb other
    native=$(tally "$2" "$3" "$4" native); pb=$(tally "$2" "$3" "$4" pb); other=$(tally "$2" "$3" "$4" other)
    printf '| %s | %s %s | %s | %s | %s | %s |\n' "$1" "$3" "$4" "$native" "$pb" "$other" "$(per "$5" $((native + pb)))"
}
printf '\nrequests of the fresh native run: %s distinct blobs (configs and layers) in %s images\n\n' "$BLOBS" "$N"
printf '| registry | request | picture-book/%s native | picture-book/%s | other agents | picture-book per blob (manifests: per image) |\n' "$VERSION" "$VERSION"
printf '|---|---|---|---|---|---|\n'
row source "$NF_SRC" GET blob "$BLOBS"
row source "$NF_SRC" HEAD blob "$BLOBS"
row source "$NF_SRC" HEAD manifest "$N"
row source "$NF_SRC" GET manifest "$N"
row source "$NF_SRC" GET other "$N"
row target "$NF_DST" HEAD blob "$BLOBS"
row target "$NF_DST" POST upload "$BLOBS"
row target "$NF_DST" PUT upload "$BLOBS"
row target "$NF_DST" PATCH upload "$BLOBS"
row target "$NF_DST" DELETE upload "$BLOBS"
row target "$NF_DST" HEAD manifest "$N"
row target "$NF_DST" PUT manifest "$N"
row target "$NF_DST" GET other "$N"
printf '\nGETs of blobs at the source: %s distinct digests of %s, at most %s GETs of one digest\n' \
    "$NF_DISTINCT" "$BLOBS" "$NF_MOST"
printf 'responses at the source: %s\n' "$(statuses "$WORK/src/log" "$NF_SRC0" "$NF_SRC1")"
printf 'responses at the target: %s\n' "$(statuses "$WORK/t-native/log" "$NF_DST0" "$NF_DST1")"

# noop REQUESTS: a no-op run's requests at one registry, on one line.
noop() {
    printf 'HEAD manifest %s, GET manifest %s, blob requests %s, other %s' \
        "$(tally "$1" HEAD manifest)" "$(tally "$1" GET manifest)" \
        "$(( $(tally "$1" GET blob) + $(tally "$1" HEAD blob) + $(tally "$1" POST upload) + $(tally "$1" PUT upload) + $(tally "$1" PATCH upload) ))" \
        "$(( $(tally "$1" GET other) + $(tally "$1" HEAD other) ))"
}
printf '\nrequests of the no-op picture-book runs (%s images)\n' "$N"
printf '  docker engine, at the source: %s\n' "$(noop "$P_SRC")"
printf '  native engine, at the source: %s\n' "$(noop "$NN_SRC")"
printf '  native engine, at its target: %s; PUT manifest %s\n' "$(noop "$NN_DST")" "$(tally "$NN_DST" PUT manifest)"
