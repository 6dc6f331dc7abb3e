# shellcheck shell=bash
# Shared by bench/run.sh, big.sh, gap.sh, soak.sh, idle.sh, connects.sh and
# latency.sh
# (sourced, not run): the setup of a run,
# a private docker daemon and distribution registries on loopback, and
# counts of the requests in the registries' access logs. Everything lives
# under $WORK; every process started is appended to PIDS for the caller's
# cleanup. REGISTRY_ACCESS_LOG=true keeps the registries' access logs.

# bench_init NAME TOOL...: checks that this runs as root and has every
# TOOL; makes the work directory $WORK (/tmp/pb-NAME.XXXXXX), removed on exit
# after every process in PIDS is stopped; sets $BIN to $PB, else to a
# release build of the checkout $HERE.
bench_init() {
    local name=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
    done
    [ "$(id -u)" = 0 ] || { echo "run as root (dockerd and the registries need it)" >&2; exit 2; }
    WORK=$(mktemp -d "/tmp/pb-$name.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    BIN=${PB:-}
    if [ -z "$BIN" ]; then
        (cd "$HERE" && cargo build --release -q)
        BIN=$HERE/target/release/picture-book
    fi
    [ -x "$BIN" ] || { echo "not an executable: $BIN" >&2; exit 2; }
}

bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 2
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a docker daemon (vfs, its own data-root, exec-root and socket) and
# points this shell's docker CLI at it.
start_dockerd() {
    local d=$WORK/d
    mkdir -p "$d"
    dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
        --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" \
        -H "unix://$d/docker.sock" >"$d/log" 2>&1 &
    PIDS+=($!)
    export DOCKER_HOST=unix://$d/docker.sock DOCKER_BUILDKIT=0 DOCKER_CLI_HINTS=false
    for _ in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.3; done
    docker version >/dev/null 2>&1 || { echo "dockerd did not start; see $d/log" >&2; exit 2; }
}

# build_images N REGISTRY: builds N images of two random 1 MiB layers
# (bench/imgI:1) with the docker daemon, pushes them to REGISTRY and removes
# them from the daemon.
build_images() {
    local i ctx
    echo "building $1 images of two random 1 MiB layers..." >&2
    for i in $(seq 1 "$1"); do
        ctx=$WORK/ctx/$i
        mkdir -p "$ctx"
        head -c 1048576 /dev/urandom >"$ctx/a"
        head -c 1048576 /dev/urandom >"$ctx/b"
        printf 'FROM scratch\nCOPY a /a\nCOPY b /b\n' >"$ctx/Dockerfile"
        docker build -q -t "$2/bench/img$i:1" "$ctx" >/dev/null
        docker push -q "$2/bench/img$i:1" >/dev/null
        docker rmi -f "$2/bench/img$i:1" >/dev/null
    done
}

# start_registry NAME VAR [USER PASS]: starts a registry (with htpasswd
# authentication when USER and PASS are given; over HTTPS with
# $REGISTRY_TLS_DIR/server.crt and server.key when that is set) and sets VAR
# to its host:port. Call it outside $(...), so that its pid reaches PIDS.
start_registry() {
    local dir=$WORK/$1 port
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: $([ "${REGISTRY_ACCESS_LOG:-false}" = true ] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
CFG
    local scheme=http
    if [ -n "${REGISTRY_TLS_DIR:-}" ]; then
        scheme=https
        printf '  tls:\n    certificate: %s\n    key: %s\n' \
            "$REGISTRY_TLS_DIR/server.crt" "$REGISTRY_TLS_DIR/server.key" >>"$dir/config.yml"
    fi
    if [ $# -ge 4 ]; then
        htpasswd -Bbn "$3" "$4" >"$dir/htpasswd" 2>/dev/null
        printf 'auth:\n  htpasswd:\n    realm: bench\n    path: %s\n' "$dir/htpasswd" >>"$dir/config.yml"
    fi
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -sk -o /dev/null "$scheme://127.0.0.1:$port/v2/" && break
        sleep 0.1
    done
    printf -v "$2" '%s' "127.0.0.1:$port"
}

# requests LOG FROM TO [VERSION]: the access-log lines FROM+1 to TO of the
# registry log LOG, counted by method, kind of path (manifest, upload for
# /blobs/uploads/, blob, other) and client: "native" for picture-book's
# native user agent (picture-book/VERSION native: its blob streams), "pb"
# for its plain one (picture-book/VERSION: manifests, checks, HEAD and POST
# of blobs), "other" for anything else (docker, skopeo). One line each:
# METHOD KIND CLIENT COUNT.
requests() {
    awk -v a="$2" -v b="$3" 'NR > a && NR <= b && /^127\.0\.0\.1 - /' "$1" |
        awk -F'"' -v v="${4:-}" '
            { split($2, r, " ")
              kind = (r[2] ~ /\/manifests\//) ? "manifest" : (r[2] ~ /\/blobs\/uploads\//) ? "upload" : (r[2] ~ /\/blobs\//) ? "blob" : "other"
              client = ($6 == "picture-book/" v " native") ? "native" : ($6 == "picture-book/" v) ? "pb" : "other"
              n[r[1] " " kind " " client]++ }
            END { for (k in n) printf "%s %d\n", k, n[k] }' | sort
}

# tally REQUESTS METHOD KIND [CLIENT]: how many of REQUESTS (as requests
# prints them) had that method and kind, from CLIENT or from any client.
tally() {
    echo "$1" | awk -v m="$2" -v k="$3" -v c="${4:-}" \
        '$1 == m && $2 == k && (c == "" || $3 == c) { s += $4 } END { print s + 0 }'
}

# blob_gets LOG FROM TO: for the GETs of blobs in the access-log lines FROM+1
# to TO of LOG, "DISTINCT_DIGESTS MOST_GETS_OF_ONE_DIGEST".
blob_gets() {
    awk -v a="$2" -v b="$3" 'NR > a && NR <= b && /^127\.0\.0\.1 - /' "$1" |
        awk -F'"' '{ split($2, r, " ") }
                   r[1] == "GET" && r[2] ~ /\/blobs\/sha256:/ { sub(/.*\/blobs\//, "", r[2]); sub(/\?.*/, "", r[2]); n[r[2]]++ }
                   END { d = 0; m = 0; for (k in n) { d++; if (n[k] > m) m = n[k] } print d, m }'
}

# per BLOBS COUNT: COUNT / BLOBS with two decimals.
per() { awk -v n="$2" -v d="$1" 'BEGIN { if (d > 0) printf "%.2f", n / d; else print "-" }'; }

# statuses LOG FROM TO: the responses in the access-log lines FROM+1 to TO
# of LOG, by method and status, on one line: "HEAD 404: 90, PUT 201: 90".
statuses() {
    awk -v a="$2" -v b="$3" 'NR > a && NR <= b && /^127\.0\.0\.1 - /' "$1" |
        awk -F'"' '{ split($2, r, " "); split($3, s, " "); n[r[1] " " s[1]]++ }
                   END { for (k in n) printf "%s: %d\n", k, n[k] }' | sort | paste -sd, - | sed 's/,/, /g'
}
