package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
	"github.com/engarde-project/engarde/bench/topo"
)

// search returns a Search whose result is pps.
func search(pair int, pps float64) *Search {
	return &Search{Pair: pair, Best: -1, PPS: report.Value(pps), Gbps: report.Value(pps * 1400 * 8 / 1e9), CPUPerPacket: 5,
		FlatOut: Trial{Report: &loadgen.Report{DeliveredPPS: 2 * pps}}}
}

func TestThroughputPairs(t *testing.T) {
	direct := &ThroughputResult{Path: directPath, Size: 1400, Searches: []*Search{search(0, 100), search(1, 200), search(2, 50)}}
	direct.summarize(nil)
	if direct.PPS != 100 || direct.Ratio.OK() || direct.Ratios != nil {
		t.Errorf("direct: median %v, ratio %v %v; want 100 and no ratio", direct.PPS, direct.Ratio, direct.Ratios)
	}
	if direct.FlatOutPPS != 200 {
		t.Errorf("direct flat-out median %v, want 200", direct.FlatOutPPS)
	}

	// Paired: ratios pair by pair (80/100, 100/200, 50/50), not over the
	// medians (80/100).
	e := &ThroughputResult{Path: "engarde/mmsg", Size: 1400, Paired: true, Searches: []*Search{search(0, 80), search(1, 100), search(2, 50)}}
	e.summarize(direct)
	want := []report.Value{0.8, 0.5, 1}
	for i := range want {
		if e.Ratios[i] != want[i] {
			t.Errorf("ratio %d = %v, want %v", i, e.Ratios[i], want[i])
		}
	}
	if e.Ratio != 0.8 || !e.Paired {
		t.Errorf("median ratio %v (paired %v), want 0.8, paired", e.Ratio, e.Paired)
	}

	// One run of another backend compares with direct's median.
	std := &ThroughputResult{Path: "engarde/std", Size: 1400, Searches: []*Search{search(0, 30)}}
	std.summarize(direct)
	if std.Ratio != 0.3 || std.Paired {
		t.Errorf("std: ratio %v (paired %v), want 0.3 against the median, unpaired", std.Ratio, std.Paired)
	}

	// A failed search does not poison the median.
	failed := &Search{Best: -1, PPS: report.NA, Gbps: report.NA, CPUPerPacket: report.NA}
	x := &ThroughputResult{Path: "engarde/x", Size: 1400, Paired: true, Searches: []*Search{search(0, 90), failed, search(2, 40)}}
	x.summarize(direct)
	if x.PPS != 65 || math.Abs(float64(x.Ratio)-0.85) > 1e-9 {
		t.Errorf("with a failed search: median %v, ratio %v; want 65 and 0.85", x.PPS, x.Ratio)
	}
	if _, err := json.Marshal(x); err != nil {
		t.Errorf("encoding a result with missing values: %v", err)
	}
}

func TestLatencySummary(t *testing.T) {
	r := &LatencyResult{Trials: []Trial{
		{Report: &loadgen.Report{RTTP50: 50, RTTP99: 300, RTTP999: 900, RTTMax: 2000}, CPUPerPacket: 10},
		{Report: &loadgen.Report{RTTP50: 40, RTTP99: 100, RTTP999: 500, RTTMax: 900}, CPUPerPacket: report.NA},
		{Error: "generator: exit status 1", CPUPerPacket: report.NA},
		{Report: &loadgen.Report{RTTP50: 60, RTTP99: 200, RTTP999: 700, RTTMax: 1000, LossPercent: 0.5}, CPUPerPacket: 20},
	}}
	r.summarize()
	if r.P50 != 50 || r.P99 != 200 || r.P999 != 700 || r.Max != 1000 || r.LossPercent != 0 || r.CPUPerPacket != 15 {
		t.Errorf("medians %+v", r)
	}
}

func TestWindow(t *testing.T) {
	step := 100 * time.Millisecond
	var series []loadgen.Interval
	for k := range 10 {
		iv := loadgen.Interval{Start: time.Duration(k) * step, Received: 100, RTTMax: float64(100 * (k + 1)), Lost: uint64(k % 2)}
		if k == 5 {
			iv.Received, iv.RTTMax, iv.Lost = 0, 0, 100
		}
		series = append(series, iv)
	}
	for _, tc := range []struct {
		from, d  time.Duration
		wantRTT  float64 // NaN: nothing received
		wantLost uint64
	}{
		{200 * time.Millisecond, 200 * time.Millisecond, 400, 1}, // intervals 2, 3
		{250 * time.Millisecond, 100 * time.Millisecond, 400, 1}, // straddles 2 and 3
		{0, 50 * time.Millisecond, 100, 0},                       // inside interval 0
		{900 * time.Millisecond, time.Second, 1000, 1},           // past the end
		{500 * time.Millisecond, 100 * time.Millisecond, math.NaN(), 100},
		{400 * time.Millisecond, 200 * time.Millisecond, 500, 100},
		{2 * time.Second, 500 * time.Millisecond, math.NaN(), 0}, // beyond the series
		{500 * time.Millisecond, 0, math.NaN(), 0},               // empty window
	} {
		rtt, lost := window(series, step, tc.from, tc.d)
		if !(float64(rtt) == tc.wantRTT || !rtt.OK() && math.IsNaN(tc.wantRTT)) || lost != tc.wantLost {
			t.Errorf("window(%v, %v) = %v µs, %d lost; want %v, %d", tc.from, tc.d, rtt, lost, tc.wantRTT, tc.wantLost)
		}
	}
}

func TestFailoverAnalyze(t *testing.T) {
	var series []loadgen.Interval
	for k := range 80 {
		iv := loadgen.Interval{Start: time.Duration(k) * 100 * time.Millisecond, Sent: 1000, Received: 1000, RTTMax: 200}
		switch k {
		case 21: // just after eth-a goes down at 2 s
			iv.RTTMax = 3000
		case 66: // after eth-b goes down at 6.5 s
			iv.RTTMax, iv.Lost, iv.Received = 900, 5, 995
		case 12:
			iv.RTTMax = 400
		}
		series = append(series, iv)
	}
	f := &FailoverResult{Events: fullPlan().Failover.events(), Trial: Trial{Report: &loadgen.Report{Sent: 80000, Lost: 5, RTTMax: 3000, Series: series}}}
	f.analyze()
	if f.Lost != 5 || f.MaxRTT != 3000 {
		t.Errorf("totals: %d lost, max %v", f.Lost, f.MaxRTT)
	}
	if len(f.Windows) != 2 || f.Windows[0].Event != "eth-a down" || f.Windows[0].MaxRTT != 3000 || f.Windows[1].Lost != 5 {
		t.Errorf("windows %+v", f.Windows)
	}
	if f.SpikeRTT != 3000 || f.SteadyMaxRTT != 400 {
		t.Errorf("spike %v, steady max %v; want 3000, 400", f.SpikeRTT, f.SteadyMaxRTT)
	}
}

func TestExpectedLoss(t *testing.T) {
	for _, tc := range []struct {
		p     float64
		links int
		want  float64
	}{
		{5, 1, 9.75},
		{5, 2, 0.4994},
		{0, 2, 0},
	} {
		if got := expectedLoss(tc.p, tc.links); math.Abs(got-tc.want) > 1e-3 {
			t.Errorf("expectedLoss(%v, %d) = %v, want %v", tc.p, tc.links, got, tc.want)
		}
	}
}

func TestSlowRate(t *testing.T) {
	if got := slowRate(300, 1400); got != 26786 {
		t.Errorf("slowRate(300, 1400) = %d, want 26786", got)
	}
}

func TestSlowSummary(t *testing.T) {
	tr := func(lost uint64, p50 float64) Trial {
		return Trial{Report: &loadgen.Report{Sent: 1000, Lost: lost, LossPercent: float64(lost) / 10, RTTP50: p50, RTTP99: 2 * p50, DeliveredGbps: 0.3}}
	}
	r := &SlowResult{Limited: []Trial{tr(0, 110), tr(2, 100), tr(0, 130)}, Unlimited: []Trial{tr(0, 100), tr(0, 100), tr(1, 90)}}
	r.summarize()
	if r.LimitedLost != 0 || r.LimitedP50 != 110 || r.UnlimitedP50 != 100 || math.Abs(float64(r.P50Ratio)-1.1) > 1e-9 || r.DeliveredRatio != 1 {
		t.Errorf("summary %+v", r)
	}
}

// sampleResults is a small complete run for the writers and the targets.
func sampleResults() *Results {
	r := &Results{Plan: fullPlan(), Mode: "namespaces", Env: Env{Date: time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC), CPUs: 2}}
	direct := &ThroughputResult{Path: directPath, Size: 1400, Searches: []*Search{search(0, 50000), search(1, 52000), search(2, 48000)}}
	direct.summarize(nil)
	e := &ThroughputResult{Path: "engarde/mmsg", Size: 1400, Paired: true, Searches: []*Search{search(0, 47000), search(1, 48000), search(2, 40000)}}
	e.summarize(direct)
	r.Throughput = []*ThroughputResult{direct, e}
	for _, p := range []string{directPath, "engarde/mmsg"} {
		for _, rate := range []int{2000, 10000} {
			l := &LatencyResult{Path: p, Rate: rate, Size: 1400, Trials: []Trial{{Report: &loadgen.Report{RTTP50: 50, RTTP90: 80, RTTP99: 150, RTTP999: 400, RTTMax: 900}}}}
			if p != directPath {
				l.Trials[0].Report.RTTP99 = 300 // 2x direct: the limit
				if rate == 2000 {
					l.Trials[0].Report.RTTP50 = 160 // 3.2x direct
				}
			}
			l.summarize()
			r.Latency = append(r.Latency, l)
		}
	}
	f := &FailoverResult{Path: "engarde/mmsg", Rate: 10000, Events: fullPlan().Failover.events(), SteadyP999: 400,
		Trial: Trial{Report: &loadgen.Report{Sent: 80000, Duration: 8 * time.Second, Series: []loadgen.Interval{
			{Start: 0, Received: 1000, RTTMax: 200}, {Start: 2 * time.Second, Received: 1000, RTTMax: 350}}}}}
	f.analyze()
	r.Failover = []*FailoverResult{f}
	s := &SlowResult{Path: "engarde/mmsg", Limit: "100mbit", OfferedMbps: 300, Rate: 26786, Capacity: 40000,
		Limited: []Trial{{Report: &loadgen.Report{RTTP50: 100}}}, Unlimited: []Trial{{Report: &loadgen.Report{RTTP50: 100}}}}
	s.summarize()
	r.Slow = []*SlowResult{s}
	ot := func(rate int, received, reordered uint64) Trial {
		return Trial{Rate: rate, Report: &loadgen.Report{Sent: received, Received: received, Reordered: reordered}}
	}
	r.Order = []*OrderResult{
		newOrderResult("engarde/mmsg", condEqual, 0, ot(50000, 200000, 0)),
		newOrderResult(directPath, condDirect, 0, ot(50000, 200000, 0)),
		newOrderResult("engarde/mmsg", "link B +5ms each way", 5*time.Millisecond, ot(50000, 200000, 300)),
	}
	r.Order[2].Relay = &topo.RelayStats{Sources: 1, Forward: 200000, Back: 199000, Dropped: 12}
	r.Scaling = &ScalingResult{Backend: "mmsg", Size: 1400, CPUs: 2, Runs: []ScalingRun{{GOMAXPROCS: "2", Search: search(0, 36000)}, {Search: search(0, 40000), Procs: 1}}}
	r.Scaling.Ratio = ratio(r.Scaling.Runs[0].Search.PPS, r.Scaling.Runs[1].Search.PPS)
	r.WireGuard = sampleWireGuard()
	r.Targets = evaluate(r)
	return r
}

// sampleWireGuard is three rounds of the WireGuard scenario.
func sampleWireGuard() *WireGuardResult {
	w := &WireGuardResult{Backend: "mmsg"}
	for round, x := range [][3]float64{{2.5, 2.2, 2.0}, {2.4, 2.3, 2.1}, {2.6, 2.1, 2.2}} {
		retr := [3]int{0, 100 + 50*round, round}
		for i, cfg := range wgConfigs {
			w.Runs = append(w.Runs, IperfRun{Path: "p", Config: cfg, Round: round, Gbps: x[i], Retransmits: retr[i],
				CPU: map[string]float64{"wireguard-go client": 60, "wireguard-go server": 60, "engarde-client": 20, "engarde-server": 20}})
		}
	}
	w.summarize()
	return w
}

func TestEvaluate(t *testing.T) {
	r := sampleResults()
	status := map[string]string{}
	for _, x := range r.Targets {
		status[x.Name] = x.Status
	}
	for name, want := range map[string]string{
		"engarde/mmsg: RFC 2544 throughput, 1400 B, vs direct":                          "pass", // median of 0.94, 0.92, 0.83
		"engarde/mmsg: client + server CPU per packet round trip, 1400 B, at that rate": "miss", // 5 > 3
		"engarde/mmsg: RTT p50 at 2000 pkt/s":                                           "miss", // 160 > 3 x 50
		"engarde/mmsg: RTT p50 at 10000 pkt/s":                                          "pass",
		"engarde/mmsg: RTT p99 at 2000 pkt/s":                                           "pass", // 300 <= 2 x 150
		"engarde/mmsg: failover, packets lost":                                          "pass",
		"engarde/mmsg: failover, RTT after a link goes down":                            "pass", // 350 <= 400
		"engarde/mmsg: slow link, packets lost":                                         "pass",
		"engarde/mmsg: slow link, RTT p50 vs no limit":                                  "pass",
		"engarde/mmsg: order, first copies out of order, equal links":                   "pass",
		"engarde/mmsg: order, first copies out of order, link B +5ms each way":          "miss", // 1500 > 1000 per million
		"WireGuard over engarde/mmsg, both links vs one link (eth-b down)":              "pass", // 2.2 >= 2.1
		"WireGuard over engarde/mmsg, both links vs WireGuard alone":                    "miss", // 2.2 / 2.5 < 0.9
		"WireGuard over engarde/mmsg, TCP retransmissions, both links vs one link":      "miss", // 150 > 1
	} {
		if status[name] != want {
			t.Errorf("%s: %q, want %q", name, status[name], want)
		}
	}
	if len(r.Targets) != 15 {
		t.Errorf("%d targets, want 15 (std and 64 B were not measured)", len(r.Targets))
	}

	// An order trial with a first copy out of order misses the target
	// of 0 with equal links.
	r.Order[0] = newOrderResult("engarde/mmsg", condEqual, 0, Trial{Rate: 50000, Report: &loadgen.Report{Received: 200000, Reordered: 1}})
	for _, x := range evaluate(r) {
		if x.Name == "engarde/mmsg: order, first copies out of order, equal links" && x.Status != "miss" {
			t.Errorf("one first copy out of order: %q, want miss", x.Status)
		}
	}
	// Without the WireGuard one-link runs, its targets are not measured.
	r.WireGuard = &WireGuardResult{Backend: "mmsg", Runs: r.WireGuard.Runs[:2]}
	r.WireGuard.summarize()
	for _, x := range evaluate(r) {
		if strings.Contains(x.Name, "vs one link") && x.Status != "n/a" {
			t.Errorf("%s without one-link runs: %q, want n/a", x.Name, x.Status)
		}
	}
}

func TestOrderResult(t *testing.T) {
	o := newOrderResult("engarde/mmsg", condEqual, 0, Trial{Rate: 50000, Report: &loadgen.Report{Received: 250000, Reordered: 5}})
	if o.PerMillion != 20 || o.Received != 250000 || o.Reordered != 5 {
		t.Errorf("%+v, want 20 per million", o)
	}
	failed := newOrderResult("engarde/mmsg", condEqual, 0, Trial{Rate: 50000, Error: "generator: exit status 1"})
	if failed.PerMillion.OK() {
		t.Errorf("a failed trial has %v per million, want none", failed.PerMillion)
	}
	var b strings.Builder
	tb := orderTable([]*OrderResult{o, failed, {Path: "engarde/mmsg", Condition: "link B +5ms each way", Error: "cannot start the relay"}})
	if err := tb.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| engarde/mmsg | equal links | 50000 | 250000 | 5 | 20 | 0.000% |", "failed: generator: exit status 1", "failed: cannot start the relay"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("order table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	r := sampleResults()
	r.Skipped = []Skip{{scWireGuard, "wg is not installed"}}
	var b strings.Builder
	if err := r.writeMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"# engarde benchmark", "### Targets", "### Throughput, 1400-byte payloads", "### Latency at fixed rates",
		"](latency.svg)", "### Failover", "](failover.svg)", "### Slow link", "## Not measured", "- wireguard: wg is not installed", "## Method", "| engarde/mmsg |",
		"### Order: first copies out of sequence order", "| engarde/mmsg | link B +5ms each way | 50000 | 200000 | 300 | 1500 |", "12 found its delay line full and 0 failed to send. Its CPU time was not measured.",
		"### Scaling: engarde/mmsg's RFC 2544 throughput by GOMAXPROCS, 1400 B", "| 2 | 36000 |", "| the daemons' own (1) | 40000 |", "| 90% |",
		"### Real WireGuard", "| median: over engarde, eth-b down |  | 2.100 | 1 |", "| both links / one link |  | 104.8% |",
		"over the packets delivered back to the generator"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report.json: %v", err)
	}
}

func TestCharts(t *testing.T) {
	r := sampleResults()
	for name, c := range map[string]*report.Chart{"failover": failoverChart(r.Failover), "latency": latencyChart(r.Latency), "empty": latencyChart(nil)} {
		var b strings.Builder
		if err := c.WriteSVG(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.HasPrefix(b.String(), "<svg") || !strings.HasSuffix(b.String(), "</svg>\n") {
			t.Errorf("%s: not an SVG document", name)
		}
	}
	if got := len(latencyChart(r.Latency).Panels); got != 2 {
		t.Errorf("latency chart has %d panels, want one per rate (2)", got)
	}
}

// TestGomaxprocsRE reads the daemons' choice from their start-up line, in
// either log format.
func TestGomaxprocsRE(t *testing.T) {
	for line, want := range map[string]string{
		`{"level":"info","version":"v0.0.0-dev","backend":"mmsg","gomaxprocs":1,"message":"engarde-client starting"}`: "1",
		`12:00:00 INF engarde-client starting backend=mmsg gomaxprocs=16 version=v0.1.0`:                              "16",
	} {
		m := gomaxprocsRE.FindStringSubmatch(line)
		if m == nil || m[1] != want {
			t.Errorf("%s: got %v, want %s", line, m, want)
		}
	}
}
