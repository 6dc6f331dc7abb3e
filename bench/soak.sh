#!/usr/bin/env bash
# Soak test of the daemon: `picture-book sync` with three target registries,
# each on a schedule of a few seconds, for SECONDS (default 600), while the
# API is polled as fast as it answers and the source keeps changing. It
# looks for what a long-running daemon must not do: grow in memory or open
# files, leave zombies, docker CLI children or private docker configuration
# directories behind, or stop answering its API.
#
# Schedules: syncPeriod accepts six fields with seconds first (src/schedule.rs
# hands them to the cron crate as they are), so each registry runs every 4,
# 5 or 6 seconds from its own schedule. On top of that a loop asks each one
# to run over the API (`/ops?action=run`) every few seconds; 409 (a run is
# in progress) is the expected answer then and is not a failure.
#
# Everything runs on loopback, started here: a docker daemon (vfs, its own
# data-root, exec-root and socket), a source registry that requires a login
# (htpasswd), and three targets: t1 requires a login too, t2 and t3 are
# anonymous. Every registry has pull credentials, t1 push credentials too, so
# every pull (and t1's push) goes through a private `docker --config`
# directory (src/auth.rs, PrivateConfigDir); the daemon's TMPDIR and
# XDG_RUNTIME_DIR are a folder of this run, so those are counted without
# mistaking another process's.
#
# Workload: the syncer script lists three images that never change, one tag
# that is rebuilt with new content, and "rolling" tags that appear one by
# one and are later rebuilt; every CHANGE_EVERY seconds (default 20) one of
# these changes in the source, so some runs move images and most are no-ops.
# Every 4th run of each registry the script also lists an image that does not
# exist, so those runs fail. t1 and t2 delete local images after the push,
# t3 keeps them; t3 moves one image at a time, the others two.
#
# Measured at a quiet moment after the warm-up (WARMUP, default 20 s), at half
# time and at the end: the daemon is paused over the API, the script waits
# until no run is in progress and no request is open, then reads VmRSS and
# Threads from /proc/PID/status and counts /proc/PID/fd, and resumes it.
# Sampled every 2 s throughout: the daemon's children and zombies among them.
# A zombie counts when the same process is still a zombie at the next sample
# (a child caught between its exit and its reaping is not a leak); the raw
# sightings are reported too.
#
# Fails (exit 1) when, from the first measurement to the last:
#   - the open file descriptors grew at all;
#   - VmRSS grew by more than 1 MiB or 10%, whichever is larger. Some growth
#     is not a leak: glibc gives threads their own malloc arenas and keeps
#     freed memory, and tiny_http's worker pool grows and shrinks. But a leak
#     of 3 KiB per run (about 400 runs in ten minutes) or of 20 bytes per API
#     request (tens of thousands) passes 1 MiB;
# or when a zombie was seen, an API request failed (no answer, or not 2xx
# other than the 409 above), a registry completed no run, no run mirrored
# anything (the workload did not happen), docker CLI children or private
# configuration directories were left after the daemon stopped, or the
# daemon did not exit 0 on SIGTERM. Exit 2: a setup problem.
#
# The daemon runs with the environment the packaged systemd unit gives it:
# its GLIBC_TUNABLES line (glibc's per-thread cache off; see
# src/daemon/memory.rs) is read from packaging/systemd/picture-book.service,
# or taken from $TUNABLES when that is set (`TUNABLES= bench/soak.sh`
# measures the daemon with glibc's defaults).
#
# Not part of `cargo test`. Needs root and the Debian packages docker.io,
# docker-registry and apache2-utils (htpasswd), plus curl and python3.
# Usage: bench/soak.sh [SECONDS] [BINARY]      (default 600; BINARY or $PB
#        names a picture-book binary, else target/release is built)
set -euo pipefail

DURATION=${1:-600}
PB=${2:-${PB:-}}
UNIT_TUNABLES=$(sed -n 's/^Environment=GLIBC_TUNABLES=//p' \
    "$(dirname "$0")/../packaging/systemd/picture-book.service")
TUNABLES=${TUNABLES-$UNIT_TUNABLES}
WARMUP=${WARMUP:-20}
CHANGE_EVERY=${CHANGE_EVERY:-20}
POLLERS=${POLLERS:-2}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/pb-soak.XXXXXX)
PIDS=()      # dockerd and registries, stopped last
LOOPS=()     # the load and measurement loops
DAEMON=

stop_pids() { # PID...: TERM, wait up to 10 s, then KILL
    local pid alive
    for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
}
cleanup() {
    local status=$?
    touch "$WORK/stop" 2>/dev/null || true
    if [ -n "${SOAK_KEEP:-}" ]; then
        mkdir -p "$SOAK_KEEP"
        cp "$WORK/pb/log" "$WORK/timeline" "$WORK/api-errors.log" "$WORK/zombies.log" \
            "$SOAK_KEEP/" 2>/dev/null || true
    fi
    [ "${#LOOPS[@]}" -gt 0 ] && stop_pids "${LOOPS[@]}"
    [ -n "$DAEMON" ] && stop_pids "$DAEMON"
    [ "${#PIDS[@]}" -gt 0 ] && stop_pids "${PIDS[@]}"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "soak: $*" >&2; exit 2; }
say() { echo "soak: $(date +%T) $*" >&2; }
case $DURATION in '' | *[!0-9]*) die "SECONDS must be a whole number, not '$DURATION'" ;; esac
[ "$DURATION" -ge $((WARMUP + 20)) ] || die "SECONDS must be at least $((WARMUP + 20))"
for tool in dockerd docker docker-registry htpasswd curl python3; do
    command -v "$tool" >/dev/null || die "missing: $tool"
done
[ "$(id -u)" = 0 ] || die "run as root (dockerd needs it)"
if [ -z "$PB" ]; then
    (cd "$HERE" && cargo build --release -q) || die "cargo build failed"
    PB=$HERE/target/release/picture-book
fi
[ -x "$PB" ] || die "not an executable: $PB"

b64() { printf '%s' "$1" | base64 -w0; }

# The docker daemon, and registries; this script's own docker CLI logs in
# under $WORK/cli.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/cli"
export DOCKER_CONFIG=$WORK/cli
start_dockerd
PASS=$(head -c 12 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')
# Not in $(...): the registries' pids must reach PIDS for the cleanup.
start_registry src SRC soak "$PASS"
start_registry t1 T1 soak "$PASS"
start_registry t2 T2
start_registry t3 T3
# This script pushes to the source as localhost:PORT, the daemon pulls from
# 127.0.0.1:PORT: the same registry, but other names in docker's image
# store, so that removing what was pushed never removes what the daemon
# pulled.
PUSH_SRC=localhost:${SRC#*:}
printf '%s' "$PASS" | docker login -u soak --password-stdin "$PUSH_SRC" >/dev/null 2>&1 ||
    die "cannot log in to the source registry"

# Builds NAME:TAG (two random layers of 256 KiB) and pushes it to the source.
push_image() { # NAME:TAG
    local ref=$PUSH_SRC/soak/$1 ctx attempt
    ctx=$(mktemp -d "$WORK/ctx.XXXXXX")
    head -c 262144 /dev/urandom >"$ctx/a"
    head -c 262144 /dev/urandom >"$ctx/b"
    printf 'FROM scratch\nCOPY a /a\nCOPY b /b\n' >"$ctx/Dockerfile"
    for attempt in 1 2 3; do
        if docker build -q -t "$ref" "$ctx" >/dev/null 2>&1 && docker push -q "$ref" >/dev/null 2>&1; then
            docker rmi -f "$ref" >/dev/null 2>&1 || true
            rm -rf "$ctx"
            return 0
        fi
        echo "push of $ref failed (attempt $attempt)" >>"$WORK/mutator.log"
        sleep 1
    done
    rm -rf "$ctx"
    return 1
}
say "building the source images..."
for name in base1:1 base2:1 base3:1 changing:latest rolling:0; do
    push_image "$name" || die "could not build and push $name"
done

# The syncer script: the images, and every 4th run of each registry one
# that does not exist. rolling.list names the rolling tags pushed so far.
PBDIR=$WORK/pb
mkdir -p "$PBDIR/docker" "$PBDIR/tmp" "$PBDIR/state"
echo "$SRC/soak/rolling:0" >"$PBDIR/rolling.list"
cat >"$PBDIR/list.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
count=$PBDIR/count.\$1
n=\$(( \$(cat "\$count" 2>/dev/null || echo 0) + 1 ))
echo "\$n" >"\$count"
printf '%s\n' $SRC/soak/base1:1 $SRC/soak/base2:1 $SRC/soak/base3:1 $SRC/soak/changing:latest
cat $PBDIR/rolling.list
if [ \$((n % 4)) = 0 ]; then echo $SRC/soak/missing:nope; fi
EOF
chmod +x "$PBDIR/list.sh"
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')
API_PORT=$(free_port)
API=http://127.0.0.1:$API_PORT
PULL_AUTH="{\"auths\":{\"$SRC\":{\"auth\":\"$(b64 "soak:$PASS")\"}}}"
PUSH_AUTH="{\"auths\":{\"$T1\":{\"auth\":\"$(b64 "soak:$PASS")\"}}}"
cat >"$PBDIR/config.yaml" <<EOF
registries:
  - hostname: '$T1'
    repository: mirror
    pullAuthConfig: '$PULL_AUTH'
    pushAuthConfig: '$PUSH_AUTH'
    syncPeriod: '*/4 * * * * *'
    syncerScript: list.sh
    syncerScriptArgs: t1
    deleteLocalImages: true
  - hostname: '$T2'
    repository: mirror
    pullAuthConfig: '$PULL_AUTH'
    syncPeriod: '*/5 * * * * *'
    syncerScript: list.sh
    syncerScriptArgs: t2
    deleteLocalImages: true
  - hostname: '$T3'
    repository: mirror/deep
    pullAuthConfig: '$PULL_AUTH'
    syncPeriod: '*/6 * * * * *'
    syncerScript: list.sh
    syncerScriptArgs: t3
    parallel: 1
api:
  enabled: true
  port: $API_PORT
  enableAuth: true
  authToken: '$TOKEN'
EOF
HOSTS=("$T1" "$T2" "$T3")

# The daemon, with an empty docker configuration of its own (the private
# directories must carry the logins) and a mark in its environment that its
# children inherit, to find any left behind.
MARK=PB_SOAK_MARK=$WORK
say "starting picture-book sync for $DURATION s (GLIBC_TUNABLES='$TUNABLES')"
env "$MARK" GLIBC_TUNABLES="$TUNABLES" TMPDIR="$PBDIR/tmp" XDG_RUNTIME_DIR="$PBDIR/tmp" DOCKER_CONFIG="$PBDIR/docker" \
    "$PB" --config "$PBDIR/config.yaml" --state-dir "$PBDIR/state" sync >"$PBDIR/log" 2>&1 &
DAEMON=$!
STARTED=$SECONDS
for _ in $(seq 1 100); do curl -sf -o /dev/null "$API/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "$API/healthz" || die "the API did not come up; log: $(tail -5 "$PBDIR/log")"

api() { # METHOD PATH [BODY-FILE]: prints the HTTP status (000: no answer)
    curl -s -o "${3:-/dev/null}" -w '%{http_code}' --max-time 10 -X "$1" \
        -H "Authorization: Bearer $TOKEN" "$API$2" || echo 000
}
# Loops pause while $WORK/hold exists (a measurement is being taken), and
# end, writing their counts, when $WORK/stop exists.
held() { [ -e "$WORK/hold" ]; }
running() { [ ! -e "$WORK/stop" ]; }

poll() { # N: GET every read-only endpoint in turn, as fast as answered
    local urls=("/list?type=active" "/list?type=configured" "/metrics" "/healthz") host url code
    local n=0 bad=0
    for host in "${HOSTS[@]}"; do urls+=("/ops?sync=$host&action=details"); done
    while running; do
        if held; then sleep 0.1; continue; fi
        for url in "${urls[@]}"; do
            held && break
            code=$(api GET "$url")
            n=$((n + 1))
            case $code in
                2??) ;;
                *) bad=$((bad + 1)); echo "$(date +%T) GET $url -> $code" >>"$WORK/api-errors.log" ;;
            esac
        done
    done
    echo "$n $bad" >"$WORK/poll.$1"
}
trigger() { # every 3 s, ask each registry for a run
    local n=0 started=0 conflict=0 bad=0 host code
    while running; do
        sleep 3
        held && continue
        for host in "${HOSTS[@]}"; do
            code=$(api POST "/ops?sync=$host&action=run")
            n=$((n + 1))
            case $code in
                202) started=$((started + 1)) ;;
                409) conflict=$((conflict + 1)) ;;
                *) bad=$((bad + 1)); echo "$(date +%T) POST run $host -> $code" >>"$WORK/api-errors.log" ;;
            esac
        done
    done
    echo "$n $bad $started $conflict" >"$WORK/trigger"
}
mutate() { # every CHANGE_EVERY s, change or add one image in the source
    local cycle=0 ok=0 failed=0 tag
    while running; do
        sleep "$CHANGE_EVERY"
        running || break
        cycle=$((cycle + 1))
        touch "$WORK/mutating"
        if [ $((cycle % 2)) = 1 ]; then
            tag=changing:latest
        else
            tag=rolling:$(((cycle / 2) % 5))
        fi
        if ! held && push_image "$tag"; then
            ok=$((ok + 1))
            if ! grep -qx "$SRC/soak/$tag" "$PBDIR/rolling.list" && [ "${tag%%:*}" = rolling ]; then
                { cat "$PBDIR/rolling.list"; echo "$SRC/soak/$tag"; } >"$PBDIR/rolling.new"
                mv "$PBDIR/rolling.new" "$PBDIR/rolling.list"
            fi
        elif ! held; then
            failed=$((failed + 1))
        fi
        rm -f "$WORK/mutating"
    done
    echo "$ok $failed" >"$WORK/mutator"
}
# Every 2 s: a timeline of the daemon's RSS, fds, threads and children, and
# its zombie children. A zombie seen again at the next sample persists.
sample() {
    local f line rest state ppid pid zombies prev=" " persist=0 raw_max=0 persist_max=0 children child_max=0
    echo "seconds rss_kib fds threads children zombies" >"$WORK/timeline"
    while running && kill -0 "$DAEMON" 2>/dev/null; do
        zombies=() children=0
        for f in /proc/[0-9]*/stat; do
            read -r line 2>/dev/null <"$f" || continue
            rest=${line##*) }
            read -r state ppid _ <<<"$rest"
            [ "$ppid" = "$DAEMON" ] || continue
            children=$((children + 1))
            if [ "$state" = Z ]; then
                pid=${f#/proc/}; pid=${pid%/stat}
                zombies+=("$pid")
                case $prev in *" $pid "*) persist=$((persist + 1)); echo "$(date +%T) zombie $pid persists: $line" >>"$WORK/zombies.log" ;; esac
            fi
        done
        [ "${#zombies[@]}" -gt "$raw_max" ] && raw_max=${#zombies[@]}
        [ "$persist" -gt "$persist_max" ] && persist_max=$persist
        [ "$children" -gt "$child_max" ] && child_max=$children
        prev=" ${zombies[*]} " persist=0
        echo "$((SECONDS - STARTED)) $(proc_stat VmRSS) $(fd_count) $(proc_stat Threads) $children ${#zombies[@]}" >>"$WORK/timeline"
        sleep 2
    done
    echo "$raw_max $persist_max $child_max" >"$WORK/zombies"
}
proc_stat() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$DAEMON/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
fd_kinds() { # sockets, pipes, other
    find "/proc/$DAEMON/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
        awk '/^socket:/ { s++; next } /^pipe:/ { p++; next } { o++ } END { printf "%d sockets, %d pipes, %d other", s, p, o }'
}
private_dirs() { find "$PBDIR/tmp" -mindepth 1 -maxdepth 1 -name 'picture-book-*' | wc -l; }

for i in $(seq 1 "$POLLERS"); do
    poll "$i" &
    LOOPS+=($!)
done
trigger &
LOOPS+=($!)
mutate &
LOOPS+=($!)
sample &
LOOPS+=($!)

# A measurement at a quiet moment: hold the loops, pause every registry,
# wait until nothing runs, read /proc, resume (unless "final"). Prints
# "RSS-KiB FDS THREADS PRIVATE-DIRS FD-KINDS...".
measure() { # LABEL [final]
    local host code busy=1 rss fds threads
    touch "$WORK/hold"
    for _ in $(seq 1 600); do [ -e "$WORK/mutating" ] || break; sleep 0.1; done
    for host in "${HOSTS[@]}"; do
        code=$(api POST "/ops?sync=$host&action=pause")
        [ "$code" = 200 ] || say "pause $host answered $code"
    done
    for _ in $(seq 1 1200); do
        busy=0
        for host in "${HOSTS[@]}"; do
            api GET "/ops?sync=$host&action=details" "$WORK/measure.json" >/dev/null
            grep -q '"running":true' "$WORK/measure.json" && busy=1
        done
        [ "$busy" = 0 ] && break
        sleep 0.1
    done
    [ "$busy" = 0 ] || say "a run was still in progress after 120 s"
    sleep 3
    rss=$(proc_stat VmRSS) fds=$(fd_count) threads=$(proc_stat Threads)
    say "$1: VmRSS $rss KiB, $fds fds ($(fd_kinds)), $threads threads"
    echo "$rss $fds $threads $(private_dirs) $(fd_kinds)"
    [ "${2:-}" = final ] && return
    for host in "${HOSTS[@]}"; do
        code=$(api POST "/ops?sync=$host&action=resume")
        [ "$code" = 200 ] || say "resume $host answered $code"
    done
    rm -f "$WORK/hold"
}
until_second() { # N: sleep until N s after the daemon started
    local left=$(($1 - (SECONDS - STARTED)))
    [ "$left" -gt 0 ] && sleep "$left"
    kill -0 "$DAEMON" 2>/dev/null || die "the daemon died; log: $(tail -5 "$PBDIR/log")"
}

until_second "$WARMUP"
read -r RSS_start FD_start THREADS_start DIRS_start KINDS_start <<<"$(measure start)"
until_second $((DURATION / 2))
read -r RSS_mid FD_mid THREADS_mid DIRS_mid _ <<<"$(measure mid)"
until_second "$DURATION"
read -r RSS_end FD_end THREADS_end DIRS_end KINDS_end <<<"$(measure end final)"

# What the daemon counted, before it stops.
for host in "${HOSTS[@]}"; do
    api GET "/ops?sync=$host&action=details" "$WORK/details.$host" >/dev/null
done
api GET /metrics "$WORK/metrics" >/dev/null
touch "$WORK/stop"
rm -f "$WORK/hold"
for pid in "${LOOPS[@]}"; do wait "$pid" || true; done
LOOPS=()

# Stop it as systemd would, and look for what it left.
T0=$SECONDS
kill -TERM "$DAEMON"
STATUS=0
wait "$DAEMON" || STATUS=$?
STOP_SECONDS=$((SECONDS - T0))
DAEMON=
sleep 1
LEFT_CHILDREN=0 LEFT_LIST=""
for f in /proc/[0-9]*/environ; do
    if grep -qzxF "$MARK" "$f" 2>/dev/null; then
        pid=${f#/proc/}; pid=${pid%/environ}
        LEFT_CHILDREN=$((LEFT_CHILDREN + 1))
        LEFT_LIST="$LEFT_LIST $pid:$(cat "/proc/$pid/comm" 2>/dev/null || echo gone)"
    fi
done
LEFT_DIRS=$(private_dirs)

# The figures.
read -r ZOMBIES_RAW ZOMBIES CHILDREN_MAX <"$WORK/zombies"
POLLED=0 POLL_BAD=0
for i in $(seq 1 "$POLLERS"); do
    read -r n bad <"$WORK/poll.$i"
    POLLED=$((POLLED + n)) POLL_BAD=$((POLL_BAD + bad))
done
read -r TRIGGERED TRIGGER_BAD TRIGGER_STARTED TRIGGER_409 <"$WORK/trigger"
read -r CHANGES CHANGES_FAILED <"$WORK/mutator"
API_REQUESTS=$((POLLED + TRIGGERED))
API_FAILED=$((POLL_BAD + TRIGGER_BAD))

metric() { # REGISTRY OUTCOME
    awk -v r="registry=\"$1\"" -v o="outcome=\"$2\"" \
        'index($0, "picture_book_runs_total{") == 1 && index($0, r) && index($0, o) { print $2; found = 1 }
         END { if (!found) print 0 }' "$WORK/metrics"
}
detail() { # REGISTRY FIELD
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"][sys.argv[2]])' \
        "$WORK/details.$1" "$2"
}
# From the log: runs that moved something, and runs that moved nothing.
log_runs() { # REGISTRY: "transfer-runs noop-runs"
    awk -v h="$1: run ended:" 'index($0, h) {
            split(substr($0, index($0, h) + length(h)), f, ",")
            if (f[2] + 0 > 0) t++; else n++
        } END { printf "%d %d\n", t, n }' "$PBDIR/log"
}

printf '\n%s s of picture-book sync (%s), 3 registries, on %s (%s cores)\n\n' \
    "$DURATION" "$("$PB" --version 2>/dev/null || echo "$PB")" "$(uname -m)" "$(nproc)"
printf '| registry | runs (numberOfSyncs) | success | failed | stopped | skipped due times | runs that mirrored | no-op runs |\n'
printf '|---|---|---|---|---|---|---|---|\n'
FAIL=()
TRANSFERS=0
for i in 0 1 2; do
    host=${HOSTS[$i]}
    syncs=$(detail "$host" numberOfSyncs)
    read -r moved noop <<<"$(log_runs "$host")"
    TRANSFERS=$((TRANSFERS + moved))
    printf '| t%d %s | %s | %s | %s | %s | %s | %s | %s |\n' $((i + 1)) "$host" "$syncs" \
        "$(metric "$host" success)" "$(metric "$host" failed)" "$(metric "$host" stopped)" \
        "$(detail "$host" skippedRuns)" "$moved" "$noop"
    [ "$syncs" -gt 0 ] || FAIL+=("t$((i + 1)) completed no run")
done

RSS_TOL=$((RSS_start / 10))
[ "$RSS_TOL" -lt 1024 ] && RSS_TOL=1024
verdict() { if "$@"; then echo ok; else echo FAIL; fi; }
printf '\n| measure | after warm-up | half time | end | limit | verdict |\n'
printf '|---|---|---|---|---|---|\n'
printf '| VmRSS (KiB) | %s | %s | %s | +%s | %s |\n' "$RSS_start" "$RSS_mid" "$RSS_end" "$RSS_TOL" \
    "$(verdict [ $((RSS_end - RSS_start)) -le "$RSS_TOL" ])"
printf '| open fds | %s | %s | %s | +0 | %s |\n' "$FD_start" "$FD_mid" "$FD_end" \
    "$(verdict [ "$FD_end" -le "$FD_start" ])"
printf '| threads | %s | %s | %s | - | - |\n' "$THREADS_start" "$THREADS_mid" "$THREADS_end"
printf '| private config dirs (paused) | %s | %s | %s | 0 | %s |\n' "$DIRS_start" "$DIRS_mid" "$DIRS_end" \
    "$(verdict [ "$DIRS_end" = 0 ])"
printf '\nfds after warm-up: %s; at the end: %s\n' "$KINDS_start" "$KINDS_end"
printf 'VmRSS sampled every 2 s: min %s KiB, max %s KiB; fds: min %s, max %s; children at once: max %s\n' \
    "$(awk 'NR > 1 { if (m == "" || $2 < m) m = $2 } END { print m }' "$WORK/timeline")" \
    "$(awk 'NR > 1 && $2 > m { m = $2 } END { print m + 0 }' "$WORK/timeline")" \
    "$(awk 'NR > 1 { if (m == "" || $3 < m) m = $3 } END { print m }' "$WORK/timeline")" \
    "$(awk 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$WORK/timeline")" "$CHILDREN_MAX"
printf 'VmRSS (KiB) at each minute: %s\n' \
    "$(awk 'NR > 1 && $1 >= next_at { printf "%s%s", sep, $2; sep = " "; next_at += 60 }' "$WORK/timeline")"

printf '\n| check | value | verdict |\n|---|---|---|\n'
printf '| zombie children, persisting (max at once) | %s | %s |\n' "$ZOMBIES" "$(verdict [ "$ZOMBIES" = 0 ])"
printf '| zombie children, any sighting (max at once) | %s | - |\n' "$ZOMBIES_RAW"
printf '| API requests (failed) | %s (%s) | %s |\n' "$API_REQUESTS" "$API_FAILED" "$(verdict [ "$API_FAILED" = 0 ])"
printf '| run requests over the API: started, 409 | %s, %s | - |\n' "$TRIGGER_STARTED" "$TRIGGER_409"
printf '| source changes pushed (failed) | %s (%s) | - |\n' "$CHANGES" "$CHANGES_FAILED"
printf '| runs that mirrored something | %s | %s |\n' "$TRANSFERS" "$(verdict [ "$TRANSFERS" -gt 0 ])"
printf '| stop on SIGTERM: exit status, seconds | %s, %s | %s |\n' "$STATUS" "$STOP_SECONDS" "$(verdict [ "$STATUS" = 0 ])"
printf '| children left after stop | %s%s | %s |\n' "$LEFT_CHILDREN" "${LEFT_LIST:+ (${LEFT_LIST# })}" \
    "$(verdict [ "$LEFT_CHILDREN" = 0 ])"
printf '| private config dirs left after stop | %s | %s |\n' "$LEFT_DIRS" "$(verdict [ "$LEFT_DIRS" = 0 ])"

# The daemon's warnings and errors, digits folded, most frequent first.
printf '\nwarnings and errors in the daemon log (numbers folded to N):\n'
grep -E '\[(WARN|ERROR)\]' "$PBDIR/log" |
    sed -E 's/^[^]]*] *//; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -20 || true
[ -s "$WORK/api-errors.log" ] && { printf '\nAPI errors (first 10):\n'; head -10 "$WORK/api-errors.log"; }
[ -s "$WORK/zombies.log" ] && { printf '\nzombies (first 10):\n'; head -10 "$WORK/zombies.log"; }

[ $((RSS_end - RSS_start)) -le "$RSS_TOL" ] || FAIL+=("VmRSS grew by $((RSS_end - RSS_start)) KiB (limit $RSS_TOL)")
[ "$FD_end" -le "$FD_start" ] || FAIL+=("open fds grew from $FD_start to $FD_end")
[ "$ZOMBIES" = 0 ] || FAIL+=("zombie children seen")
[ "$API_FAILED" = 0 ] || FAIL+=("$API_FAILED API requests failed")
[ "$TRANSFERS" -gt 0 ] || FAIL+=("no run mirrored anything")
[ "$STATUS" = 0 ] || FAIL+=("the daemon exited $STATUS on SIGTERM")
[ "$LEFT_CHILDREN" = 0 ] || FAIL+=("$LEFT_CHILDREN children left after stop")
[ "$LEFT_DIRS" = 0 ] && [ "$DIRS_end" = 0 ] || FAIL+=("private config dirs left behind")
if [ "${#FAIL[@]}" -gt 0 ]; then
    printf '\nFAIL: %s\n' "${FAIL[@]}"
    exit 1
fi
printf '\nPASS\n'
