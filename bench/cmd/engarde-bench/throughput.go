package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
)

// Search is one RFC 2544 throughput search over a path: a flat-out trial
// that sets the bracket, then a bisection.
type Search struct {
	// Pair is the repetition this search belongs to (0-based).
	Pair int `json:"pair"`
	// FlatOut is the trial at full speed; its delivered rate is reported
	// beside the search result, and sets the bracket.
	FlatOut Trial `json:"flat_out"`
	// Lo and Hi are the initial bracket in packets per second.
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
	// Trials are the search's trials in order; Best indexes the passing
	// one with the highest rate, -1 when none passed.
	Trials []Trial `json:"trials,omitempty"`
	Best   int     `json:"best"`
	// PPS, Gbps and CPUPerPacket are the best trial's delivered rate,
	// payload throughput and CPU per packet: the search's result.
	PPS          report.Value `json:"pps"`
	Gbps         report.Value `json:"gbps"`
	CPUPerPacket report.Value `json:"cpu_us_per_packet"`
}

// ThroughputResult gathers the searches of one path at one size.
type ThroughputResult struct {
	Path string `json:"path"`
	Size int    `json:"size"`
	// FlatOnly says no search ran: the flat-out rate is the result
	// (loopback mode).
	FlatOnly bool      `json:"flat_only,omitempty"`
	Searches []*Search `json:"searches"`
	// Medians over the searches.
	PPS          report.Value `json:"pps"`
	Gbps         report.Value `json:"gbps"`
	CPUPerPacket report.Value `json:"cpu_us_per_packet"`
	FlatOutPPS   report.Value `json:"flat_out_pps"`
	// Ratios are PPS over the direct path's, per pair when Paired,
	// otherwise against the direct path's median; Ratio is their median.
	// Missing for the direct path itself.
	Ratios []report.Value `json:"ratios,omitempty"`
	Ratio  report.Value   `json:"ratio"`
	Paired bool           `json:"paired"`
}

// searchPath measures one path's throughput: flat out, then the search
// (unless flatOnly). It prints one line as it goes.
func (b *bench) searchPath(p *path, size, pair int, flatOnly bool) *Search {
	s := &Search{Pair: pair, Best: -1, PPS: report.NA, Gbps: report.NA, CPUPerPacket: report.NA}
	fmt.Fprintf(b.out, "  %-13s %5d B #%d: ", p.name, size, pair+1)
	defer fmt.Fprintln(b.out)
	s.FlatOut = b.trial(p, 0, size, b.plan.SearchTrial, false)
	flat := s.FlatOut.metric(func(r *loadgen.Report) float64 { return r.DeliveredPPS })
	fmt.Fprintf(b.out, "flat out %s pkt/s (%s lost)", kpps(flat), pct(s.FlatOut.metric(lossPct)))
	if flatOnly {
		s.PPS = report.Value(flat)
		s.Gbps = report.Value(s.FlatOut.metric(func(r *loadgen.Report) float64 { return r.DeliveredGbps }))
		s.CPUPerPacket = s.FlatOut.CPUPerPacket
		return s
	}
	if math.IsNaN(flat) || flat <= 0 {
		fmt.Fprint(b.out, ", no search")
		return s
	}
	s.Lo, s.Hi = b.plan.Search.bracket(flat)
	fmt.Fprint(b.out, "; search")
	s.Trials, s.Best = b.plan.Search.search(s.Lo, s.Hi, func(rate int) (Trial, bool) {
		t := b.trial(p, rate, size, b.plan.SearchTrial, false)
		if t.Error == "interrupted" {
			return t, true
		}
		mark := "✗"
		switch {
		case b.plan.Search.passes(&t):
			mark = "✓"
		case b.plan.Search.generatorLimited(&t):
			mark = "✗(generator)"
		}
		fmt.Fprintf(b.out, " %s%s", kpps(float64(rate)), mark)
		return t, false
	})
	if b.ctx.Err() != nil {
		fmt.Fprint(b.out, " interrupted")
		return s
	}
	if s.Best < 0 {
		fmt.Fprintf(b.out, " = none passed (below %s pkt/s)", kpps(s.Lo))
		return s
	}
	best := &s.Trials[s.Best]
	s.PPS = report.Value(best.Report.DeliveredPPS)
	s.Gbps = report.Value(best.Report.DeliveredGbps)
	s.CPUPerPacket = best.CPUPerPacket
	fmt.Fprintf(b.out, " = %s pkt/s", kpps(float64(s.PPS)))
	if s.CPUPerPacket.OK() {
		fmt.Fprintf(b.out, ", %.1f µs CPU/pkt", s.CPUPerPacket)
	}
	return s
}

// throughput runs the throughput scenario at one size: pairs searches of
// engarde (path e) each followed by one of the direct path (d, nil when
// the direct path is not part of this run), alternating.
func (b *bench) throughput(e, d *path, size, pairs int, flatOnly bool) {
	re := &ThroughputResult{Path: e.name, Size: size, FlatOnly: flatOnly, Paired: d != nil}
	var rd *ThroughputResult
	if d != nil {
		rd = &ThroughputResult{Path: d.name, Size: size, FlatOnly: flatOnly}
	}
	for i := range pairs {
		if b.ctx.Err() != nil {
			break
		}
		re.Searches = append(re.Searches, b.searchPath(e, size, i, flatOnly))
		if d != nil {
			rd.Searches = append(rd.Searches, b.searchPath(d, size, i, flatOnly))
		}
	}
	if rd != nil {
		rd.summarize(nil)
		b.res.Throughput = append(b.res.Throughput, rd)
	}
	re.summarize(b.res.throughputOf(directPath, size))
	b.res.Throughput = append(b.res.Throughput, re)
	b.print(throughputTable(b.res.Throughput, size))
}

// summarize computes the medians, and the ratios to direct (nil for the
// direct path itself): per pair when both have the same number of
// searches and the result is paired, otherwise to direct's median.
func (r *ThroughputResult) summarize(direct *ThroughputResult) {
	var pps, gbps, cpu, flat []float64
	for _, s := range r.Searches {
		pps = append(pps, float64(s.PPS))
		gbps = append(gbps, float64(s.Gbps))
		cpu = append(cpu, float64(s.CPUPerPacket))
		flat = append(flat, s.FlatOut.metric(func(r *loadgen.Report) float64 { return r.DeliveredPPS }))
	}
	r.PPS, r.Gbps = report.Value(report.Median(pps)), report.Value(report.Median(gbps))
	r.CPUPerPacket, r.FlatOutPPS = report.Value(report.Median(cpu)), report.Value(report.Median(flat))
	r.Ratio = report.NA
	if direct == nil {
		r.Paired = false
		return
	}
	var ratios []float64
	if r.Paired && len(direct.Searches) == len(r.Searches) {
		var dp []float64
		for _, s := range direct.Searches {
			dp = append(dp, float64(s.PPS))
		}
		ratios = report.Ratios(pps, dp)
	} else {
		r.Paired = false
		ratios = report.Ratios(pps, repeat(float64(direct.PPS), len(pps)))
	}
	r.Ratios = values(ratios)
	r.Ratio = report.Value(report.Median(ratios))
}

// throughputTable tabulates every path's throughput at size.
func throughputTable(all []*ThroughputResult, size int) *report.Table {
	t := &report.Table{
		Title:   fmt.Sprintf("Throughput, %d-byte payloads (RFC 2544: highest rate with loss ≤ 0.1%%)", size),
		Columns: []string{"path", "runs", "pkt/s", "Gbit/s", "vs direct", "per pair", "CPU µs/pkt", "flat-out pkt/s"},
	}
	for _, r := range all {
		if r.Size != size {
			continue
		}
		var per []string
		for _, x := range r.Ratios {
			per = append(per, report.Pct(float64(x)))
		}
		if !r.Paired && len(per) > 0 {
			per = []string{"vs median"}
		}
		t.Add(r.Path, fmt.Sprint(len(r.Searches)), report.F(float64(r.PPS), 0), report.F(float64(r.Gbps), 3),
			report.Pct(float64(r.Ratio)), strings.Join(per, " "), report.F(float64(r.CPUPerPacket), 1), report.F(float64(r.FlatOutPPS), 0))
	}
	t.Notes = append(t.Notes, "Medians over the runs; a pair is an engarde search followed by a direct one. CPU is engarde-client plus engarde-server per delivered packet at the found rate. Flat out, the generator and the tunnel fight over two cores: that column says who wins, not what the path can carry.")
	if len(all) > 0 && all[0].FlatOnly {
		t.Notes = append(t.Notes, "Loopback mode: no search, the flat-out delivered rate is the result.")
	}
	return t
}

// throughputOf returns the result of path at size, nil when absent.
func (r *Results) throughputOf(path string, size int) *ThroughputResult {
	for _, x := range r.Throughput {
		if x.Path == path && x.Size == size {
			return x
		}
	}
	return nil
}

// lossPct is a report's loss in percent.
func lossPct(r *loadgen.Report) float64 { return r.LossPercent }

// kpps formats a packet rate compactly: 17.6k.
func kpps(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return report.FormatNum(math.Round(x/100) * 100)
}

// pct formats a percentage with up to three decimals.
func pct(x float64) string { return report.F(x, 3) + "%" }

// repeat returns n copies of x.
func repeat(x float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = x
	}
	return out
}

// values converts floats to Values (NaN becomes missing).
func values(xs []float64) []report.Value {
	out := make([]report.Value, len(xs))
	for i, x := range xs {
		out[i] = report.Value(x)
	}
	return out
}
