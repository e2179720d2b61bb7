package control

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// started is about when this test process started.
var started = time.Now()

// TestMetricsProcess scrapes /metrics and checks the process and runtime
// series (client_golang's collectors, under the names the hand-written
// ones had) against what this process does between two scrapes: start
// goroutines, open files, touch memory.
func TestMetricsProcess(t *testing.T) {
	s := newTest(t, Options{Version: "v9"}, Role{Client: newFakeClient()})
	before, _ := scrape(t, s)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }() // gone before a next run counts
	for range 50 {
		wg.Go(func() { <-stop })
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
	after, _ := scrape(t, s)
	runtime.KeepAlive(mem)

	// Other goroutines of the process (an earlier test's, the HTTP
	// client's) may come and go meanwhile: a margin of a few.
	if d := after["go_goroutines{}"] - before["go_goroutines{}"]; d < 45 || d > 55 {
		t.Errorf("go_goroutines went from %v to %v with 50 goroutines started", before["go_goroutines{}"], after["go_goroutines{}"])
	}
	// go_goroutines was once read from /sched/goroutines, which counts
	// the runtime's GC workers too and rose by GOMAXPROCS at the first
	// collection, looking like a leak in the soak; client_golang's Go
	// collector reads runtime.NumGoroutine, plus the few goroutines the
	// registry gathers with.
	if g, n := after["go_goroutines{}"], runtime.NumGoroutine(); g < float64(n) || g > float64(n+8) {
		t.Errorf("go_goroutines %v, runtime.NumGoroutine %d", g, n)
	}
	if after["go_memstats_heap_inuse_bytes{}"] < 64<<20 {
		t.Errorf("go_memstats_heap_inuse_bytes %v with a live 64 MiB slice", after["go_memstats_heap_inuse_bytes{}"])
	}
	if _, ok := after[`go_info{version="`+runtime.Version()+`"}`]; !ok {
		t.Errorf("no go_info for %s", runtime.Version())
	}
	if runtime.GOOS != "linux" {
		return
	}
	for _, k := range []string{"process_cpu_seconds_total{}", "process_resident_memory_bytes{}", "process_virtual_memory_bytes{}",
		"process_start_time_seconds{}", "process_open_fds{}", "process_max_fds{}"} {
		if _, ok := after[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	// The test's own HTTP requests go through a recorder: no descriptor
	// comes or goes but the 7 files.
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
	st := time.Unix(0, int64(after["process_start_time_seconds{}"]*1e9))
	if d := started.Sub(st); d < -time.Second || d > 3*time.Second {
		t.Errorf("process_start_time_seconds says %v, but the test started at %v", st, started)
	}
	if n := after["process_max_fds{}"]; n < after["process_open_fds{}"] {
		t.Errorf("process_max_fds %v below the %v open", n, after["process_open_fds{}"])
	}
	for k := range after {
		if strings.HasPrefix(k, "process_") && strings.Contains(k, "{}") == false && !strings.HasPrefix(k, "process_network_") {
			t.Errorf("a labelled process series: %s", k)
		}
	}
}
