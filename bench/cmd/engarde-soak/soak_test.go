package main

import (
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
)

func TestVMRSS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"Name:\tx\nVmHWM:\t  20000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n", 12345 << 10, false},
		{"Name:\tx\n", 0, true},
		{"VmRSS:\t12345 MB\n", 0, true},
		{"VmRSS:\tx kB\n", 0, true},
	} {
		got, err := vmRSS(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("vmRSS(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestMetricValue(t *testing.T) {
	text := "# HELP go_goroutines_extra x\ngo_goroutines_extra 99\n# TYPE go_goroutines gauge\ngo_goroutines 17\n"
	if v, err := metricValue(text, "go_goroutines"); err != nil || v != 17 {
		t.Errorf("got %v, %v; want 17 (not the family whose name it prefixes)", v, err)
	}
	if _, err := metricValue(text, "go_threads"); err == nil {
		t.Error("a missing series was found")
	}
}

// series builds samples one second apart whose client goroutines and fds
// follow g and fds.
func series(g, fds []int) []Sample {
	var s []Sample
	for i := range g {
		s = append(s, Sample{At: time.Duration(i+1) * time.Second,
			Client: Usage{RSS: 10 << 20, Goroutines: g[i], FDs: fds[i]},
			Server: Usage{RSS: 10 << 20, Goroutines: 5, FDs: 5}})
	}
	return s
}

func TestCurves(t *testing.T) {
	b := Bounds{RSSBytes: 16 << 20, RSSPercent: 20, Goroutines: 2, FDs: 2}
	verdict := func(cs []Curve, measure string) bool {
		for _, c := range cs {
			if c.Process == "client" && c.Measure == measure {
				return c.OK
			}
		}
		t.Fatalf("no client %s curve", measure)
		return false
	}
	flat := []int{10, 11, 10, 10, 10, 10, 10, 10}
	// One more per flap, a flap every two samples: the leak the bounds
	// are there to catch.
	leak := []int{10, 10, 11, 11, 12, 12, 13, 13}
	for _, tc := range []struct {
		name     string
		g, fds   []int
		wantG    bool
		wantFDs  bool
		wantWarm float64
	}{
		{"flat", flat, flat, true, true, 11},
		{"leaks", leak, flat, false, true, 10},
		{"fd leak", flat, leak, true, false, 11},
		// A rise within the warm-up is the warm-up's.
		{"settles", []int{10, 14, 14, 14, 14, 14, 14, 14}, flat, true, true, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := curves(series(tc.g, tc.fds), 2*time.Second, b)
			if got := verdict(cs, "goroutines"); got != tc.wantG {
				t.Errorf("goroutines ok %v, want %v", got, tc.wantG)
			}
			if got := verdict(cs, "fds"); got != tc.wantFDs {
				t.Errorf("fds ok %v, want %v", got, tc.wantFDs)
			}
			if c := cs[2]; c.Measure != "goroutines" || c.WarmMax != tc.wantWarm || c.Start != float64(tc.g[0]) || c.End != float64(tc.g[len(tc.g)-1]) {
				t.Errorf("curve %+v", c)
			}
		})
	}
	// RSS: the larger of 16 MiB and 20%.
	s := series(flat, flat)
	s[len(s)-1].Client.RSS = 10<<20 + 17<<20
	if verdict(curves(s, 2*time.Second, b), "rss MiB") {
		t.Error("RSS up 17 MiB from 10 MiB passed a 16 MiB bound")
	}
	for i := range s {
		s[i].Client.RSS = 100 << 20
	}
	s[len(s)-1].Client.RSS = 100<<20 + 19<<20
	if !verdict(curves(s, 2*time.Second, b), "rss MiB") {
		t.Error("RSS up 19 MiB from 100 MiB failed a 20% bound")
	}
}

func TestJudgeLoss(t *testing.T) {
	rep := &loadgen.Report{Sent: 1000, Received: 990, Lost: 10, Duration: time.Second}
	for i := range 10 {
		iv := loadgen.Interval{Start: time.Duration(i) * loadgen.DefaultSeriesInterval, Sent: 100}
		if i >= 2 && i < 7 {
			iv.Sent = 0
		}
		if i == 7 {
			iv.Sent, iv.Lost = 600, 10
		}
		rep.Series = append(rep.Series, iv)
	}
	rep.Duration = 2 * time.Second
	for i := 10; i < 20; i++ {
		rep.Series = append(rep.Series, loadgen.Interval{Start: time.Duration(i) * loadgen.DefaultSeriesInterval})
	}
	rep.Series[12].Sent = 0 // quiet but too short to be a stall
	r := &Result{Stream: rep}
	r.judge()
	if len(r.Failures) != 1 || !strings.Contains(r.Failures[0], "lost 10 of 1000") || !strings.Contains(r.Failures[0], "10 at 700ms") {
		t.Fatalf("failures %q", r.Failures)
	}
	// Intervals 2-6 are 500 ms quiet: not a stall; 10-19 send nothing
	// for a second.
	if !strings.Contains(r.Failures[0], "1s from 1s") || strings.Contains(r.Failures[0], "from 200ms") {
		t.Errorf("stalls in %q", r.Failures[0])
	}
	r = &Result{Stream: &loadgen.Report{Sent: 1000, Received: 1000}}
	if r.judge(); len(r.Failures) != 0 {
		t.Errorf("a stream without loss failed: %q", r.Failures)
	}
}
