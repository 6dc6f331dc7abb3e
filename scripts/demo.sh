#!/usr/bin/env bash
# picture-book at work, on a private environment on loopback: a source
# registry and two targets (docker-registry), a few small images written
# here offline (a three-platform index and a single-platform image, pushed
# with skopeo), then `picture-book load`, a second load that finds nothing
# to do, and `picture-book sync` for a few seconds, asked over its API with
# curl. It prints what arrived and removes everything it started, also on
# Ctrl-C. `make demo` runs it; PICTURE_BOOK names the binary.
set -euo pipefail

PB=${PICTURE_BOOK:-target/debug/picture-book}
[ -x "$PB" ] || { echo "demo: no picture-book at $PB (run make demo)" >&2; exit 2; }
PB=$(cd "$(dirname "$PB")" && pwd)/$(basename "$PB")
for tool in docker-registry skopeo curl tar gzip sha256sum; do
    command -v "$tool" >/dev/null || { echo "demo: missing $tool (scripts/deps.sh demo)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/picture-book-demo.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted; cleaning up" >&2; exit 130' INT TERM

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# A port below Linux's ephemeral range (32768 and up), so that no outgoing
# connection's own port (many linger in TIME-WAIT on a busy machine) takes
# it between this probe and the bind.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# --- registries ---------------------------------------------------------
# registry NAME: starts one (not in a subshell, so that its pid is kept for
# the cleanup) and sets HOST to its 127.0.0.1:PORT.
registry() {
    local name=$1 port
    port=$(free_port)
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/$name/data
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$WORK/$name/config.yml" >"$WORK/$name/log" 2>&1 &
    PIDS+=($!)
    HOST=127.0.0.1:$port
    for _ in $(seq 1 100); do
        curl -fs "http://$HOST/v2/" >/dev/null && return
        sleep 0.1
    done
    echo "demo: registry $name did not start" >&2
    exit 1
}

say "starting a source registry and two targets on loopback"
registry source && SRC=$HOST
registry mirror && MIRROR=$HOST
registry edge && EDGE=$HOST
echo "source $SRC, targets $MIRROR (every platform) and $EDGE (linux/arm64 only)"

# --- images, written offline as OCI layouts -------------------------------
# blob FILE MEDIA_TYPE: stores FILE in the layout, prints its descriptor.
blob() {
    local digest size
    digest=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$LAYOUT/blobs/sha256/$digest"
    printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$digest" "$size"
}
# image ARCH [VARIANT]: an image of one small layer; prints its manifest's descriptor.
image() {
    local arch=$1 variant=${2:-} dir="$WORK/files-$1${2:-}" tarball diff config layer platform
    mkdir -p "$dir"
    echo "hello from linux/$arch${variant:+/$variant}, $(date +%N)" >"$dir/hello.txt"
    tarball="$WORK/layer.tar"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$tarball" -C "$dir" .
    diff=$(sha256sum "$tarball" | cut -d' ' -f1)
    gzip -n "$tarball"
    layer=$(blob "$tarball.gz" application/vnd.oci.image.layer.v1.tar+gzip)
    platform="\"architecture\":\"$arch\",\"os\":\"linux\"${variant:+,\"variant\":\"$variant\"}"
    printf '{%s,"config":{"Cmd":["/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$platform" "$diff" >"$WORK/config.json"
    config=$(blob "$WORK/config.json" application/vnd.oci.image.config.v1+json)
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
        "$config" "$layer" >"$WORK/manifest.json"
    blob "$WORK/manifest.json" application/vnd.oci.image.manifest.v1+json | sed "s/}\$/,\"platform\":{$platform}}/"
}
# layout NAME TAG TOP: writes the layout's index.json naming TOP as TAG.
layout() {
    printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
    echo "$3" | sed "s/}\$/,\"annotations\":{\"org.opencontainers.image.ref.name\":\"$2\"}}/" |
        sed 's/,"platform":{[^}]*}//' | sed 's/^/{"schemaVersion":2,"manifests":[/; s/$/]}/' >"$LAYOUT/index.json"
}
push() {
    skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false \
        "oci:$LAYOUT:$2" "docker://$SRC/$1:$2" >/dev/null
}

say "writing images offline and pushing them to the source with skopeo"
LAYOUT=$WORK/hello && mkdir -p "$LAYOUT/blobs/sha256"
children="$(image amd64),$(image arm64 v8),$(image arm v7)"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "$children" >"$WORK/index.json"
INDEX=$(blob "$WORK/index.json" application/vnd.oci.image.index.v1+json)
layout hello 1.0 "$INDEX"
push demo/hello 1.0
LAYOUT=$WORK/tool && mkdir -p "$LAYOUT/blobs/sha256"
layout tool 2.1 "$(image amd64)"
push demo/tool 2.1
INDEX_DIGEST=$(echo "$INDEX" | grep -o 'sha256:[0-9a-f]*')
echo "$SRC/demo/hello:1.0  a three-platform index ($INDEX_DIGEST)"
echo "$SRC/demo/tool:2.1   one platform"

# --- picture-book -------------------------------------------------------
cat >"$WORK/list.sh" <<EOF
#!/bin/sh
echo $SRC/demo/hello:1.0
echo $SRC/demo/tool:2.1
echo $SRC/demo/hello@$INDEX_DIGEST
EOF
chmod +x "$WORK/list.sh"
API_PORT=$(free_port)
cat >"$WORK/config.yaml" <<EOF
registries:
  - hostname: '$MIRROR'
    repository: mirror
    engine: native
    syncPeriod: '*/3 * * * * *'
    syncerScript: list.sh
  - hostname: '$EDGE'
    repository: edge
    engine: native
    platforms: [linux/arm64]
    syncerScript: list.sh
api:
  enabled: true
  port: $API_PORT
EOF
pb() { "$PB" --config "$WORK/config.yaml" --state-dir "$WORK/state" "$@"; }

say "picture-book check"
pb check
say "picture-book load --all"
pb load --all
say "picture-book load --all, again: nothing to do"
pb load --all

say "picture-book sync, for a few seconds"
"$PB" -q --config "$WORK/config.yaml" --state-dir "$WORK/state" sync &
SYNC=$!
PIDS+=("$SYNC")
API=http://127.0.0.1:$API_PORT
for _ in $(seq 1 50); do curl -fs "$API/healthz" >/dev/null && break; sleep 0.1; done
echo "\$ curl $API/healthz"
curl -fs "$API/healthz"; echo
sleep 4
echo "\$ curl -X POST '$API/ops?sync=$EDGE&action=run'"
curl -fs -X POST "$API/ops?sync=$EDGE&action=run"; echo
sleep 2
echo "\$ curl '$API/ops?sync=$MIRROR&action=details'   (the status, shortened)"
curl -fs "$API/ops?sync=$MIRROR&action=details" |
    grep -o '"\(engine\|numberOfSyncs\|outcome\|mirrored\|upToDate\|failed\)":[^,}]*' | tr '\n' ' '
echo
echo "\$ curl $API/metrics | grep runs_total"
curl -fs "$API/metrics" | grep '^picture_book_runs_total' | grep -v ' 0$'
kill -TERM "$SYNC"
wait "$SYNC" || true

# --- what arrived -------------------------------------------------------
digest_of() {
    curl -fsI -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
        "http://$1/v2/$2/manifests/$3" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'
}
what_of() {
    local body
    body=$(curl -fs -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
        "http://$1/v2/$2/manifests/$3")
    case $body in
        *'"manifests"'*) echo "an index of $(echo "$body" | grep -o '"architecture": *"[a-z0-9]*"' | cut -d'"' -f4 | tr '\n' ' ')" ;;
        *) echo "one image" ;;
    esac
}
say "what arrived"
ARRIVED=0
for target in "$MIRROR mirror" "$EDGE edge"; do
    set -- $target
    for ref in "demo/hello 1.0" "demo/tool 2.1" "demo/hello pinned-sha256-${INDEX_DIGEST#sha256:}"; do
        set -- "$1" "$2" $ref
        src_tag=$4
        [ "${4#pinned-}" != "$4" ] && src_tag=$INDEX_DIGEST
        want=$(digest_of "$SRC" "$3" "$src_tag")
        got=$(digest_of "$1" "$2/$3" "$4")
        if [ -z "$got" ]; then
            echo "MISSING $1/$2/$3:$4"
            continue
        fi
        ARRIVED=$((ARRIVED + 1))
        if [ "$got" = "$want" ]; then
            how="identical digest"
        elif [ -n "$(digest_of "$SRC" "$3" "$got")" ]; then
            how="the source's manifest for that platform (platforms filter)"
        else
            how="new index ${got:0:19}… (platforms filter)"
        fi
        printf '%-58s %s; %s\n' "$1/$2/$3:${4:0:24}" "$how" "$(what_of "$1" "$2/$3" "$4")"
    done
done
echo
echo "demo: $ARRIVED of 6 images arrived; everything started here is stopped and removed on exit"
[ "$ARRIVED" = 6 ]
