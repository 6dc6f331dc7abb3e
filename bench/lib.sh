# shellcheck shell=bash
# Shared by bench/run.sh and bench/soak.sh (sourced, not run): a private
# docker daemon and distribution registries on loopback. Everything lives
# under $WORK; every process started is appended to PIDS for the caller's
# cleanup. REGISTRY_ACCESS_LOG=true keeps the registries' access logs.

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

# start_registry NAME VAR [USER PASS]: starts a registry (with htpasswd
# authentication when USER and PASS are given) and sets VAR to its
# host:port. Call it outside $(...), so that its pid reaches PIDS.
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
    if [ $# -ge 4 ]; then
        htpasswd -Bbn "$3" "$4" >"$dir/htpasswd" 2>/dev/null
        printf 'auth:\n  htpasswd:\n    realm: bench\n    path: %s\n' "$dir/htpasswd" >>"$dir/config.yml"
    fi
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break
        sleep 0.1
    done
    printf -v "$2" '%s' "127.0.0.1:$port"
}
