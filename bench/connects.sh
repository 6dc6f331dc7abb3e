#!/usr/bin/env bash
# What one native run costs in connections, threads and requests, on
# loopback: a source and a target registry started here, N images of
# three blobs each (a layer all images share, a layer and a config of
# their own) pushed straight to the source over the registry API (no
# docker needed), then `picture-book load` with the native engine, fresh
# and again (a no-op), each under `strace -f -e trace=connect,clone,clone3`.
# Prints, per run: the connects to each registry, the threads started, and
# the requests in each registry's access log, by method.
#
# Needs root (for the registries' ports? no: for strace of a child, any user
# will do), the Debian packages docker-registry and strace, curl, python3.
# Usage: bench/connects.sh [IMAGES] [PARALLEL]   (defaults 40 and 4)
# $PB names a picture-book binary; else target/release is built.
set -euo pipefail

N=${1:-40}
PARALLEL=${2:-4}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init connects docker-registry strace curl python3

export REGISTRY_ACCESS_LOG=true
start_registry src SRC
start_registry dst DST

echo "pushing $N images of three blobs to the source..." >&2
python3 - "$SRC" "$N" <<'PY'
import hashlib, json, os, sys, urllib.request
src, n = sys.argv[1], int(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def call(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return opener.open(req)
def blob(repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = call("POST", f"http://{src}/v2/{repo}/blobs/uploads/").headers["Location"]
    if not loc.startswith("http"):
        loc = f"http://{src}{loc}"
    sep = "&" if "?" in loc else "?"
    call("PUT", f"{loc}{sep}digest={digest}", data,
         {"Content-Type": "application/octet-stream"})
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)}
shared = os.urandom(256 << 10)
for i in range(1, n + 1):
    repo = f"bench/img{i}"
    layers = [blob(repo, shared), blob(repo, os.urandom(64 << 10))]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
        "diff_ids": [l["digest"] for l in layers]}, "n": i}).encode()
    cfg = blob(repo, config)
    cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg, "layers": layers}).encode()
    call("PUT", f"http://{src}/v2/{repo}/manifests/1", manifest,
         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
PY

mkdir -p "$WORK/pb"
{
    echo '#!/bin/sh'
    for i in $(seq 1 "$N"); do echo "echo $SRC/bench/img$i:1"; done
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

echo "$N images, parallel $PARALLEL, $BIN"
run fresh
run no-op
# $OUT, when set, keeps the access logs and the traces.
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK/src/log" "$OUT/src.log"; cp "$WORK/dst/log" "$OUT/dst.log"; cp "$WORK"/*.trace "$OUT/"
fi
