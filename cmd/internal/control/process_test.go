package control

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// started is about when this test process started.
var started = time.Now()

func TestParseProcStat(t *testing.T) {
	// The tail of a real line, fields 3 to 52.
	tail := " S 1 5542 3531 0 -1 4194304 98 0 0 0 250 75 0 0 20 0 9 0 906986 3133440 384 18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 1 1 1 1 1 1 1 0"
	for _, tc := range []struct {
		name, in string
		want     procStat
		bad      bool
	}{
		{"plain", "5545 (engarde-client)" + tail, procStat{utime: 250, stime: 75, starttime: 906986, vsize: 3133440, rss: 384}, false},
		// A command name may hold spaces and parentheses: only the last
		// ')' ends it.
		{"tricky name", "5545 (a ) 1 2 (b)" + tail, procStat{utime: 250, stime: 75, starttime: 906986, vsize: 3133440, rss: 384}, false},
		{"truncated", "5545 (x) S 1 2 3", procStat{}, true},
		{"no name", "5545 x S" + tail, procStat{}, true},
		{"not a number", "5545 (x) S 1 5542 3531 0 -1 4194304 98 0 0 0 z 75 0 0 20 0 9 0 906986 3133440 384", procStat{}, true},
		{"empty", "", procStat{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if tc.bad {
				if err == nil {
					t.Errorf("parsed %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseBootTimeAndLimits(t *testing.T) {
	if v, err := parseBootTime([]byte("cpu  1 2 3\nintr 5\nbtime 1796106775\nprocesses 9\n")); err != nil || v != 1796106775 {
		t.Errorf("btime: %d, %v", v, err)
	}
	if _, err := parseBootTime([]byte("cpu 1 2 3\n")); err == nil {
		t.Error("no btime line parsed")
	}
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            1024                 524288               files     \n"
	if n, ok := parseMaxFiles([]byte(limits)); !ok || n != 1024 {
		t.Errorf("max open files: %d, %v; want 1024 (the soft limit)", n, ok)
	}
	if _, ok := parseMaxFiles([]byte(strings.Replace(limits, "1024 ", "unlimited ", 1))); ok {
		t.Error("unlimited open files parsed as a number")
	}
}

// TestMetricsProcess scrapes /metrics and checks the process and runtime
// series against what this process does between two scrapes: start
// goroutines, open files, touch memory.
func TestMetricsProcess(t *testing.T) {
	s := newTest(t, Options{Version: "v9"}, Role{Client: newFakeClient()})
	scrape := func() map[string]float64 {
		t.Helper()
		code, _, body := do(t, s.Handler(), "GET", "/metrics", "")
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		return parseMetrics(t, body)
	}
	before := scrape()

	stop := make(chan struct{})
	defer close(stop)
	for range 50 {
		go func() { <-stop }()
	}
	for i := range 7 {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	mem := make([]byte, 64<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	after := scrape()
	runtime.KeepAlive(mem)

	// Other goroutines of the process (an earlier test's, the HTTP
	// client's) may come and go meanwhile: a margin of a few.
	if d := after["go_goroutines{}"] - before["go_goroutines{}"]; d < 45 || d > 55 {
		t.Errorf("go_goroutines went from %v to %v with 50 goroutines started", before["go_goroutines{}"], after["go_goroutines{}"])
	}
	// Regression: go_goroutines was read from /sched/goroutines, which
	// counts the runtime's GC workers too, and rose by GOMAXPROCS at a
	// process's first collection, looking like a leak in the soak.
	if g, n := after["go_goroutines{}"], runtime.NumGoroutine(); g != float64(n) {
		t.Errorf("go_goroutines %v, runtime.NumGoroutine %d", g, n)
	}
	if after["go_memstats_heap_inuse_bytes{}"] < 64<<20 {
		t.Errorf("go_memstats_heap_inuse_bytes %v with a live 64 MiB slice", after["go_memstats_heap_inuse_bytes{}"])
	}
	if runtime.GOOS != "linux" {
		for k := range after {
			if strings.HasPrefix(k, "process_") {
				t.Errorf("%s present without procfs", k)
			}
		}
		return
	}
	for _, k := range []string{"process_cpu_seconds_total{}", "process_resident_memory_bytes{}", "process_virtual_memory_bytes{}",
		"process_start_time_seconds{}", "process_open_fds{}", "process_max_fds{}"} {
		if _, ok := after[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	if d := after["process_open_fds{}"] - before["process_open_fds{}"]; d != 7 {
		t.Errorf("process_open_fds went from %v to %v with 7 files opened", before["process_open_fds{}"], after["process_open_fds{}"])
	}
	// The live, touched 64 MiB is resident. Not the growth since before:
	// with -count above 1 the heap reuses what the previous run freed.
	if rss := after["process_resident_memory_bytes{}"]; rss < 64<<20 {
		t.Errorf("process_resident_memory_bytes %v with 64 MiB live and touched", rss)
	}
	if rss, vsz := after["process_resident_memory_bytes{}"], after["process_virtual_memory_bytes{}"]; rss > vsz {
		t.Errorf("resident %v above virtual %v", rss, vsz)
	}
	// btime has a resolution of 1 s, the start time one of 10 ms.
	st := time.Unix(0, int64(after["process_start_time_seconds{}"]*1e9))
	if d := started.Sub(st); d < -time.Second || d > 3*time.Second {
		t.Errorf("process_start_time_seconds says %v, but the test started at %v", st, started)
	}
	if n := after["process_max_fds{}"]; n < after["process_open_fds{}"] {
		t.Errorf("process_max_fds %v below the %v open", n, after["process_open_fds{}"])
	}
}

// TestProcfsAbsent checks that without procfs no process series is
// written, rather than zeros.
func TestProcfsAbsent(t *testing.T) {
	var m metrics
	m.procfs(filepath.Join(t.TempDir(), "no-such-pid"))
	if m.b.Len() != 0 {
		t.Errorf("wrote %q without procfs", m.b.String())
	}
}
