package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// synth is a trace of n packets, one per millisecond from t0, each with
// rtt(i) (0: lost).
func synth(t0 int64, n int, rtt func(i int) time.Duration) *Trace {
	tr := &Trace{T0: t0, Sent: make([]int64, n), RTT: make([]int64, n)}
	for i := range n {
		tr.Sent[i] = int64(i) * int64(time.Millisecond)
		tr.RTT[i] = int64(rtt(i))
	}
	return tr
}

const t0 = int64(1_000_000_000_000)

// at is the Unix time of packet i of a synth trace.
func at(i int) int64 { return t0 + int64(i)*int64(time.Millisecond) }

func TestMeasure(t *testing.T) {
	bound := Bound{Steady: time.Millisecond, Factor: 2, Floor: 2 * time.Millisecond, Share: 0.001}
	if got := bound.Limit(); got != 3*time.Millisecond {
		t.Fatalf("Limit %v, want 3ms (1 ms + 2 ms beats 2 x 1 ms)", got)
	}
	steady := func(int) time.Duration { return time.Millisecond }
	for _, tc := range []struct {
		name       string
		tr         *Trace
		from       int64
		spec       Spec
		sent, lost int
		outage     int
		over       int
		resume     time.Duration
		maxRTT     time.Duration
		pass       bool
	}{
		{name: "healthy", tr: synth(t0, 5000, steady), from: t0, sent: 5000, maxRTT: time.Millisecond, pass: true},
		{
			// Packets before the row started are not its business.
			name: "loss before the row", from: at(1000),
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i < 10 {
					return 0
				}
				return time.Millisecond
			}),
			sent: 4000, maxRTT: time.Millisecond, pass: true,
		},
		{
			name: "one lost while a link was up", from: t0,
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i == 2500 {
					return 0
				}
				return time.Millisecond
			}),
			sent: 5000, lost: 1, maxRTT: time.Millisecond,
		},
		{
			// Four late packets in 5000 are within the 0.1% allowed
			// (5); six are not.
			name: "a few late, within the share", from: t0,
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i >= 100 && i < 104 {
					return 50 * time.Millisecond
				}
				return time.Millisecond
			}),
			sent: 5000, over: 4, maxRTT: 50 * time.Millisecond, pass: true,
		},
		{
			name: "a stall", from: t0,
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i >= 3000 && i < 3006 {
					return 50 * time.Millisecond
				}
				return time.Millisecond
			}),
			sent: 5000, over: 6, maxRTT: 50 * time.Millisecond,
		},
		{
			// Every link down from 1000 to 2000; the first echo after
			// 2000 is packet 2050's: its loss and what came before are
			// the outage's; resumed 51 ms after the path came back.
			name: "outage, resumed in time", from: t0,
			spec: Spec{OutageFrom: at(1000), BackAt: at(2000), ResumeWithin: 200 * time.Millisecond},
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i >= 990 && i < 2050 {
					return 0
				}
				return time.Millisecond
			}),
			sent: 5000, outage: 1060, resume: 51 * time.Millisecond, maxRTT: time.Millisecond, pass: true,
		},
		{
			// A packet lost after the first echo is lost while a
			// link was up.
			name: "outage, a loss after the resumption", from: t0,
			spec: Spec{OutageFrom: at(1000), BackAt: at(2000), ResumeWithin: 200 * time.Millisecond},
			tr: synth(t0, 5000, func(i int) time.Duration {
				if (i >= 1000 && i < 2050) || i == 2100 {
					return 0
				}
				return time.Millisecond
			}),
			sent: 5000, lost: 1, outage: 1050, resume: 51 * time.Millisecond, maxRTT: time.Millisecond,
		},
		{
			name: "outage, resumed too late", from: t0,
			spec: Spec{OutageFrom: at(1000), BackAt: at(2000), ResumeWithin: 200 * time.Millisecond},
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i >= 1000 && i < 2500 {
					return 0
				}
				return time.Millisecond
			}),
			sent: 5000, outage: 1500, resume: 501 * time.Millisecond, maxRTT: time.Millisecond,
		},
		{
			name: "outage, never resumed", from: t0,
			spec: Spec{OutageFrom: at(1000), BackAt: at(2000), ResumeWithin: time.Second},
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i >= 1000 {
					return 0
				}
				return time.Millisecond
			}),
			sent: 5000, outage: 4000, resume: -1, maxRTT: time.Millisecond,
		},
		{
			// Packets queued through the outage and echoed late are
			// the outage's, not the bound's (packet 2000, sent as the
			// path came back, is the first echo after it).
			name: "outage, late echoes of queued packets", from: t0,
			spec: Spec{OutageFrom: at(1000), BackAt: at(2000), ResumeWithin: 200 * time.Millisecond},
			tr: synth(t0, 5000, func(i int) time.Duration {
				if i >= 1000 && i < 2000 {
					return time.Duration(2010-i) * time.Millisecond
				}
				return time.Millisecond
			}),
			sent: 5000, resume: time.Millisecond, maxRTT: time.Millisecond, pass: true,
		},
		{
			// Round trips of 300 ms just before the outage: what was
			// sent in the 300 ms before it and lost is the outage's.
			name: "outage after slow round trips", from: t0,
			spec: Spec{OutageFrom: at(1000), BackAt: at(2000), ResumeWithin: 200 * time.Millisecond},
			tr: synth(t0, 5000, func(i int) time.Duration {
				switch {
				case i >= 700 && i < 2050:
					return 0
				case i >= 600 && i < 700:
					return 300 * time.Millisecond
				}
				return time.Millisecond
			}),
			sent: 5000, outage: 1350, resume: 51 * time.Millisecond, maxRTT: 300 * time.Millisecond, over: 100,
		},
		{name: "nothing sent", tr: synth(t0, 100, steady), from: at(200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := measure(tc.tr, nil, tc.from, 1<<63-1, tc.spec, bound)
			if m.Sent != tc.sent || m.Lost != tc.lost || m.LostOutage != tc.outage || m.Over != tc.over || m.MaxRTT != tc.maxRTT {
				t.Errorf("sent %d, lost %d, outage %d, over %d, max %v; want %d, %d, %d, %d, %v",
					m.Sent, m.Lost, m.LostOutage, m.Over, m.MaxRTT, tc.sent, tc.lost, tc.outage, tc.over, tc.maxRTT)
			}
			if tc.spec.OutageFrom != 0 && m.Resume != tc.resume {
				t.Errorf("resume %v, want %v", m.Resume, tc.resume)
			}
			pass, why := verdict(m, tc.spec, bound, nil, nil)
			if pass != tc.pass {
				t.Errorf("pass %v (%q), want %v", pass, why, tc.pass)
			}
		})
	}
}

func TestVerdictBacks(t *testing.T) {
	m := Measure{Sent: 100, Judged: 100}
	for _, tc := range []struct {
		name  string
		backs []Back
		errs  []string
		pass  bool
		why   string
	}{
		{"in time", []Back{{Link: "eth-a", Within: time.Second, After: 30 * time.Millisecond}}, nil, true, ""},
		{"late", []Back{{Link: "eth-a", Within: time.Second, After: 1030 * time.Millisecond}}, nil, false, "eth-a carried traffic after 1030 ms"},
		{"never", []Back{{Link: "eth-b", Within: time.Second, After: -1}}, nil, false, "eth-b carried nothing"},
		{"a fault that could not be made", nil, []string{"eth-a down: no such device"}, false, "no such device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass, why := verdict(m, Spec{}, Bound{Steady: time.Millisecond, Factor: 2, Share: 0.001}, tc.backs, tc.errs)
			if pass != tc.pass || (tc.why != "" && !strings.Contains(strings.Join(why, "; "), tc.why)) {
				t.Errorf("pass %v, why %q; want %v with %q", pass, why, tc.pass, tc.why)
			}
		})
	}
}

// TestRowBound checks that a row noisier before its fault than the run's
// steady stream is judged against its own packets, and a quieter one
// against the run's.
func TestRowBound(t *testing.T) {
	run := Bound{Steady: time.Millisecond, Factor: 2, Floor: time.Millisecond, Share: 0.001}
	noisy := synth(t0, 3000, func(i int) time.Duration { return time.Duration(1+i%10) * time.Millisecond })
	if b := rowBound(noisy, t0, []Event{{At: at(1000)}}, run); b.Steady != 10*time.Millisecond {
		t.Errorf("noisy row: steady %v, want 10ms", b.Steady)
	}
	quiet := synth(t0, 3000, func(int) time.Duration { return 500 * time.Microsecond })
	if b := rowBound(quiet, t0, []Event{{At: at(1000)}}, run); b != run {
		t.Errorf("quiet row: %+v, want the run's %+v", b, run)
	}
	if b := rowBound(noisy, t0, nil, run); b != run {
		t.Errorf("row without events: %+v, want the run's", b)
	}
}

func TestQuantile(t *testing.T) {
	xs := make([]time.Duration, 1000)
	for i := range xs {
		xs[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500}, {0.999, 999}, {1, 1000}, {0, 1}} {
		if got := quantile(xs, tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}

func TestSelectRows(t *testing.T) {
	all := rows()
	got, err := selectRows(all, "dns-outage,link-a-down-up")
	if err != nil || len(got) != 2 || got[0].name != "link-a-down-up" || got[1].name != "dns-outage" {
		t.Errorf("selected %v, %v; want link-a-down-up, dns-outage in the matrix's order", names(got), err)
	}
	if _, err := selectRows(all, "link-a-down-up,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown row: %v", err)
	}
	if got, _ := selectRows(all, ""); len(got) != len(all) {
		t.Errorf("no -rows selected %d rows, want all %d", len(got), len(all))
	}
	seen := map[string]bool{}
	for _, r := range all {
		if seen[r.name] || r.must == "" || r.max <= 0 || r.run == nil {
			t.Errorf("row %q: duplicate or incomplete", r.name)
		}
		seen[r.name] = true
	}
}

func names(rs []row) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}

// TestTable checks that the table shows each row's verdict with its
// reasons, and the resume time only where a row has an outage.
func TestTable(t *testing.T) {
	res := &Result{Rate: 1000, Size: 200, Bound: Bound{Steady: time.Millisecond, Factor: 2, Floor: 2 * time.Millisecond, Share: 0.001},
		Rows: []RowResult{
			{Name: "link-a-down-up", Must: "no loss", Pass: true, Start: t0,
				Measure: Measure{Sent: 5000, Judged: 5000, MaxRTT: 2 * time.Millisecond, WorstAt: t0 + int64(1500*time.Millisecond)},
				Backs:   []Back{{Link: "eth-a", After: 25 * time.Millisecond}}},
			{Name: "server-restart", Must: "back in 1 s", Why: []string{"resumed after 15.2 s, more than 1000 ms"}, Start: t0,
				Spec:    Spec{OutageFrom: t0 + 1, BackAt: t0 + 2},
				Measure: Measure{Sent: 20000, Judged: 5000, LostOutage: 15000, Resume: 15200 * time.Millisecond, Lost: 3, FirstLost: t0 + int64(17*time.Second), LastLost: t0 + int64(18*time.Second)}},
		}}
	var b bytes.Buffer
	if err := table(res).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"PASS", "eth-a 25 ms", "2.0 ms at 1.5 s", "FAIL: resumed after 15.2 s", "3 (17.0-18.0 s)", "15000"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var link string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "link-a-down-up") {
			link = l
		}
	}
	if strings.Contains(link, "never") {
		t.Errorf("a row without an outage shows a resume time: %s", link)
	}
}

// TestStalled checks that a spike the reference stream shares is the
// machine's, and one it does not share is the tunnel's.
func TestStalled(t *testing.T) {
	bound := Bound{Steady: time.Millisecond, Factor: 2, Floor: 2 * time.Millisecond, Share: 0}
	spike := func(from, to int, d time.Duration) func(int) time.Duration {
		return func(i int) time.Duration {
			if i >= from && i < to {
				return d
			}
			return time.Millisecond
		}
	}
	tunnel := synth(t0, 3000, spike(1000, 1050, 60*time.Millisecond))
	for _, tc := range []struct {
		name           string
		ref            *Trace
		over, machined int
	}{
		{"no reference", nil, 50, 0},
		{"reference quiet", synth(t0, 3000, func(int) time.Duration { return 100 * time.Microsecond }), 50, 0},
		{"reference stalled as long", synth(t0, 3000, spike(1000, 1050, 50*time.Millisecond)), 0, 50},
		// Stalled for 10 ms only: less than half of the 57 ms beyond
		// the bound.
		{"reference stalled briefly", synth(t0, 3000, spike(1000, 1050, 10*time.Millisecond)), 50, 0},
		{"reference stalled elsewhere", synth(t0, 3000, spike(2000, 2050, 60*time.Millisecond)), 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := measure(tunnel, tc.ref, t0, 1<<63-1, Spec{}, bound)
			if m.Over != tc.over || m.Stalled != tc.machined {
				t.Errorf("over %d, machine %d; want %d, %d", m.Over, m.Stalled, tc.over, tc.machined)
			}
		})
	}
}

// TestSteadyP999 checks that one burst of noise in a third of the steady
// stream does not set the run's steady p99.9.
func TestSteadyP999(t *testing.T) {
	tr := synth(t0, 3000, func(i int) time.Duration {
		switch {
		case i >= 1000 && i < 1100:
			return 100 * time.Millisecond // a burst in the second third
		case i >= 2000:
			return 2 * time.Millisecond
		}
		return time.Millisecond
	})
	if got := steadyP999(tr, t0, at(3000)); got != 2*time.Millisecond {
		t.Errorf("steady p99.9 %v, want 2ms (the median of 1 ms, 100 ms and 2 ms)", got)
	}
}

// TestLatencyOnly: a row runs again under steal only when every reason it
// failed is latency, in verdict's own words; a loss or a link that did
// not come back never does.
func TestLatencyOnly(t *testing.T) {
	bound := Bound{Steady: time.Millisecond, Factor: 2, Share: 0.001}
	for _, tc := range []struct {
		name string
		m    Measure
		back []Back
		want bool
	}{
		{"over the bound", Measure{Sent: 1000, Judged: 1000, Over: 50}, nil, true},
		{"lost", Measure{Sent: 1000, Judged: 990, Lost: 10}, nil, false},
		{"over and lost", Measure{Sent: 1000, Judged: 990, Lost: 10, Over: 50}, nil, false},
		{"over and a link late", Measure{Sent: 1000, Judged: 1000, Over: 50}, []Back{{Link: "eth-a", Within: time.Second, After: -1}}, false},
	} {
		pass, why := verdict(tc.m, Spec{}, bound, tc.back, nil)
		if pass {
			t.Fatalf("%s: the verdict passed", tc.name)
		}
		if got := latencyOnly(why); got != tc.want {
			t.Errorf("%s: latencyOnly(%q) = %v, want %v", tc.name, why, got, tc.want)
		}
	}
	if latencyOnly(nil) {
		t.Error("a row that failed for no reason given runs again")
	}
	if s := stolen(); s < 0 {
		t.Errorf("stolen() = %v", s)
	}
}
