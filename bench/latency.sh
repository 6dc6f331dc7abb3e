#!/usr/bin/env bash
# picture-book's native engine against `skopeo sync` over a network with
# latency: registries that serve HTTPS with a private CA (as real ones do),
# each behind a latency front (bench/latency.py: a TCP proxy that holds each
# new connection for a round trip and delays every byte by half a round trip
# each way) on this host's first non-loopback address, so that both tools
# verify the certificate and neither takes the registry for a loopback one.
# N images of three blobs (bench/push.py) in the source; for each RTT (0, 20
# and 80 ms by default) a fresh target, then a fresh copy and a no-op re-run
# by each tool, timed. Prints the times and ratios, the connections each
# front accepted, and the requests per image from the registries' access
# logs.
#
# The CA is installed for picture-book under /etc/docker/certs.d/ADDR:PORT
# (removed on exit); skopeo gets it with --src-cert-dir and --dest-cert-dir.
# Needs root, the Debian packages docker-registry and skopeo, openssl, curl,
# python3.
# Usage: bench/latency.sh [IMAGES] [PARALLEL] [RTT_MS...]  (30, 4, 0 20 80)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

N=${1:-30}
PARALLEL=${2:-4}
shift $(($# >= 2 ? 2 : $#))
RTTS=("$@")
[ ${#RTTS[@]} -gt 0 ] || RTTS=(0 20 80)
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init latency docker-registry skopeo openssl curl python3 bc
ADDR=$(hostname -I | awk '{ print $1 }')
[ -n "$ADDR" ] || { echo "no non-loopback address" >&2; exit 2; }
CERTS_D=()
cleanup_certs() { for d in "${CERTS_D[@]}"; do rm -rf "$d"; done; bench_cleanup; }
trap cleanup_certs EXIT

# A CA and a certificate for ADDR.
TLS=$WORK/tls
mkdir -p "$TLS"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$ADDR" \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
printf 'subjectAltName=IP:%s,IP:127.0.0.1\n' "$ADDR" >"$TLS/ext"
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" \
    -CAcreateserial -days 2 -extfile "$TLS/ext" -out "$TLS/server.crt" 2>/dev/null
export REGISTRY_TLS_DIR=$TLS REGISTRY_ACCESS_LOG=true

start_registry src SRC
echo "pushing $N images of three blobs to the source..." >&2
python3 "$HERE/bench/push.py" "https://$SRC" "$N" "$TLS/ca.crt"

# front NAME UPSTREAM RTT VAR: a latency front for UPSTREAM on ADDR; sets VAR
# to its ADDR:PORT, trusted by picture-book and skopeo.
front() {
    local port
    port=$(python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$ADDR")
    python3 "$HERE/bench/latency.py" "$ADDR" "$port" 127.0.0.1 "${2##*:}" "$3" "$WORK/$1.count" &
    PIDS+=($!)
    echo 0 >"$WORK/$1.count"
    for _ in $(seq 1 50); do
        curl -s --cacert "$TLS/ca.crt" -o /dev/null "https://$ADDR:$port/v2/" && break
        sleep 0.1
    done
    mkdir -p "/etc/docker/certs.d/$ADDR:$port" "$WORK/certs/$ADDR:$port"
    CERTS_D+=("/etc/docker/certs.d/$ADDR:$port")
    cp "$TLS/ca.crt" "/etc/docker/certs.d/$ADDR:$port/ca.crt"
    cp "$TLS/ca.crt" "$WORK/certs/$ADDR:$port/ca.crt"
    printf -v "$4" '%s' "$ADDR:$port"
}
count() { cat "$WORK/$1.count"; }
lines() { sleep 0.5; wc -l <"$WORK/$1/log"; }
# requests LOG FROM TO: the requests in those lines of an access log.
requests_in() { awk -v a="$2" -v b="$3" 'NR > a && NR <= b && / - - \[/' "$1" | wc -l; }
timed() {
    local t0
    t0=$(now)
    "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; echo "failed: $*" >&2; exit 1; }
    printf '%.2f' "$(elapsed "$t0" "$(now)")"
}

ROWS=()
for rtt in "${RTTS[@]}"; do
    echo "RTT $rtt ms..." >&2
    start_registry "dst$rtt" DST
    front "src$rtt" "$SRC" "$rtt" SRC_FRONT
    front "dst$rtt" "$DST" "$rtt" DST_FRONT
    dir=$WORK/pb$rtt
    mkdir -p "$dir"
    {
        echo '#!/bin/sh'
        for i in $(seq 1 "$N"); do echo "echo $SRC_FRONT/bench/img$i:1"; done
    } >"$dir/list.sh"
    chmod +x "$dir/list.sh"
    printf "registries:\n  - hostname: '%s'\n    repository: pb\n    syncerScript: list.sh\n    parallel: %s\n    engine: native\n" \
        "$DST_FRONT" "$PARALLEL" >"$dir/config.yaml"
    {
        echo "$SRC_FRONT:"
        echo "  cert-dir: $WORK/certs/$SRC_FRONT"
        echo "  images:"
        for i in $(seq 1 "$N"); do echo "    bench/img$i: [\"1\"]"; done
    } >"$dir/skopeo.yaml"
    pb() { "$BIN" -q --config "$dir/config.yaml" --state-dir "$dir/state" load --all; }
    sk() {
        skopeo sync --src yaml --dest docker --dest-cert-dir "$WORK/certs/$DST_FRONT" "$dir/skopeo.yaml" "$DST_FRONT/skopeo"
    }
    marks_c=(); marks_s=(); marks_d=()
    # mark: the connections and access-log lines so far.
    mark() {
        marks_c+=($(($(count "src$rtt") + $(count "dst$rtt"))))
        marks_s+=("$(lines src)")
        marks_d+=("$(lines "dst$rtt")")
    }
    mark; pb_fresh=$(timed pb)
    mark; pb_noop=$(timed pb)
    mark; sk_fresh=$(timed sk)
    mark; sk_noop=$(timed sk)
    mark
    connects() { echo $((marks_c[$2] - marks_c[$1])); }
    # per_image FROM TO: the requests at both registries between two marks, per image.
    per_image() {
        local n=$(($(requests_in "$WORK/src/log" "${marks_s[$1]}" "${marks_s[$2]}") + $(requests_in "$WORK/dst$rtt/log" "${marks_d[$1]}" "${marks_d[$2]}")))
        echo "scale=1; $n / $N" | bc | sed 's/^\./0./'
    }
    ROWS+=("| $rtt ms | $pb_fresh s | $sk_fresh s | $(ratio "$pb_fresh" "$sk_fresh") | $pb_noop s | $sk_noop s | $(ratio "$pb_noop" "$sk_noop") | $(connects 0 1), $(connects 1 2), $(connects 2 3) | $(per_image 0 1), $(per_image 2 3) | $(per_image 1 2), $(per_image 3 4) |")
done

echo
echo "$N images of three blobs, parallel $PARALLEL, HTTPS with a private CA, $BIN"
echo
echo "| RTT | pb fresh | skopeo fresh | pb / skopeo | pb no-op | skopeo no-op | pb / skopeo | connects, both registries: pb fresh, pb no-op, skopeo fresh | requests per image, fresh: pb, skopeo | requests per image, no-op: pb, skopeo |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
