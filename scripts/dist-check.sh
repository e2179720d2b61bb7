#!/bin/sh
# make dist-check (and .ci/run): builds the Debian package, installs it with
# dpkg into a scratch root and checks what landed where, runs the packaged
# client, renders the man pages, tries the bash completion, removes and
# purges it; then runs make release and checks SHA256SUMS and the
# archives. Everything is built into a temporary directory and removed at
# the end; bin/ and dist/ are left alone.
#
# The scratch root has no shell and no libc, so dpkg runs the maintainer
# scripts outside it (--force-script-chrootless) with DPKG_ROOT naming it,
# which the scripts honour (scripts/deb/postinst): this checks the path
# a chroot or bootstrap takes, with this machine's systemd-sysusers.
# dpkg needs root to give files their owners; without root the check runs
# itself under fakeroot if it can.
set -eu
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
GO=${GO:-go}

if [ "$(id -u)" != 0 ]; then
	if command -v fakeroot >/dev/null && [ -z "${FAKEROOTKEY:-}" ]; then
		echo "dist-check: not root: running under fakeroot"
		exec fakeroot "$0" "$@"
	fi
	[ -n "${FAKEROOTKEY:-}" ] || {
		echo "dist-check: needs root (or fakeroot) for dpkg" >&2
		exit 1
	}
fi
for c in dpkg dpkg-deb sha256sum tar unzip gzip; do
	command -v $c >/dev/null || {
		echo "dist-check: $c not found" >&2
		exit 1
	}
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() {
	echo "dist-check: FAIL: $*" >&2
	failed=$((failed + 1))
}
# ok reports a part that passed: one whose checks since the last ok
# (or the start) found nothing.
seen=0
ok() {
	if [ "$failed" = "$seen" ]; then echo "dist-check: ok: $*"; fi
	seen=$failed
}
start=$(date +%s)

version=$(scripts/version.sh)
dver=$(scripts/version.sh deb "$version")
echo "dist-check: version $version (Debian $dver)"

# 1. The Debian form of versions sorts as their releases do: a
# pre-release and the no-tag pseudo-version below the release, commits
# after a tag above it and below the next.
order="v0.0.0-dev+1a2b3c4 v0.0.1-rc.1 v0.0.1-rc.1-2-g1a2b3c4 v0.0.1 v0.0.1-dirty v0.0.1-3-g1a2b3c4 v0.0.1-3-g1a2b3c4-dirty v0.0.1-4-g0b1c2d3 v0.1.0"
prev=
for v in $order; do
	d=$(scripts/version.sh deb "$v")
	if [ -n "$prev" ] && ! dpkg --compare-versions "$prev" lt "$d"; then
		fail "Debian version $d ($v) does not sort above $prev"
	fi
	prev=$d
done
[ "$(scripts/version.sh deb v0.1.0)" = 0.1.0 ] || fail "v0.1.0 is not Debian 0.1.0"
ok "Debian versions sort: $(for v in $order; do printf '%s ' "$(scripts/version.sh deb "$v")"; done)"

# 2. make deb (compared with make release's package below: the same
# commit must give the same bytes by either path).
$MAKE -s deb BIN="$tmp/bin" DIST="$tmp/deb" VERSION="$version" >/dev/null
set -- "$tmp"/deb/engarde_*.deb
deb=$1
[ -f "$deb" ] || {
	echo "dist-check: FAIL: make deb wrote no package" >&2
	exit 1
}
ok "make deb: ${deb##*/}"

# 3. dpkg-deb --info: the control fields.
field() { dpkg-deb --field "$deb" "$1"; }
dpkg-deb --info "$deb" >"$tmp/info" || fail "dpkg-deb --info failed"
[ "$(field Package)" = engarde ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$dver" ] || fail "Version: $(field Version), want $dver"
want_arch=$(dpkg --print-architecture)
[ "$(field Architecture)" = "$want_arch" ] || fail "Architecture: $(field Architecture), want $want_arch"
[ -z "$(field Depends)" ] || fail "Depends: $(field Depends) (the binaries are static)"
for f in Maintainer Description Installed-Size Section Priority; do
	[ -n "$(field $f)" ] || fail "no $f field"
done
for s in postinst prerm postrm conffiles; do
	grep -q " $s\$" "$tmp/info" || grep -q "^ .* $s" "$tmp/info" || fail "no $s in the control archive"
done
# Every file root's, nothing outside the tree the package owns.
dpkg-deb --contents "$deb" >"$tmp/contents"
if awk '$2 != "root/root" { bad = 1; print "dist-check: not root/root: " $0 } END { exit bad }' "$tmp/contents"; then
	ok "dpkg-deb --info: Package engarde, Version $dver, Architecture $want_arch, no Depends; files root/root"
else
	fail "files not owned by root"
fi

# 4. dpkg -i into a scratch root: an initialised status file, /etc for the
# user and group files, nothing else.
root=$tmp/root
admin=$root/var/lib/dpkg
mkdir -p "$admin/updates" "$admin/info" "$admin/triggers" "$root/etc"
: >"$admin/status"
: >"$admin/available"
dpkgr() { dpkg --root="$root" --force-script-chrootless --log="$tmp/dpkg.log" "$@"; }
if ! dpkgr -i "$deb" >"$tmp/dpkg.out" 2>&1; then
	cat "$tmp/dpkg.out" >&2
	fail "dpkg -i into the scratch root"
fi
status=$(dpkg-query --admindir="$admin" -W -f='${Status} ${Version}' engarde 2>/dev/null || true)
[ "$status" = "install ok installed $dver" ] || fail "dpkg-query: '$status', want 'install ok installed $dver'"

for f in usr/bin/engarde-client usr/bin/engarde-server; do
	[ -x "$root/$f" ] || fail "$f is not an executable"
done
for f in usr/lib/systemd/system/engarde-client@.service usr/lib/systemd/system/engarde-server@.service \
	usr/lib/sysusers.d/engarde.conf etc/engarde/engarde.yml.sample \
	usr/share/man/man1/engarde-client.1.gz usr/share/man/man1/engarde-server.1.gz usr/share/man/man5/engarde.yml.5.gz \
	usr/share/bash-completion/completions/engarde-client usr/share/bash-completion/completions/engarde-server \
	usr/share/zsh/vendor-completions/_engarde-client usr/share/zsh/vendor-completions/_engarde-server \
	usr/share/doc/engarde/copyright; do
	[ -f "$root/$f" ] || fail "$f missing"
done
for r in client server; do
	u=$root/usr/lib/systemd/system/engarde-$r@.service
	grep -q "^ExecStart=/usr/bin/engarde-$r /etc/engarde/%i.yml\$" "$u" || fail "${u#$root}: ExecStart is not /usr/bin/engarde-$r"
	! grep -q /usr/local/ "$u" || fail "${u#$root} still names /usr/local"
done
cmp -s "$root/etc/engarde/engarde.yml.sample" engarde.yml.sample || fail "the packaged sample differs from engarde.yml.sample"
grep -qx /etc/engarde/engarde.yml.sample "$admin/info/engarde.conffiles" || fail "the sample is not a conffile"
ok "dpkg -i: installed $dver; binaries, units (ExecStart in /usr/bin), sysusers entry, sample, man pages and completions in place"

# The maintainer script ran against the scratch root: the user from the
# sysusers entry (or useradd), and /etc/engarde readable by it only.
if command -v systemd-sysusers >/dev/null || command -v useradd >/dev/null; then
	gid=$(awk -F: '$1 == "engarde" { print $3 }' "$root/etc/group" 2>/dev/null)
	grep -q '^engarde:' "$root/etc/passwd" 2>/dev/null || fail "postinst made no engarde user in the scratch root"
	if [ -n "$gid" ]; then
		[ "$(stat -c '%g %a' "$root/etc/engarde")" = "$gid 750" ] || fail "/etc/engarde is $(stat -c '%g %a' "$root/etc/engarde"), want $gid 750"
	fi
	ok "postinst: user engarde in the scratch root's /etc/passwd, /etc/engarde root:engarde 0750"
else
	echo "dist-check: skip: neither systemd-sysusers nor useradd here, so postinst could make no user"
fi

# The packaged client runs and names the version.
out=$("$root/usr/bin/engarde-client" -v 2>&1) || fail "engarde-client -v failed: $out"
case $out in
"engarde-client $version "*) ok "packaged engarde-client -v: $out" ;;
*) fail "packaged engarde-client -v printed '$out', want 'engarde-client $version ...'" ;;
esac
out=$("$root/usr/bin/engarde-server" -v 2>&1) || fail "engarde-server -v failed: $out"
case $out in "engarde-server $version "*) ;; *) fail "packaged engarde-server -v printed '$out'" ;; esac

# The man pages render without warnings and say what -h says.
if command -v groff >/dev/null; then
	for m in man1/engarde-client.1 man1/engarde-server.1 man5/engarde.yml.5; do
		zcat "$root/usr/share/man/$m.gz" >"$tmp/page"
		warn=$(groff -man -Tutf8 -ww -z "$tmp/page" 2>&1)
		[ -z "$warn" ] || fail "groff warns about $m: $warn"
		if command -v man >/dev/null; then
			MANWIDTH=80 man -l "$tmp/page" >"$tmp/text" 2>"$tmp/man.err" || fail "man -l $m: $(cat "$tmp/man.err")"
		else
			groff -man -Tascii -P-cbou "$tmp/page" >"$tmp/text"
		fi
		grep -q '^NAME' "$tmp/text" || fail "$m renders without a NAME section"
	done
	zcat "$root/usr/share/man/man1/engarde-client.1.gz" | groff -man -Tascii -P-cbou 2>/dev/null >"$tmp/client.txt"
	for w in list-interfaces status -json -wide --version ENGARDE_BACKEND SIGHUP; do
		grep -q -- "$w" "$tmp/client.txt" || fail "engarde-client(1) does not mention $w"
	done
	zcat "$root/usr/share/man/man5/engarde.yml.5.gz" | groff -man -Tascii -P-cbou 2>/dev/null >"$tmp/yml.txt"
	for w in client.listenAddr client.webManager.listenAddr server.clientTimeout; do
		grep -q -- "$w" "$tmp/yml.txt" || fail "engarde.yml(5) does not document $w"
	done
	ok "man pages render (groff -ww, man -l) and name the commands, flags and keys"
else
	echo "dist-check: skip: groff not found, the man pages were not rendered"
fi

# The bash completion completes the subcommand and the config file.
if command -v bash >/dev/null; then
	got=$(cd "$tmp" && : >x.yml && bash -c '. "$1"; COMP_WORDS=(engarde-client st); COMP_CWORD=1; _engarde_client; echo "${COMPREPLY[*]}"' - "$root/usr/share/bash-completion/completions/engarde-client" 2>&1)
	[ "$got" = status ] || fail "bash completion of 'engarde-client st': '$got', want 'status'"
	got=$(cd "$tmp" && bash -c '. "$1"; COMP_WORDS=(engarde-client status -); COMP_CWORD=2; _engarde_client; echo "${COMPREPLY[*]}"' - "$root/usr/share/bash-completion/completions/engarde-client" 2>&1)
	[ "$got" = "-json -wide" ] || fail "bash completion of 'engarde-client status -': '$got', want '-json -wide'"
	ok "bash completion: 'st' -> status, 'status -' -> -json -wide"
fi
if command -v zsh >/dev/null; then
	for r in client server; do
		zsh -n "$root/usr/share/zsh/vendor-completions/_engarde-$r" || fail "_engarde-$r is not valid zsh"
	done
	ok "zsh completions parse (zsh -n)"
else
	echo "dist-check: skip: zsh not found, the zsh completions were not parsed"
fi

# Again (an upgrade's path through postinst), then remove and purge.
dpkgr -i "$deb" >"$tmp/dpkg.out" 2>&1 || {
	cat "$tmp/dpkg.out" >&2
	fail "dpkg -i over the installed package"
}
mkdir -p "$root/var/lib/engarde" && : >"$root/var/lib/engarde/x.client.state"
dpkgr -r engarde >"$tmp/dpkg.out" 2>&1 || fail "dpkg -r: $(cat "$tmp/dpkg.out")"
[ ! -e "$root/usr/bin/engarde-client" ] || fail "dpkg -r left /usr/bin/engarde-client"
[ -f "$root/etc/engarde/engarde.yml.sample" ] || fail "dpkg -r removed the conffile (only a purge should)"
[ -f "$root/var/lib/engarde/x.client.state" ] || fail "dpkg -r removed the state (only a purge should)"
dpkgr -P engarde >"$tmp/dpkg.out" 2>&1 || fail "dpkg -P: $(cat "$tmp/dpkg.out")"
[ ! -e "$root/etc/engarde/engarde.yml.sample" ] || fail "dpkg -P left the sample"
[ ! -e "$root/var/lib/engarde" ] || fail "dpkg -P left /var/lib/engarde"
[ -z "$(dpkg-query --admindir="$admin" -W -f='${Status}' engarde 2>/dev/null | grep installed)" ] || fail "engarde still installed after the purge"
ok "dpkg -i again, -r (keeps the conffile and state), -P (removes them)"

# 4b. dpkg -i into a bare chroot: dpkg runs the maintainer scripts inside
# it, where there is a shell (busybox) and no systemd-sysusers, useradd or
# /dev. They must not fail there: the package is installed, and postinst
# says that the user is to be made by hand.
bb=$(command -v busybox || true)
if [ -z "${FAKEROOTKEY:-}" ] && [ -n "$bb" ] && command -v ldd >/dev/null; then
	croot=$tmp/chroot
	mkdir -p "$croot/bin" "$croot/etc" "$croot/var/lib/dpkg/updates" "$croot/var/lib/dpkg/info"
	: >"$croot/var/lib/dpkg/status"
	cp "$bb" "$croot/bin/busybox"
	for l in $(ldd "$bb" | grep -o '/[^ ]*'); do
		mkdir -p "$croot${l%/*}" && cp -L "$l" "$croot$l"
	done
	for c in sh awk grep chgrp chmod rm cat; do ln -s busybox "$croot/bin/$c"; done
	if dpkg --root="$croot" --log="$tmp/dpkg.log" -i "$deb" >"$tmp/dpkg.out" 2>&1; then
		grep -q 'create the system user engarde yourself' "$tmp/dpkg.out" || fail "postinst in a bare chroot did not say the user is missing: $(cat "$tmp/dpkg.out")"
		[ -x "$croot/usr/bin/engarde-client" ] || fail "the chroot has no /usr/bin/engarde-client"
		dpkg --root="$croot" --log="$tmp/dpkg.log" -P engarde >"$tmp/dpkg.out" 2>&1 || fail "dpkg -P in the chroot: $(cat "$tmp/dpkg.out")"
	else
		fail "dpkg -i into a bare chroot (maintainer scripts inside it): $(cat "$tmp/dpkg.out")"
	fi
	ok "dpkg -i and -P in a bare chroot (busybox, no systemd-sysusers, no /dev): the scripts run, postinst names the missing user"
else
	echo "dist-check: skip: the bare-chroot install needs root (not fakeroot), busybox and ldd"
fi

# 5. make release: the archives, the .debs, SHA256SUMS.
$MAKE -s release BIN="$tmp/bin" DIST="$tmp/rel" VERSION="$version" >"$tmp/release.out" 2>&1 || {
	cat "$tmp/release.out" >&2
	echo "dist-check: FAIL: make release" >&2
	exit 1
}
rel=$tmp/rel
(cd "$rel" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c SHA256SUMS"
want="engarde-$version-linux-amd64.tar.gz engarde-$version-linux-arm64.tar.gz engarde-$version-linux-armv7.tar.gz engarde-$version-darwin-amd64.tar.gz engarde-$version-darwin-arm64.tar.gz engarde-$version-windows-amd64.zip engarde_${dver}_amd64.deb engarde_${dver}_arm64.deb engarde_${dver}_armhf.deb"
for f in $want; do
	grep -q "  $f\$" "$rel/SHA256SUMS" || fail "SHA256SUMS does not list $f"
done
[ "$(wc -l <"$rel/SHA256SUMS")" -eq 9 ] || fail "SHA256SUMS lists $(wc -l <"$rel/SHA256SUMS") files, want 9"
# A checksum that does not match must fail the check above.
cp -r "$rel" "$tmp/bad" && printf x >>"$tmp/bad/engarde_${dver}_amd64.deb"
! (cd "$tmp/bad" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1) || fail "sha256sum -c accepted a changed file"
rm -rf "$tmp/bad"
# What each binary is: the build information the go command wrote.
mkdir -p "$tmp/x"
for t in linux-amd64:amd64: linux-arm64:arm64: linux-armv7:arm:7 darwin-amd64:amd64: darwin-arm64:arm64: windows-amd64:amd64:; do
	name=${t%%:*} rest=${t#*:}
	arch=${rest%%:*} arm=${rest#*:}
	dir=engarde-$version-$name
	case $name in
	windows-*)
		unzip -q -o "$rel/$dir.zip" -d "$tmp/x"
		exe=.exe
		;;
	*)
		tar -C "$tmp/x" -xzf "$rel/$dir.tar.gz"
		exe=
		[ -f "$tmp/x/$dir/man/engarde-client.1" ] || fail "$dir has no man page"
		case $name in linux-*) [ -f "$tmp/x/$dir/systemd/engarde-client@.service" ] || fail "$dir has no systemd unit" ;; esac
		;;
	esac
	for b in engarde-client engarde-server; do
		f=$tmp/x/$dir/$b$exe
		[ -f "$f" ] || {
			fail "$dir has no $b$exe"
			continue
		}
		m=$($GO version -m "$f")
		for w in "GOARCH=$arch" "GOOS=${name%-*}" CGO_ENABLED=0 -trimpath=true; do
			echo "$m" | grep -q -- "$w" || fail "$dir/$b$exe: no $w in its build information"
		done
		# -trimpath leaves -ldflags out of the build information: the
		# version -X wrote is looked for in the binary itself.
		grep -qaF "$version" "$f" || fail "$dir/$b$exe does not carry the version $version"
		[ -z "$arm" ] || echo "$m" | grep -q "GOARM=$arm" || fail "$dir/$b$exe: not GOARM=$arm"
	done
	[ -f "$tmp/x/$dir/engarde.yml.sample" ] && [ -f "$tmp/x/$dir/LICENSE.txt" ] || fail "$dir lacks the sample or the licence"
done
out=$("$tmp/x/engarde-$version-linux-amd64/engarde-client" -v 2>&1) || true
case $(uname -m) in x86_64) case $out in "engarde-client $version "*) ;; *) fail "the release's linux-amd64 client -v: '$out'" ;; esac ;; esac
if [ "$(dpkg --print-architecture)" = amd64 ]; then
	cmp -s "$deb" "$rel/${deb##*/}" || fail "make deb and make release built different ${deb##*/}: not reproducible"
fi
ok "make release: 6 archives and 3 packages, SHA256SUMS verified, each binary's GOOS/GOARCH/GOARM, CGO_ENABLED=0, -trimpath and version"

echo "dist-check: $(($(date +%s) - start)) s"
if [ "$failed" -gt 0 ]; then
	echo "dist-check: $failed check(s) failed" >&2
	exit 1
fi
echo "dist-check: passed"
