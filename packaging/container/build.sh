#!/bin/sh
# Builds the container image of picture-book offline, with no registry to
# pull a base image from: `FROM scratch` and a root filesystem made here.
#   packaging/container/build.sh [TAG [BINARY]]
# TAG defaults to picture-book:VERSION, BINARY to target/release/picture-book
# (built with `cargo build --release --locked` when missing). DOCKER_HOST
# chooses the docker daemon, as for docker itself. Needs docker.io,
# ca-certificates and busybox-static.
set -eu
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
tag=${1:-picture-book:$version}
binary=${2:-target/release/picture-book}
[ -n "${2:-}" ] || [ -x "$binary" ] || cargo build --release --locked
busybox=/bin/busybox
certs=/etc/ssl/certs/ca-certificates.crt
for f in "$binary" "$busybox" "$certs"; do
    [ -e "$f" ] || { echo "build.sh: missing $f (packages: busybox-static, ca-certificates)" >&2; exit 1; }
done
! ldd "$busybox" >/dev/null 2>&1 || { echo "build.sh: $busybox is not static: install busybox-static" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/bin" "$root/bin" "$root/etc/picture-book" "$root/etc/ssl/certs" \
    "$root/var/lib/picture-book" "$root/tmp"
install -m755 "$binary" "$root/usr/bin/picture-book"
# The shared libraries the binary links and the dynamic loader, at the
# paths ldd gives (none when the binary is static).
ldd "$binary" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
install -m644 "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
# busybox-static as /bin/sh and its applets, so that syncer scripts run.
install -m755 "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\npicture-book:x:10001:10001:picture-book:/var/lib/picture-book:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\npicture-book:x:10001:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chown 10001:10001 "$root/var/lib/picture-book"
chmod 1777 "$root/tmp"
cp packaging/container/Dockerfile "$work/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$work" >/dev/null
echo "$tag"
