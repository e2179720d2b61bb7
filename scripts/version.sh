#!/bin/sh
# The version of the checkout, for `make` (VERSION) and the packages.
#
#   scripts/version.sh          v0.1.0, v0.1.0-3-g1a2b3c4, v0.1.0-dirty, or
#                               v0.0.0-dev+1a2b3c4 when no v* tag is reachable
#   scripts/version.sh deb V    V as a Debian version (deb-version(5)): the v
#                               dropped, a pre-release and the no-tag
#                               pseudo-version sorting below the release
#                               (0.1.0~rc.1, 0.0.0~dev+1a2b3c4), commits after
#                               a tag above it (0.1.0+3.g1a2b3c4, 0.1.0+0.dirty)
#
# A release is the nearest tag named v<semver> (git describe --match
# 'v[0-9]*'); commits after it and uncommitted changes are appended the way
# git describe does, so a binary never claims a release it is not. Without
# a tag the version is a pseudo-version, v0.0.0-dev+<short hash>, never a
# bare hash; without git (a source tarball) it is v0.0.0-dev+unknown, as a
# plain `go build` reports (cmd/internal/app/version.go).
set -eu

semver() {
	d=$(git describe --tags --match 'v[0-9]*' --dirty --always 2>/dev/null) || {
		echo v0.0.0-dev+unknown
		return
	}
	case $d in
	v[0-9]*) echo "$d" ;;
	*) echo "v0.0.0-dev+$(echo "$d" | sed 's/-dirty$/.dirty/')" ;;
	esac
}

# deb V: the Debian form of a version printed by semver. Debian allows a
# hyphen in the upstream version only with a revision after it, so the
# parts are joined with dots; "~" sorts before anything, even the end of
# the string, and "+" after it (deb-version(5), "Sorting algorithm").
deb() {
	v=${1#v}
	dirty=
	case $v in *[-.]dirty) dirty=.dirty v=${v%?dirty} ;; esac
	case $v in
	*-dev+*) # v0.0.0-dev+HASH[.dirty]
		echo "${v%%-dev+*}~dev+${v#*-dev+}$dirty"
		return
		;;
	esac
	# git describe: TAG[-N-gHASH]; TAG may carry a pre-release (-rc.1).
	after=
	if echo "$v" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
		after=$(echo "$v" | sed -E 's/^.*-([0-9]+)-(g[0-9a-f]+)$/\1.\2/')
		v=$(echo "$v" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
	fi
	case $v in
	*-*) v="${v%%-*}~$(echo "${v#*-}" | tr - .)" ;;
	esac
	v=$(echo "$v" | tr -c '0-9A-Za-z.+~\n' .)
	if [ -n "$after" ]; then
		echo "$v+$after$dirty"
	elif [ -n "$dirty" ]; then
		echo "$v+0.dirty" # no commit after the tag, changed: below the first
	else
		echo "$v"
	fi
}

case ${1:-} in
"") semver ;;
deb) deb "${2:?usage: $0 deb VERSION}" ;;
*)
	echo "usage: $0 [deb VERSION]" >&2
	exit 2
	;;
esac
