// Command engarde-faults runs the fault matrix: engarde under real
// WireGuard (wireguard-go) in two network namespaces joined by two links,
// a fixed-rate stream with sequence numbers through the tunnel, and one
// fault after another on the running stream (links down, flapping,
// deleted, black-holed, slow; the roles, WireGuard and DNS restarted or
// gone). It prints a table of what each row must hold, what was measured
// and PASS or FAIL, and exits 1 when a row fails. It needs root; as
// another user it says so and exits 0.
//
// Usage:
//
//	engarde-faults [-bin DIR] [-rows NAME,...] [-json FILE] [-list]
//
// The subcommands dns, relay and stream are the helpers it runs inside the
// namespaces.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		if f := helpers[os.Args[1]]; f != nil {
			if err := f(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "engarde-faults %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	os.Exit(matrix())
}

// helpers are the subcommands run inside the namespaces.
var helpers = map[string]func([]string) error{
	"dns":    dnsMain,
	"relay":  relayMain,
	"stream": streamMain,
}

// Options of a run.
type options struct {
	bin, rows, json string
	logs, traces    string
	list            bool
	rate, size      int
	steady          time.Duration
}

func matrix() int {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "`directory` with engarde-client, engarde-server, engarde-loadgen and wireguard-go")
	flag.StringVar(&o.rows, "rows", "", "run only these rows (comma-separated names; -list shows them)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to `file`")
	flag.StringVar(&o.logs, "logs", "", "save the logs of engarde, wireguard-go, the DNS server and the sink in `directory`")
	flag.StringVar(&o.traces, "traces", "", "save each row's packet trace (send times, RTTs) as JSON in `directory`")
	flag.BoolVar(&o.list, "list", false, "list the rows and exit")
	flag.IntVar(&o.rate, "rate", 1000, "the stream's packets per second")
	flag.IntVar(&o.size, "size", 200, "the stream's payload bytes")
	flag.DurationVar(&o.steady, "steady", 6*time.Second, "how long to measure the steady RTT")
	flag.Parse()
	all := rows()
	if o.list {
		for _, r := range all {
			fmt.Printf("%-20s %s\n", r.name, r.must)
		}
		return 0
	}
	sel, err := selectRows(all, o.rows)
	if err != nil {
		fmt.Fprintf(os.Stderr, "engarde-faults: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Println("engarde-faults: skipped: the fault matrix needs root (network namespaces, WireGuard interfaces)")
		return 0
	}
	if err := checkTools(o.bin); err != nil {
		fmt.Fprintf(os.Stderr, "engarde-faults: %v\n", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "engarde-faults: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	e, err := setup(o.bin, exe, o.logs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "engarde-faults: setting up: %v\n", err)
		return 1
	}
	res, err := run(ctx, e, o, sel)
	e.close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "engarde-faults: %v\n", err)
		return 1
	}
	res.Duration = time.Since(start)
	t := table(res)
	_ = t.WriteText(os.Stdout)
	if o.json != "" {
		if err := writeJSON(o.json, res); err != nil {
			fmt.Fprintf(os.Stderr, "engarde-faults: %v\n", err)
			return 1
		}
	}
	if ctx.Err() != nil {
		fmt.Println("interrupted")
		return 1
	}
	if res.Failed > 0 {
		fmt.Printf("%d of %d rows failed (%s)\n", res.Failed, len(res.Rows), res.Duration.Round(time.Second))
		return 1
	}
	fmt.Printf("all %d rows passed (%s)\n", len(res.Rows), res.Duration.Round(time.Second))
	return 0
}

// selectRows returns the rows named in list (comma-separated), in the
// matrix's order; all of them when list is empty.
func selectRows(all []row, list string) ([]row, error) {
	if list == "" {
		return all, nil
	}
	want := strings.Split(list, ",")
	var out []row
	for _, r := range all {
		if slices.Contains(want, r.name) {
			out = append(out, r)
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(all, func(r row) bool { return r.name == w }) {
			return nil, fmt.Errorf("-rows: no row %q (-list shows them)", w)
		}
	}
	return out, nil
}

// Result is a run of the matrix.
type Result struct {
	Rate  int   `json:"rate"`
	Size  int   `json:"size"`
	Bound Bound `json:"bound"`
	// SteadyMax and SteadySent describe the steady stream.
	SteadyMax  time.Duration `json:"steady_max_rtt_ns"`
	SteadySent int           `json:"steady_sent"`
	SteadyLost int           `json:"steady_lost"`
	// SteadyRef is the reference stream's p99.9 meanwhile.
	SteadyRef time.Duration `json:"steady_reference_p999_ns"`
	Rows      []RowResult   `json:"rows"`
	Failed    int           `json:"failed"`
	Duration  time.Duration `json:"duration_ns"`
}

// RowResult is one row's outcome.
type RowResult struct {
	Name    string   `json:"name"`
	Must    string   `json:"must"`
	Events  []Event  `json:"events"`
	Measure Measure  `json:"measure"`
	Spec    Spec     `json:"spec"`
	Backs   []Back   `json:"backs"`
	Pass    bool     `json:"pass"`
	Why     []string `json:"why,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	// Bound is the row's RTT bound (see rowBound).
	Bound Bound `json:"bound"`
	// Reference is the reference stream's measure (see stalled).
	Reference Measure `json:"reference"`
	// Start is when the row began (Unix nanoseconds), after its stream
	// was carried on every link.
	Start int64 `json:"start_unix_ns"`
	// Attempts is 2 when the row ran again (failed on latency alone), 0
	// otherwise.
	Attempts int `json:"attempts,omitempty"`
}

// A row that failed on latency alone runs once more, and passes only if
// that second attempt passes; the table says so, with the CPU time the
// hypervisor took from this VM (steal) during the first. This shared 2-core
// VM stalls for milliseconds now and then: such stalls failed rows of this
// build and of the one before it, with 1-2 s of steal over two or three
// rows, and once (in CI) with no steal at all and 10 packets held up by up
// to 10 ms. The reference stream, with fewer hops, does not always show
// them. A tunnel that holds packets up fails both attempts. A row that lost
// a packet never runs again.

// latencyOnly reports whether every reason a row failed is packets above
// its RTT bound.
func latencyOnly(why []string) bool {
	for _, w := range why {
		if !overBoundRE.MatchString(w) {
			return false
		}
	}
	return len(why) > 0
}

var overBoundRE = regexp.MustCompile(`^\d+ packets above `)

// stolen returns the CPU time the hypervisor has taken from this VM since
// it booted: the steal column of /proc/stat, in USER_HZ (1/100 s) ticks;
// 0 where there is none.
func stolen() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	n, _ := strconv.ParseInt(f[8], 10, 64)
	return time.Duration(n) * 10 * time.Millisecond
}

// run measures the steady RTT, then runs each row on a stream of its own.
func run(ctx context.Context, e *env, o options, sel []row) (*Result, error) {
	res := &Result{Rate: o.rate, Size: o.size}
	fmt.Printf("steady stream: %d pkt/s of %d bytes through WireGuard over engarde, %v\n", o.rate, o.size, o.steady)
	s, err := startStream(e.exe, e.tp.Client, sinkTarget(), o.rate, o.size, o.steady+2*time.Second)
	if err != nil {
		return nil, err
	}
	ref, err := startStream(e.exe, e.tp.Client, refTarget, o.rate, o.size, o.steady+2*time.Second)
	if err != nil {
		_, _ = s.stop()
		return nil, fmt.Errorf("reference stream: %w", err)
	}
	werr := e.waitCarrying(ctx, backPackets, 3*time.Second)
	from := time.Now().UnixNano()
	select {
	case <-time.After(o.steady):
	case <-ctx.Done():
	}
	tr, err := s.stop()
	rtr, rerr := ref.stop()
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, fmt.Errorf("reference stream: %w", rerr)
	}
	res.SteadyRef = measure(rtr, nil, from, 1<<63-1, Spec{}, Bound{}).P999
	if werr != nil {
		return nil, fmt.Errorf("steady stream: %w", werr)
	}
	steady := measure(tr, nil, from, 1<<63-1, Spec{}, Bound{})
	res.Bound = Bound{Steady: steadyP999(tr, from, from+int64(o.steady)), Factor: boundFactor, Floor: boundFloor, Share: boundShare}
	res.SteadyMax, res.SteadySent, res.SteadyLost = steady.MaxRTT, steady.Sent, steady.Lost
	fmt.Printf("steady: %d sent, %d lost, RTT p99.9 %s (the median of three windows' %s), max %s; bound %s; reference p99.9 %s\n", steady.Sent, steady.Lost, ms(steady.P999), ms(res.Bound.Steady), ms(steady.MaxRTT), ms(res.Bound.Limit()), ms(res.SteadyRef))
	if steady.Lost > 0 || steady.Sent == 0 {
		return nil, fmt.Errorf("the steady stream lost %d of %d packets: nothing to compare with", steady.Lost, steady.Sent)
	}

	for _, r := range sel {
		if ctx.Err() != nil {
			break
		}
		s0 := stolen()
		rr := runRow(ctx, e, o, r, res.Bound)
		if st := stolen() - s0; !rr.Pass && latencyOnly(rr.Why) && ctx.Err() == nil {
			// Maybe the host held this VM's CPUs: run the row once
			// more, and say so.
			first := rr
			rr = runRow(ctx, e, o, r, res.Bound)
			rr.Notes = append(rr.Notes, fmt.Sprintf("second attempt: the first failed (%s); the hypervisor took %s of this VM's CPU time (steal) during it", strings.Join(first.Why, "; "), st.Round(10*time.Millisecond)))
			rr.Attempts = 2
		}
		if !rr.Pass {
			res.Failed++
		}
		res.Rows = append(res.Rows, rr)
		verdict := "PASS"
		if !rr.Pass {
			verdict = "FAIL: " + strings.Join(rr.Why, "; ")
		}
		if rr.Attempts > 1 {
			verdict += " (" + rr.Notes[len(rr.Notes)-1] + ")"
		}
		fmt.Printf("  %-20s %s\n", rr.Name, verdict)
	}
	return res, nil
}

// runRow runs one row: the tunnel restored, a stream started and carried
// on every link, the row's faults, then the verdict.
func runRow(ctx context.Context, e *env, o options, r row, bound Bound) RowResult {
	rr := RowResult{Name: r.name, Must: r.must}
	fail := func(why string) RowResult {
		rr.Why = append(rr.Why, why)
		return rr
	}
	if err := e.restore(); err != nil {
		return fail("restoring the tunnel: " + err.Error())
	}
	s, err := startStream(e.exe, e.tp.Client, sinkTarget(), o.rate, o.size, r.max)
	if err != nil {
		return fail(err.Error())
	}
	ref, err := startStream(e.exe, e.tp.Client, refTarget, o.rate, o.size, r.max)
	if err != nil {
		_, _ = s.stop()
		return fail("reference stream: " + err.Error())
	}
	if err := e.waitCarrying(ctx, backPackets, 3*time.Second); err != nil {
		_, _ = s.stop()
		_, _ = ref.stop()
		return fail("before the fault: " + err.Error())
	}
	x := &rowRun{ctx: ctx, e: e, s: s, start: time.Now()}
	rr.Start = x.start.UnixNano()
	r.run(x)
	end := time.Now()
	x.wg.Wait()
	if ctx.Err() != nil {
		_, _ = s.stop()
		_, _ = ref.stop()
		rr.Events = x.events
		return fail("interrupted")
	}
	tr, err := s.stop()
	rtr, rerr := ref.stop()
	if rerr != nil {
		x.notes = append(x.notes, "no reference stream: "+rerr.Error())
		rtr = nil
	}
	rr.Events, rr.Spec, rr.Notes = x.events, x.spec, x.notes
	for _, b := range x.backs {
		rr.Backs = append(rr.Backs, *b)
	}
	if err != nil {
		return fail(err.Error())
	}
	if o.traces != "" {
		if err := writeJSON(filepath.Join(o.traces, r.name+".json"), tr); err != nil {
			x.notes = append(x.notes, "trace not saved: "+err.Error())
		}
	}
	if n := len(tr.Sent); n > 0 && tr.T0+tr.Sent[n-1] < end.UnixNano()-int64(500*time.Millisecond) {
		x.errs = append(x.errs, fmt.Sprintf("the stream stopped before the row ended (it runs at most %v)", r.max))
	}
	rr.Bound = rowBound(tr, rr.Start, x.events, bound)
	rr.Measure = measure(tr, rtr, rr.Start, 1<<63-1, x.spec, rr.Bound)
	rr.Reference = measure(rtr, nil, rr.Start, 1<<63-1, Spec{}, Bound{})
	rr.Pass, rr.Why = verdict(rr.Measure, x.spec, rr.Bound, rr.Backs, x.errs)
	return rr
}

// steadyP999 is the steady RTT p99.9 of the packets of tr sent in [from,
// to): the median of those of its three thirds, so that one burst of
// other work on the machine does not set the bound of the whole run.
func steadyP999(tr *Trace, from, to int64) time.Duration {
	var ps []time.Duration
	for k := range int64(3) {
		lo := from + k*(to-from)/3
		ps = append(ps, measure(tr, nil, lo, lo+(to-from)/3, Spec{}, Bound{}).P999)
	}
	slices.Sort(ps)
	return ps[1]
}

// rowBound is the RTT bound of a row: the run's, or the one the row's own
// packets before its first event give, whichever is larger. The machine's
// load changes from minute to minute, and a row is judged against the
// tunnel as it was just before the fault.
func rowBound(tr *Trace, start int64, events []Event, run Bound) Bound {
	if len(events) == 0 {
		return run
	}
	pre := measure(tr, nil, start, events[0].At-int64(inFlight), Spec{}, Bound{})
	b := run
	if pre.Judged > 0 && pre.P999 > b.Steady {
		b.Steady = pre.P999
	}
	return b
}

// writeJSON writes v, indented, to the file called name.
func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if dir := filepath.Dir(name); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return errors.Join(os.WriteFile(name, append(b, '\n'), 0o644))
}
