package main

import (
	"fmt"
	"slices"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
)

// LatencyResult gathers the trials of one path at one fixed rate.
type LatencyResult struct {
	Path   string  `json:"path"`
	Rate   int     `json:"rate"`
	Size   int     `json:"size"`
	Trials []Trial `json:"trials"`
	// Medians over the trials, round-trip times in microseconds.
	P50          report.Value `json:"rtt_p50_us"`
	P90          report.Value `json:"rtt_p90_us"`
	P99          report.Value `json:"rtt_p99_us"`
	P999         report.Value `json:"rtt_p999_us"`
	Max          report.Value `json:"rtt_max_us"`
	LossPercent  report.Value `json:"loss_percent"`
	OfferedPPS   report.Value `json:"offered_pps"`
	CPUPerPacket report.Value `json:"cpu_us_per_packet"`
}

// latency runs the latency scenario: for each rate, trials of engarde (e)
// each followed by one of the direct path (d, nil when not part of this
// run); rates in the plan's PairedRates repeat pairs times.
func (b *bench) latency(e, d *path, pairs int) {
	for _, rate := range b.plan.LatencyRates {
		n := 1
		if slices.Contains(b.plan.PairedRates, rate) {
			n = pairs
		}
		le := &LatencyResult{Path: e.name, Rate: rate, Size: b.plan.Size}
		ld := &LatencyResult{Path: directPath, Rate: rate, Size: b.plan.Size}
		fmt.Fprintf(b.out, "  %6d pkt/s:", rate)
		for range n {
			if b.ctx.Err() != nil {
				break
			}
			for _, x := range []struct {
				p *path
				r *LatencyResult
			}{{e, le}, {d, ld}} {
				if x.p == nil {
					continue
				}
				t := b.trial(x.p, rate, b.plan.Size, b.plan.Trial, false)
				x.r.Trials = append(x.r.Trials, t)
				fmt.Fprintf(b.out, " %s p99 %s µs;", x.p.name, report.F(t.metric(func(r *loadgen.Report) float64 { return r.RTTP99 }), 0))
			}
		}
		fmt.Fprintln(b.out)
		if d != nil {
			ld.summarize()
			b.res.Latency = append(b.res.Latency, ld)
		}
		le.summarize()
		b.res.Latency = append(b.res.Latency, le)
	}
	b.print(latencyTable(b.res.Latency))
}

// summarize computes the medians over the trials.
func (r *LatencyResult) summarize() {
	r.P50 = medianOf(r.Trials, p50)
	r.P90 = medianOf(r.Trials, func(r *loadgen.Report) float64 { return r.RTTP90 })
	r.P99 = medianOf(r.Trials, p99)
	r.P999 = medianOf(r.Trials, func(r *loadgen.Report) float64 { return r.RTTP999 })
	r.Max = medianOf(r.Trials, func(r *loadgen.Report) float64 { return r.RTTMax })
	r.LossPercent = medianOf(r.Trials, lossPct)
	r.OfferedPPS = medianOf(r.Trials, func(r *loadgen.Report) float64 { return r.OfferedPPS })
	r.CPUPerPacket = medianCPU(r.Trials)
}

// latencyTable tabulates every latency result.
func latencyTable(all []*LatencyResult) *report.Table {
	t := &report.Table{
		Title:   "Latency at fixed rates (round trip, µs)",
		Columns: []string{"path", "pkt/s", "runs", "offered", "p50", "p99", "p99.9", "max", "loss %", "CPU µs/pkt"},
		Notes:   []string{"Medians over the runs; at the paired rates an engarde run is followed by a direct one. Payload " + fmt.Sprint(sizeOf(all)) + " B. Offered: what the generator managed to send, in pkt/s."},
	}
	for _, r := range all {
		t.Add(r.Path, fmt.Sprint(r.Rate), fmt.Sprint(len(r.Trials)), report.F(float64(r.OfferedPPS), 0), report.F(float64(r.P50), 0), report.F(float64(r.P99), 0),
			report.F(float64(r.P999), 0), report.F(float64(r.Max), 0), report.F(float64(r.LossPercent), 3), report.F(float64(r.CPUPerPacket), 1))
	}
	return t
}

func sizeOf(all []*LatencyResult) int {
	if len(all) == 0 {
		return 0
	}
	return all[0].Size
}

// latencyOf returns the result of path at rate, nil when absent.
func (r *Results) latencyOf(path string, rate int) *LatencyResult {
	for _, x := range r.Latency {
		if x.Path == path && x.Rate == rate {
			return x
		}
	}
	return nil
}
