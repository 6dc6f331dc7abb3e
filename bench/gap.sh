#!/usr/bin/env bash
# Benchmark of an air-gap crossing: picture-book export into an OCI layout
# and load --from it, against skopeo sync --dest dir and skopeo sync --src
# dir back, side by side in one run on loopback: a docker daemon (to build
# the images) and registries started here, N images of two random 1 MiB
# layers each. Prints the wall times and ratios of each direction, plus
# picture-book's archive export and load, its incremental (no-op) export,
# and the bytes each tool wrote to disk.
#
# Needs root and the Debian packages docker.io, docker-registry and skopeo,
# plus curl and python3.
# Usage: bench/gap.sh [IMAGES] [PARALLEL]    (defaults 30 and 4)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

N=${1:-30}
PARALLEL=${2:-4}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init gap dockerd docker docker-registry skopeo curl python3 bc

timed() { # COMMAND...: runs it, prints its wall time in seconds
    local t0
    t0=$(now)
    "$@" || { echo "failed: $*" >&2; exit 1; }
    elapsed "$t0" "$(now)"
}
sync_disk() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

start_dockerd
start_registry src SRC
start_registry t-pb T_PB
start_registry t-pb-tar T_TAR
start_registry t-skopeo T_SKOPEO

build_images "$N" "$SRC"

# picture-book: one configuration for both sides, as an operator would
# carry it (the connected side never asks the target).
mkdir -p "$WORK/pb"
{
    echo '#!/bin/sh'
    for i in $(seq 1 "$N"); do echo "echo $SRC/bench/img$i:1"; done
} >"$WORK/pb/list.sh"
chmod +x "$WORK/pb/list.sh"
pb_config() { # FILE TARGET
    cat >"$1" <<EOF
registries:
  - hostname: '$2'
    repository: pb
    syncerScript: list.sh
    parallel: $PARALLEL
EOF
}
pb_config "$WORK/pb/config.yaml" "$T_PB"
pb_config "$WORK/pb/tar.yaml" "$T_TAR"
pb() { "$BIN" -q --config "$WORK/pb/$1" --state-dir "$WORK/pb/state-$1" "${@:2}" >/dev/null; }
pb_export() { pb config.yaml export --all "$WORK/pb-layout"; }
pb_load() { pb config.yaml load --all --from "$WORK/pb-layout"; }
pb_export_tar() { pb tar.yaml export --all --archive "$WORK/pb.tar"; }
pb_load_tar() { pb tar.yaml load --all --from "$WORK/pb.tar"; }

{
    echo "$SRC:"
    echo "  tls-verify: false"
    echo "  images:"
    for i in $(seq 1 "$N"); do echo "    bench/img$i: [\"1\"]"; done
} >"$WORK/skopeo.yaml"
skopeo_export() {
    mkdir -p "$WORK/skopeo-dir"
    skopeo sync --src yaml --dest dir "$WORK/skopeo.yaml" "$WORK/skopeo-dir" >/dev/null 2>>"$WORK/skopeo.log"
}
skopeo_load() {
    skopeo sync --src dir --dest docker --dest-tls-verify=false \
        "$WORK/skopeo-dir" "$T_SKOPEO/skopeo" >/dev/null 2>>"$WORK/skopeo.log"
}

echo "export..." >&2
sync_disk; PB_EXPORT=$(timed pb_export)
sync_disk; SKOPEO_EXPORT=$(timed skopeo_export)
sync_disk; PB_EXPORT_TAR=$(timed pb_export_tar)
sync_disk; PB_EXPORT_NOOP=$(timed pb_export)
echo "load..." >&2
sync_disk; PB_LOAD=$(timed pb_load)
sync_disk; SKOPEO_LOAD=$(timed skopeo_load)
sync_disk; PB_LOAD_TAR=$(timed pb_load_tar)
PB_LOAD_NOOP=$(timed pb_load)

# What arrived: picture-book's targets hold the source's digests.
check_digests() { # TARGET PREFIX
    local i src dst
    for i in $(seq 1 "$N"); do
        src=$(curl -sI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
            "http://$SRC/v2/bench/img$i/manifests/1" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }')
        dst=$(curl -sI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
            "http://$1/v2/$2/bench/img$i/manifests/1" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }')
        if [ -z "$src" ] || [ "$src" != "$dst" ]; then
            echo "img$i at $1: $dst, not $src" >&2
            exit 1
        fi
    done
}
check_digests "$T_PB" pb
check_digests "$T_TAR" pb

size() { du -sb "$1" | cut -f1; }
printf '\n%s images of two random 1 MiB layers, picture-book parallel %s, on %s (%s cores)\n\n' \
    "$N" "$PARALLEL" "$(uname -m)" "$(nproc)"
printf '| direction | picture-book | skopeo sync | picture-book / skopeo |\n|---|---|---|---|\n'
printf '| export (registry to directory) | %.2f s | %.2f s | %s |\n' "$PB_EXPORT" "$SKOPEO_EXPORT" "$(ratio "$PB_EXPORT" "$SKOPEO_EXPORT")"
printf '| load (directory to registry) | %.2f s | %.2f s | %s |\n' "$PB_LOAD" "$SKOPEO_LOAD" "$(ratio "$PB_LOAD" "$SKOPEO_LOAD")"
printf '\npicture-book only: archive export %.2f s, archive load %.2f s, repeated export (nothing new) %.2f s, repeated load (all up to date) %.2f s\n' \
    "$PB_EXPORT_TAR" "$PB_LOAD_TAR" "$PB_EXPORT_NOOP" "$PB_LOAD_NOOP"
printf 'on disk: picture-book layout %s bytes, archive %s bytes, skopeo dirs %s bytes\n' \
    "$(size "$WORK/pb-layout")" "$(size "$WORK/pb.tar")" "$(size "$WORK/skopeo-dir")"
printf 'digests at both picture-book targets equal the source'"'"'s\n'
