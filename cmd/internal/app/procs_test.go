package app

import (
	"os"
	"runtime"
	"testing"
)

// TestLimitProcs: on a host the Go runtime gives two processors or fewer,
// the daemon runs on one, unless GOMAXPROCS is set; larger ones keep the
// runtime's choice.
func TestLimitProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	env, had := os.LookupEnv("GOMAXPROCS")
	t.Cleanup(func() {
		runtime.GOMAXPROCS(prev)
		if had {
			os.Setenv("GOMAXPROCS", env)
		} else {
			os.Unsetenv("GOMAXPROCS")
		}
	})
	os.Unsetenv("GOMAXPROCS")
	for _, c := range []struct{ procs, want int }{{1, 1}, {2, 1}, {3, 3}, {16, 16}} {
		runtime.GOMAXPROCS(c.procs)
		if got := limitProcs(); got != c.want {
			t.Errorf("GOMAXPROCS unset, %d processors: the daemon runs on %d, want %d", c.procs, got, c.want)
		}
	}
	os.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	if got := limitProcs(); got != 2 {
		t.Errorf("GOMAXPROCS=2: the daemon runs on %d processors, want 2", got)
	}
}
