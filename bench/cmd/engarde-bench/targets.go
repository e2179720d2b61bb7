package main

import (
	"fmt"

	"github.com/engarde-project/engarde/bench/report"
)

// The targets (benchmark results, not test assertions).
const (
	targetThroughputRatio = 0.75  // engarde's RFC 2544 throughput over the direct path's
	targetCPUPerPacket    = 8.0   // µs of client plus server CPU per forwarded packet
	targetP99Margin       = 100.0 // µs over the direct path's p99 at 2k and 10k pkt/s
	targetSlowLatency     = 1.10  // slow-link p50 over the no-limit p50
)

// Target is one of the targets next to what was measured.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	// Status is "pass", "miss" or "n/a" (not measured).
	Status string `json:"status"`
}

// verdict is "pass" or "miss"; "n/a" when the value is missing.
func verdict(ok bool, v ...report.Value) string {
	for _, x := range v {
		if !x.OK() {
			return "n/a"
		}
	}
	if ok {
		return "pass"
	}
	return "miss"
}

// evaluate compares the results of every engarde backend with the targets.
func evaluate(r *Results) []Target {
	var out []Target
	add := func(name, want, got, status string) {
		out = append(out, Target{Name: name, Want: want, Got: got, Status: status})
	}
	size := r.Plan.Sizes[0]
	for _, be := range r.Plan.Backends {
		p := enginePath(be)
		if t := r.throughputOf(p, size); t != nil {
			what := "RFC 2544 throughput"
			if t.FlatOnly {
				what = "flat-out throughput (loopback)"
			}
			how := fmt.Sprintf("median of %d", len(t.Ratios))
			if t.Paired {
				how += " pair" + plural(len(t.Ratios))
			}
			direct := report.NA
			if d := r.throughputOf(directPath, size); d != nil {
				direct = d.PPS
			}
			add(fmt.Sprintf("%s: %s, %d B, vs direct", p, what, size), fmt.Sprintf("≥ %s", report.Pct(targetThroughputRatio)),
				fmt.Sprintf("%s (%s; %s vs %s pkt/s)", report.Pct(float64(t.Ratio)), how, report.F(float64(t.PPS), 0), report.F(float64(direct), 0)),
				verdict(float64(t.Ratio) >= targetThroughputRatio, t.Ratio))
			if !t.FlatOnly {
				add(fmt.Sprintf("%s: client + server CPU per packet at that rate", p), fmt.Sprintf("≤ %.0f µs", targetCPUPerPacket),
					report.F(float64(t.CPUPerPacket), 1)+" µs", verdict(float64(t.CPUPerPacket) <= targetCPUPerPacket, t.CPUPerPacket))
			}
		}
		for _, rate := range r.Plan.PairedRates {
			e, d := r.latencyOf(p, rate), r.latencyOf(directPath, rate)
			if e == nil || d == nil {
				continue
			}
			add(fmt.Sprintf("%s: RTT p99 at %d pkt/s", p, rate), fmt.Sprintf("≤ direct + %.0f µs (%s)", targetP99Margin, report.F(float64(d.P99)+targetP99Margin, 0)),
				fmt.Sprintf("%s µs (median of %d; direct %s)", report.F(float64(e.P99), 0), len(e.Trials), report.F(float64(d.P99), 0)),
				verdict(float64(e.P99) <= float64(d.P99)+targetP99Margin, e.P99, d.P99))
		}
		if f := r.failoverOf(p); f != nil && f.Trial.ok() {
			add(fmt.Sprintf("%s: failover, packets lost", p), "0", fmt.Sprintf("%d of %d", f.Lost, f.Trial.Report.Sent), verdict(f.Lost == 0))
			add(fmt.Sprintf("%s: failover, RTT after a link goes down", p), fmt.Sprintf("≤ steady p99.9 (%s µs)", report.F(float64(f.SteadyP999), 0)),
				fmt.Sprintf("%s µs (steady max %s)", report.F(float64(f.SpikeRTT), 0), report.F(float64(f.SteadyMaxRTT), 0)),
				verdict(f.SpikeRTT <= f.SteadyP999, f.SpikeRTT, f.SteadyP999))
		}
		if s := r.slowOf(p); s != nil {
			add(fmt.Sprintf("%s: slow link, packets lost", p), "0", fmt.Sprintf("%s (median of %d)", report.F(float64(s.LimitedLost), 0), len(s.Limited)),
				verdict(s.LimitedLost == 0, s.LimitedLost))
			add(fmt.Sprintf("%s: slow link, RTT p50 vs no limit", p), fmt.Sprintf("≤ %s", report.Pct(targetSlowLatency)),
				fmt.Sprintf("%s (%s vs %s µs)", report.Pct(float64(s.P50Ratio)), report.F(float64(s.LimitedP50), 0), report.F(float64(s.UnlimitedP50), 0)),
				verdict(float64(s.P50Ratio) <= targetSlowLatency, s.P50Ratio))
		}
	}
	return out
}

// targetTable tabulates the targets.
func targetTable(ts []Target) *report.Table {
	t := &report.Table{
		Title:   "Targets",
		Columns: []string{"target", "want", "measured", "result"},
		Notes:   []string{"Targets are benchmark results, not test assertions; single runs on this 2-core machine move by ±20%."},
	}
	for _, x := range ts {
		t.Add(x.Name, x.Want, x.Got, x.Status)
	}
	return t
}
