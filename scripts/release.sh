#!/bin/sh
# make release: engarde-client and engarde-server cross-built for the
# platforms the original's releases page offered, as archives named with
# the version, the OS and the architecture, the Debian packages of the
# Linux ones, and their SHA256SUMS:
#
#   scripts/release.sh -version V -doc DIR -out DIR
#
#   engarde-V-linux-amd64.tar.gz    engarde-V-darwin-amd64.tar.gz
#   engarde-V-linux-arm64.tar.gz    engarde-V-darwin-arm64.tar.gz
#   engarde-V-linux-armv7.tar.gz    engarde-V-windows-amd64.zip
#   engarde_DEBV_{amd64,arm64,armhf}.deb
#   SHA256SUMS                      (sha256sum -c SHA256SUMS checks them)
#
# Each archive holds one directory, engarde-V-OS-ARCH/, with the two
# binaries, README.md, LICENSE.txt and engarde.yml.sample, outside
# Windows the man pages and completions (-doc: cmd/internal/gendoc's
# output), and for Linux the systemd units and sysusers entry. CGO is
# off, so the binaries are static; -trimpath, files dated
# SOURCE_DATE_EPOCH and owned by root, and gzip -n, so that one commit
# gives the same archives on any machine with the same Go. GOFLAGS and
# LDFLAGS come from the environment (make passes its LDFLAGS, with the
# version).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
GO=${GO:-go}

version= doc= out=
while [ $# -gt 0 ]; do
	case $1 in
	-version) version=$2 ;;
	-doc) doc=$2 ;;
	-out) out=$2 ;;
	*)
		echo "usage: $0 -version V -doc DIR -out DIR" >&2
		exit 2
		;;
	esac
	shift 2
done
[ -n "$version" ] && [ -n "$doc" ] && [ -n "$out" ] || {
	echo "usage: $0 -version V -doc DIR -out DIR" >&2
	exit 2
}
: "${LDFLAGS:=-s -w -X github.com/engarde-project/engarde/cmd/internal/app.Version=$version}"
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch

# The platforms: GOOS/GOARCH[/GOARM] and the name in the archive's.
targets="linux/amd64 linux/arm64 linux/arm/7 darwin/amd64 darwin/arm64 windows/amd64"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Only what this run writes ends up in SHA256SUMS: an old version's files
# left in the directory would otherwise be listed beside the new ones.
rm -f "$out"/engarde-* "$out"/engarde_*.deb "$out/SHA256SUMS"

# target T: sets d, the archive's directory name of target T, and os,
# arch and arm (GOARM).
target() {
	os=${1%%/*}
	rest=${1#*/}
	arch=${rest%%/*}
	arm=
	name=$arch
	if [ "$arch" != "$rest" ]; then
		arm=${rest#*/}
		name=armv$arm
	fi
	d=engarde-$version-$os-$name
}

# The builds run side by side (linking is mostly one thread each), then
# each is packed.
pids=
for t in $targets; do
	target "$t"
	mkdir -p "$work/$d"
	(cd "$top" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$arm \
		$GO build -trimpath -ldflags "$LDFLAGS" -o "$work/$d/" ./cmd/engarde-client ./cmd/engarde-server) &
	pids="$pids $!"
done
failed=0
for p in $pids; do
	wait "$p" || failed=1
done
[ "$failed" = 0 ] || {
	echo "release: a build failed" >&2
	exit 1
}
for t in $targets; do
	target "$t"
	echo "release: $d"
	cp "$top/README.md" "$top/LICENSE.txt" "$top/engarde.yml.sample" "$work/$d/"
	if [ "$os" = linux ]; then
		# The units as they are, for binaries copied to /usr/local/bin.
		mkdir -p "$work/$d/systemd"
		cp "$top"/scripts/systemd/*.service "$top/scripts/systemd/engarde.sysusers" "$work/$d/systemd/"
	fi
	if [ "$os" != windows ]; then
		mkdir -p "$work/$d/man" "$work/$d/completions"
		cp "$doc"/man/* "$work/$d/man/"
		cp "$doc"/bash/* "$doc"/zsh/* "$work/$d/completions/"
	fi
	find "$work/$d" -exec touch -h -d "@$epoch" {} +
	if [ "$os" = windows ]; then
		# zip -X: no extra attributes (uid, gid, times beyond the DOS one).
		(cd "$work" && find "$d" | LC_ALL=C sort | TZ=UTC zip -qX -@ "$out/$d.zip")
	else
		tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
			--format=ustar -cf - "$d" | gzip -9n >"$out/$d.tar.gz"
	fi
	if [ "$os" = linux ]; then
		"$top/scripts/deb/build.sh" -bin "$work/$d" -doc "$doc" -version "$version" -arch "$arch" -out "$out" >/dev/null
	fi
done
(cd "$out" && sha256sum engarde-* engarde_*.deb >SHA256SUMS)
echo "release: $out/SHA256SUMS"
cat "$out/SHA256SUMS"
