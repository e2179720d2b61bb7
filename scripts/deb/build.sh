#!/bin/sh
# Builds the Debian package of engarde with dpkg-deb alone (no debhelper):
#
#   scripts/deb/build.sh -bin DIR -doc DIR -version V -arch GOARCH -out DIR
#
# DIR of -bin holds engarde-client and engarde-server built for GOARCH;
# -doc is cmd/internal/gendoc's output (man/, bash/, zsh/); V is the
# version the binaries carry (scripts/version.sh), written as a Debian
# version in DEBIAN/control. Prints the path of the .deb it wrote.
#
# The tree (paths as make install with PREFIX=/usr, but the units and the
# sysusers entry in /usr/lib, which is the package's half of systemd's
# split between /usr/lib and /etc):
#   /usr/bin/engarde-client, /usr/bin/engarde-server
#   /usr/lib/systemd/system/engarde-{client,server}@.service (paths rewritten)
#   /usr/lib/sysusers.d/engarde.conf
#   /etc/engarde/engarde.yml.sample (a conffile, where make install puts it,
#     so that the README's steps are the same for both)
#   /usr/share/man/man1/engarde-{client,server}.1.gz, man5/engarde.yml.5.gz
#   /usr/share/bash-completion/completions/engarde-{client,server}
#   /usr/share/zsh/vendor-completions/_engarde-{client,server}
#   /usr/share/doc/engarde/{copyright,README.md.gz}
# Files are dated SOURCE_DATE_EPOCH (the commit's time from make), owned by
# root, and the archive built with --root-owner-group, so the same commit
# gives the same package.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

bin= doc= version= arch= out=
while [ $# -gt 0 ]; do
	case $1 in
	-bin) bin=$2 ;;
	-doc) doc=$2 ;;
	-version) version=$2 ;;
	-arch) arch=$2 ;;
	-out) out=$2 ;;
	*)
		echo "usage: $0 -bin DIR -doc DIR -version V -arch GOARCH -out DIR" >&2
		exit 2
		;;
	esac
	shift 2
done
for v in bin doc version arch out; do
	eval "[ -n \"\$$v\" ]" || {
		echo "$0: -$v is required" >&2
		exit 2
	}
done
command -v dpkg-deb >/dev/null || {
	echo "$0: dpkg-deb not found (apt-get install dpkg)" >&2
	exit 1
}

# Debian's names for Go's architectures (dpkg-architecture -L; GOARM=7 is
# armhf, the hard-float ARMv7 port).
case $arch in
amd64 | arm64 | riscv64 | s390x) darch=$arch ;;
386) darch=i386 ;;
arm) darch=armhf ;;
ppc64le) darch=ppc64el ;;
*)
	echo "$0: no Debian architecture for GOARCH=$arch" >&2
	exit 1
	;;
esac
dver=$("$top/scripts/version.sh" deb "$version")
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" \
	"$root/etc/engarde" "$root/usr/share/man/man1" "$root/usr/share/man/man5" \
	"$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
	"$root/usr/share/doc/engarde"

install -m 755 "$bin/engarde-client" "$bin/engarde-server" "$root/usr/bin/"
for u in "$top"/scripts/systemd/*.service; do
	# The same rewrite as make install's, for BINDIR=/usr/bin.
	sed -e 's|/usr/local/bin/|/usr/bin/|g' "$u" >"$root/usr/lib/systemd/system/${u##*/}"
	chmod 644 "$root/usr/lib/systemd/system/${u##*/}"
done
install -m 644 "$top/scripts/systemd/engarde.sysusers" "$root/usr/lib/sysusers.d/engarde.conf"
install -m 644 "$top/engarde.yml.sample" "$root/etc/engarde/engarde.yml.sample"
for m in "$doc"/man/*.1 "$doc"/man/*.5; do
	s=${m##*.}
	gzip -9n <"$m" >"$root/usr/share/man/man$s/${m##*/}.gz"
done
install -m 644 "$doc"/bash/* "$root/usr/share/bash-completion/completions/"
install -m 644 "$doc"/zsh/* "$root/usr/share/zsh/vendor-completions/"
gzip -9n <"$top/README.md" >"$root/usr/share/doc/engarde/README.md.gz"
{
	echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
	echo "Upstream-Name: engarde"
	echo "Source: https://github.com/engarde-project/engarde"
	echo
	echo "Files: *"
	echo "License: GPL-2"
	echo
	sed 's/^$/./; s/^/ /' "$top/LICENSE.txt"
} >"$root/usr/share/doc/engarde/copyright"
chmod 644 "$root/usr/share/doc/engarde/"*

for s in postinst prerm postrm; do
	install -m 755 "$here/$s" "$root/DEBIAN/$s"
done
echo /etc/engarde/engarde.yml.sample >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: engarde
Version: $dver
Architecture: $darch
Maintainer: ${DEB_MAINTAINER:-engarde project <engarde-project@users.noreply.github.com>}
Installed-Size: $size
Section: net
Priority: optional
Homepage: https://github.com/engarde-project/engarde
Suggests: wireguard-tools
Description: redundant UDP transport under WireGuard, over every link at once
 engarde-client sends a copy of every datagram the local WireGuard sends
 over every usable network interface to engarde-server, which forwards the
 first copy to WireGuard and sends its replies back over every live link:
 a cable, a Wi-Fi or an LTE link can fail without the tunnel noticing.
 .
 The binaries are static (no libc), so the package depends on nothing; the
 systemd units run one instance per file, /etc/engarde/NAME.yml, as the
 unprivileged user engarde (created from /usr/lib/sysusers.d/engarde.conf).
CONTROL
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"
find "$root" -exec touch -h -d "@$epoch" {} +

mkdir -p "$out"
deb=$out/engarde_${dver}_$darch.deb
# gzip: every dpkg reads it, and it compresses the 10 MB of static
# binaries in a second where xz (dpkg-deb's default) takes ten; the
# package is about a quarter larger.
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zgzip -z9 --build "$root" "$deb" >/dev/null
echo "$deb"
