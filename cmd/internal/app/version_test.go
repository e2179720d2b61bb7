package app

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build information", nil, noVersion},
		{"go install of a tag", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, "v0.1.0"},
		{"go build in a checkout (Go 1.24+ stamps a pseudo-version)",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201113025-9057a256c24d+dirty"}, Settings: vcs("9057a256c24d17fed67be7b3e8d4a1eab75e8fb5", "true")},
			"v0.0.0-20261201113025-9057a256c24d+dirty"},
		{"devel with a commit", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("9057a256c24d17fed67be7b3e8d4a1eab75e8fb5", "false")}, "v0.0.0-dev+9057a256c24d"},
		{"devel with a modified checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("9057a256c24d17fed67be7b3e8d4a1eab75e8fb5", "true")}, "v0.0.0-dev+9057a256c24d.dirty"},
		{"devel, -buildvcs=false", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, noVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildVersion(tc.info); got != tc.want {
				t.Errorf("buildVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionResolved pins that the test binary (built without -X) does
// not report cli.go's placeholder: init replaced it, so -v, the page and
// build_info always carry a version-shaped string.
func TestVersionResolved(t *testing.T) {
	if Version == unsetVersion || Version == "" {
		t.Fatalf("Version = %q: init did not resolve it", Version)
	}
}
