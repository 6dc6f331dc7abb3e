#!/bin/sh
# Builds a Debian package of picture-book from a release build:
#   packaging/deb/build.sh [OUTDIR]     (default target/deb)
# The layout is what `make install` puts under /usr, adjusted to Debian's
# conventions (compressed man pages and changelogs, a copyright file,
# units in /lib/systemd/system, zsh completions in vendor-completions).
set -eu
cd "$(dirname "$0")/../.."
here=$(pwd)
out=${1:-target/deb}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

make -s install DESTDIR="$root" PREFIX=/usr UNITDIR=/lib/systemd/system \
    SYSUSERSDIR=/usr/lib/sysusers.d ZSHCOMPDIR=/usr/share/zsh/vendor-completions

# Installed 0644 as Debian expects; postinst makes a fresh one 0640 root:picture-book.
chmod 0644 "$root/etc/picture-book/config.yaml"
install -Dm644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/picture-book"
doc=$root/usr/share/doc/picture-book
gzip -9n "$root/usr/share/man/man1/picture-book.1" "$root/usr/share/man/man5/picture-book.yaml.5"
mv "$doc/CHANGELOG.md" "$doc/changelog"
gzip -9n "$doc/changelog"
rm "$doc/LICENSE"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: picture-book
Source: https://github.com/picture-book/picture-book

Files: *
Copyright: 2023-2026 The picture-book developers
License: Apache-2.0

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License");
 you may not use this file except in compliance with the License.
 You may obtain a copy of the License at
 .
 http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS,
 WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 See the License for the specific language governing permissions and
 limitations under the License.
 .
 On Debian systems, the full text of the Apache License version 2.0 can be
 found in the file '/usr/share/common-licenses/Apache-2.0'.
COPYRIGHT
{
    printf 'picture-book (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Package built from the upstream release; see changelog.gz.\n\n'
    printf ' -- picture-book developers <packaging@picture-book.invalid>  %s\n' "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$doc/changelog.Debian.gz"

# Shared-library dependencies of the binary, as dpkg-shlibdeps computes them.
mkdir -p "$work/shlibs/debian"
printf 'Source: picture-book\n\nPackage: picture-book\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/picture-book" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: picture-book
Version: $version
Architecture: $arch
Maintainer: picture-book developers <packaging@picture-book.invalid>
Installed-Size: $size
Depends: ${shlibs:-libc6}
Recommends: docker.io | docker-ce | podman
Section: admin
Priority: optional
Homepage: https://github.com/picture-book/picture-book
Description: mirror container images into container registries
 picture-book keeps private container registries (air-gapped sites, edge
 clusters, a company mirror of Docker Hub) filled with the images a script
 lists: for each target registry it runs a syncer script and mirrors every
 image it names, skipping those that are already up to date: with the docker
 or podman CLI (pull, retag, push), or with its own registry-to-registry
 copy, which needs no container tool, keeps multi-platform images whole and
 digests unchanged.
 .
 It runs once from shell scripts (picture-book load) or as a daemon with a
 cron schedule per registry and an HTTP API to pause, resume and run the
 synchronizers (picture-book sync, started by systemd).
CONTROL
printf '/etc/picture-book/config.yaml\n/etc/picture-book/test.sh\n' >"$root/DEBIAN/conffiles"
install -m755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/picture-book_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
