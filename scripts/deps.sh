#!/bin/sh
# Makes sure the Debian packages a task needs are installed: as root it
# installs the missing ones (apt-get update first, then apt-get install);
# as another user it prints the one apt-get line that is needed and exits 1.
#   scripts/deps.sh test     what `make test` needs (the e2e tests start a
#                            docker daemon, registries, podman and a
#                            headless chromium)
#   scripts/deps.sh demo     what `make demo` needs
# DEPS_PACKAGES replaces the list (for the test of this script).
set -eu

case ${1:-} in
    test) packages="docker.io docker-registry apache2-utils podman skopeo openssl curl bash-completion zsh chromium chromium-driver busybox-static ca-certificates strace gdb" ;;
    demo) packages="docker-registry skopeo curl" ;;
    *) echo "usage: $0 test|demo" >&2; exit 2 ;;
esac
packages=${DEPS_PACKAGES:-$packages}

installed() {
    dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=""
for p in $packages; do
    installed "$p" || missing="$missing $p"
done
missing=${missing# }
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing packages (Debian names): $missing; install them with your distribution's tools" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing packages; install them with:" >&2
    echo "  sudo apt-get install -y $missing" >&2
    exit 1
fi
echo "installing: $missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086
apt-get install -y -q $missing >&2
