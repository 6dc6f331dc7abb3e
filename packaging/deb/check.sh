#!/bin/sh
# Installs the built .deb on this machine and checks what an operator gets,
# then removes it and checks what stays. Run as root after build.sh:
#   packaging/deb/check.sh target/deb/picture-book_*.deb
set -eu
deb=$1
version=$(dpkg-deb --field "$deb" Version)
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "ok: $*"; }

lintian --fail-on error,warning "$deb" || fail "lintian reports errors or warnings"
step "lintian: no errors or warnings"

dpkg -i "$deb" >/dev/null
[ "$(command -v picture-book)" = /usr/bin/picture-book ] || fail "picture-book is not /usr/bin/picture-book"
[ "$(/usr/bin/picture-book --version)" = "picture-book $version" ] || fail "version is not $version"
step "/usr/bin/picture-book --version: picture-book $version"
man -w picture-book >/dev/null || fail "man picture-book not found"
man -w picture-book.yaml >/dev/null || fail "man picture-book.yaml not found"
step "man pages: $(man -w picture-book) $(man -w picture-book.yaml)"
dpkg-query -W -f='${Conffiles}\n' picture-book | grep -q ' /etc/picture-book/config.yaml ' ||
    fail "/etc/picture-book/config.yaml is not a conffile"
[ -f /etc/picture-book/config.yaml ] || fail "no /etc/picture-book/config.yaml"
step "conffile /etc/picture-book/config.yaml ($(stat -c '%a %U:%G' /etc/picture-book/config.yaml))"
getent passwd picture-book >/dev/null || fail "no user picture-book"
id -nG picture-book | grep -qw docker || fail "picture-book is not in group docker"
step "user: $(id picture-book)"
unit=/lib/systemd/system/picture-book.service
[ -f "$unit" ] || fail "no $unit"
systemd-analyze verify "$unit" || fail "systemd-analyze verify rejects $unit"
step "systemd-analyze verify $unit"
systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -n1
/usr/bin/picture-book --config /etc/picture-book/config.yaml check >/dev/null ||
    fail "the sample configuration does not validate"
step "the installed sample configuration validates"

# No systemd runs here, so start the unit's command as the unit's user, with
# the unit's state directory, and check that it serves and stops cleanly.
state=$(mktemp -d)
chown picture-book "$state"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
setpriv --reuid=picture-book --regid=picture-book --init-groups --inh-caps=-all \
    env STATE_DIRECTORY="$state" HOME=/var/lib/picture-book $exec_start >"$state/log" 2>&1 &
pid=$!
up=""
for _ in $(seq 1 50); do
    if curl -sf http://127.0.0.1:8001/healthz >/dev/null; then up=yes; break; fi
    sleep 0.2
done
kill -TERM "$pid" 2>/dev/null || true
code=0
wait "$pid" || code=$?
[ -n "$up" ] || { cat "$state/log" >&2; fail "the daemon did not answer /healthz"; }
[ "$code" = 0 ] || { cat "$state/log" >&2; fail "the daemon exited with $code on SIGTERM"; }
rm -rf "$state"
step "the unit's command runs as picture-book, answers /healthz, exits 0 on SIGTERM"

dpkg -r picture-book >/dev/null
[ ! -e /usr/bin/picture-book ] || fail "the binary is still there after removal"
[ -f /etc/picture-book/config.yaml ] || fail "the configuration was removed with the package"
step "removed: binary gone, /etc/picture-book/config.yaml kept"
dpkg -P picture-book >/dev/null
[ ! -e /etc/picture-book/config.yaml ] || fail "purge left the configuration"
step "purged: configuration gone"
echo "deb package $(basename "$deb"): $(stat -c %s "$deb") bytes"
