#!/usr/bin/env bash
# Benchmark of one big layer: picture-book load with the native engine
# (registry to registry over HTTP) against `skopeo copy docker:// docker://`,
# on loopback, with registries started here and no docker daemon. The source
# gets one image of one random layer of SIZE_MIB MiB (gzip, which random data
# does not shrink) and a config, written here as an OCI layout and pushed
# with `skopeo copy oci:...`. Each tool copies it into a target registry of
# its own. Prints wall time, throughput and peak RSS of each, the ratios
# picture-book / skopeo, whether the targets hold the source's digest, and
# the requests of the picture-book run at the source and at its target.
#
# Peak RSS: GNU time's maximum resident set size when /usr/bin/time is GNU
# time, else VmHWM read from /proc/PID/status every 50 ms while the tool
# runs (BIG_RSS=sample forces that).
#
# Needs root, the Debian packages docker-registry and skopeo, plus curl,
# python3, tar, gzip and about 5 x SIZE_MIB MiB free under /tmp.
# Usage: bench/big.sh [SIZE_MIB]      (default 1024; also bench/run.sh --big)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

SIZE=${1:-1024}
case $SIZE in '' | *[!0-9]*) echo "SIZE_MIB must be a number of MiB" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init big docker-registry skopeo curl python3 tar gzip sha256sum bc
AVAIL=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
[ "$AVAIL" -ge $((5 * SIZE + 512)) ] || {
    echo "need about $((5 * SIZE + 512)) MiB free under /tmp, have $AVAIL MiB" >&2
    exit 2
}
VERSION=$("$BIN" --version | awk '{ print $2 }')

cpu() { awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }

# Registries: the source and one target per tool, with access logs.
export REGISTRY_ACCESS_LOG=true
# Not in $(...): the registries' pids must reach PIDS for the cleanup.
start_registry src SRC
start_registry t-pb T_PB
start_registry t-skopeo T_SKOPEO

# The image, as an OCI layout: one gzip layer of a tar of one random file.
echo "writing an image of one random $SIZE MiB layer..." >&2
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256" "$WORK/rootfs"
head -c $((SIZE * 1048576)) /dev/urandom >"$WORK/rootfs/random"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$WORK/rootfs" -cf "$WORK/layer.tar" random
rm -f "$WORK/rootfs/random"
DIFF_ID=sha256:$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
gzip -1 -n -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
rm -f "$WORK/layer.tar"
# blob FILE: moves FILE into the layout under its digest; prints "DIGEST SIZE".
blob() {
    local digest size
    digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$LAYOUT/blobs/sha256/${digest#sha256:}"
    echo "$digest $size"
}
read -r LAYER LAYER_SIZE <<<"$(blob "$WORK/layer.tar.gz")"
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$DIFF_ID" >"$WORK/config.json"
read -r CONFIG CONFIG_SIZE <<<"$(blob "$WORK/config.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
    "$CONFIG" "$CONFIG_SIZE" "$LAYER" "$LAYER_SIZE" >"$WORK/manifest.json"
read -r MANIFEST MANIFEST_SIZE <<<"$(blob "$WORK/manifest.json")"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
    "$MANIFEST" "$MANIFEST_SIZE" >"$LAYOUT/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
echo "pushing it to the source..." >&2
T0=$(now)
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$LAYOUT:1" "docker://$SRC/bench/big:1" >/dev/null
PUSH=$(elapsed "$T0" "$(now)")
rm -rf "$LAYOUT"

# The manifest digest a registry holds for REPO:TAG (empty when none).
digest_at() {
    curl -s -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$1/v2/$2/manifests/$3" |
        awk -F': ' 'tolower($1) == "docker-content-digest" { sub(/\r$/, "", $2); print $2 }'
}
SRC_DIGEST=$(digest_at "$SRC" bench/big 1)
[ "$SRC_DIGEST" = "$MANIFEST" ] || { echo "the source holds $SRC_DIGEST, not $MANIFEST" >&2; exit 1; }

# picture-book, with the native engine.
mkdir -p "$WORK/pb"
printf '#!/bin/sh\necho %s/bench/big:1\n' "$SRC" >"$WORK/pb/list.sh"
chmod +x "$WORK/pb/list.sh"
cat >"$WORK/pb/config.yaml" <<EOF
registries:
  - hostname: '$T_PB'
    repository: pb
    syncerScript: list.sh
    engine: native
EOF

# measure COMMAND...: runs COMMAND (its stdout dropped); prints its wall
# time, how busy all cores were meanwhile, and its peak RSS in KiB.
if [ "${BIG_RSS:-}" != sample ] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    RSS_HOW="GNU time"
else
    RSS_HOW="VmHWM sampled every 50 ms"
fi
measure() {
    local t0 t1 c0 c1 pid hwm=0 v
    c0=$(cpu); t0=$(now)
    if [ "$RSS_HOW" = "GNU time" ]; then
        /usr/bin/time -f %M -o "$WORK/rss" "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }
        hwm=$(tail -n 1 "$WORK/rss")
    else
        "$@" >/dev/null &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$v" ] && hwm=$v
            sleep 0.05
        done
        wait "$pid" || { echo "failed: $*" >&2; exit 1; }
    fi
    t1=$(now); c1=$(cpu)
    echo "$(elapsed "$t0" "$t1") $(echo "$c0 $c1" | awk '{ printf "%d", 100 * ($3 - $1) / ($4 - $2) }') $hwm"
}
lines() { sleep 0.5; wc -l <"$WORK/$1/log"; }

echo "copying with picture-book (native)..." >&2
S0=$(lines src); D0=$(lines t-pb)
r=$(measure "$BIN" -q --config "$WORK/pb/config.yaml" --state-dir "$WORK/pb/state" load --all)
read -r PB_TIME PB_CPU PB_RSS <<<"$r"
S1=$(lines src); D1=$(lines t-pb)
echo "copying with skopeo copy..." >&2
r=$(measure skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$SRC/bench/big:1" "docker://$T_SKOPEO/skopeo/big:1")
read -r SK_TIME SK_CPU SK_RSS <<<"$r"

PB_DIGEST=$(digest_at "$T_PB" pb/bench/big 1)
SK_DIGEST=$(digest_at "$T_SKOPEO" skopeo/big 1)
same() { if [ "$1" = "$SRC_DIGEST" ]; then echo "the source's"; else echo "${1:-none}, NOT the source's"; fi; }
SRC_REQ=$(requests "$WORK/src/log" "$S0" "$S1" "$VERSION")
DST_REQ=$(requests "$WORK/t-pb/log" "$D0" "$D1" "$VERSION")
read -r DISTINCT MOST <<<"$(blob_gets "$WORK/src/log" "$S0" "$S1")"

MIB=$(echo "scale=1; $LAYER_SIZE / 1048576" | bc)
speed() { echo "scale=1; $MIB / $1" | bc; }
mib() { echo "scale=1; $1 / 1024" | bc | sed 's/^\./0./'; }
printf '\none image of one random %s MiB layer (gzip, %s bytes) and a config, on %s (%s cores); peak RSS by %s\n\n' \
    "$SIZE" "$LAYER_SIZE" "$(uname -m)" "$(nproc)" "$RSS_HOW"
printf '| tool | wall time (cores busy) | throughput | peak RSS |\n'
printf '|---|---|---|---|\n'
printf '| picture-book native (load --all) | %.2f s (%s%%) | %s MiB/s | %s MiB |\n' \
    "$PB_TIME" "$PB_CPU" "$(speed "$PB_TIME")" "$(mib "$PB_RSS")"
printf '| skopeo copy | %.2f s (%s%%) | %s MiB/s | %s MiB |\n' \
    "$SK_TIME" "$SK_CPU" "$(speed "$SK_TIME")" "$(mib "$SK_RSS")"
printf '| pb / skopeo | %s | | %s |\n' "$(ratio "$PB_TIME" "$SK_TIME")" "$(ratio "$PB_RSS" "$SK_RSS")"
printf '\n(pushing the image to the source with skopeo copy oci: took %.2f s)\n' "$PUSH"
printf '\nmanifest at the picture-book target: %s; at the skopeo target: %s\n' \
    "$(same "$PB_DIGEST")" "$(same "$SK_DIGEST")"
printf '\nrequests of the picture-book run (2 blobs: the layer and the config; picture-book/%s native + picture-book/%s)\n' \
    "$VERSION" "$VERSION"
printf '  source: GET blob %s + %s (%s distinct digests, at most %s GETs of one), HEAD manifest %s, GET manifest %s; responses %s\n' \
    "$(tally "$SRC_REQ" GET blob native)" "$(tally "$SRC_REQ" GET blob pb)" "$DISTINCT" "$MOST" \
    "$(tally "$SRC_REQ" HEAD manifest)" "$(tally "$SRC_REQ" GET manifest)" \
    "$(statuses "$WORK/src/log" "$S0" "$S1")"
printf '  target: HEAD blob %s, POST upload %s, PUT upload %s, PATCH upload %s, DELETE upload %s, HEAD manifest %s, PUT manifest %s; responses %s\n' \
    "$(tally "$DST_REQ" HEAD blob)" "$(tally "$DST_REQ" POST upload)" "$(tally "$DST_REQ" PUT upload)" \
    "$(tally "$DST_REQ" PATCH upload)" "$(tally "$DST_REQ" DELETE upload)" \
    "$(tally "$DST_REQ" HEAD manifest)" "$(tally "$DST_REQ" PUT manifest)" \
    "$(statuses "$WORK/t-pb/log" "$D0" "$D1")"
