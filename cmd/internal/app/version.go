package app

import "runtime/debug"

// unsetVersion is Version's value when the build did not set it with
// -ldflags -X (the Makefile always does).
const unsetVersion = "unofficial build"

// noVersion is what a build without any version information reports: a
// pseudo-version that sorts below every release and says it knows no more.
const noVersion = "v0.0.0-dev+unknown"

func init() {
	if Version == unsetVersion || Version == "" {
		info, _ := debug.ReadBuildInfo()
		Version = buildVersion(info)
	}
}

// buildVersion is the version a plain `go build` or `go install` knows
// from the binary's own build information: the module version the go
// command stamps (the tag for `go install ...@v0.1.0`; since Go 1.24 a
// pseudo-version from the checkout's VCS state, +dirty when modified), else
// the commit, else noVersion. It never claims a release: only the go
// command's stamp or a -X from make (scripts/version.sh) name one.
func buildVersion(info *debug.BuildInfo) string {
	if info == nil {
		return noVersion
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ".dirty"
			}
		}
	}
	if rev == "" {
		return noVersion
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "v0.0.0-dev+" + rev + dirty
}
