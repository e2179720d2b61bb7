package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
)

// Files written for every run.
const (
	jsonFile     = "report.json"
	mdFile       = "report.md"
	failoverFile = "failover.svg"
	latencyFile  = "latency.svg"
)

// print shows a table on the terminal.
func (b *bench) print(t *report.Table) {
	fmt.Fprintln(b.out)
	t.WriteText(b.out)
}

// tables returns every table of the results, in report order.
func (r *Results) tables() []*report.Table {
	var out []*report.Table
	for _, size := range r.Plan.Sizes {
		if hasSize(r.Throughput, size) {
			out = append(out, throughputTable(r.Throughput, size))
		}
	}
	if len(r.Latency) > 0 {
		out = append(out, latencyTable(r.Latency))
	}
	if len(r.Failover) > 0 {
		out = append(out, failoverTable(r.Failover))
	}
	if len(r.Loss) > 0 {
		out = append(out, lossTable(r.Loss))
	}
	if len(r.Slow) > 0 {
		out = append(out, slowTable(r.Slow))
	}
	if len(r.Order) > 0 {
		out = append(out, orderTable(r.Order))
	}
	if r.Scaling != nil {
		out = append(out, scalingTable(r.Scaling))
	}
	if r.WireGuard != nil {
		out = append(out, wireguardTable(r.WireGuard))
	}
	return out
}

func hasSize(all []*ThroughputResult, size int) bool {
	for _, x := range all {
		if x.Size == size {
			return true
		}
	}
	return false
}

// writeFiles writes the report, the JSON and the charts into a directory
// named after the run's date under dir, and copies them to dir/latest. It
// returns the latest directory.
func (r *Results) writeFiles(dir string) (string, error) {
	stamp := filepath.Join(dir, r.Env.Date.Format("2006-01-02T15-04-05Z"))
	latest := filepath.Join(dir, "latest")
	if err := os.MkdirAll(stamp, 0o755); err != nil {
		return "", err
	}
	files := map[string]func(io.Writer) error{
		jsonFile: func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		},
		mdFile:       r.writeMarkdown,
		failoverFile: failoverChart(r.Failover).WriteSVG,
		latencyFile:  latencyChart(r.Latency).WriteSVG,
	}
	if err := os.RemoveAll(latest); err != nil {
		return "", err
	}
	if err := os.MkdirAll(latest, 0o755); err != nil {
		return "", err
	}
	for name, write := range files {
		for _, d := range []string{stamp, latest} {
			if err := writeFile(filepath.Join(d, name), write); err != nil {
				return "", err
			}
		}
	}
	return latest, nil
}

// writeFile writes name with write.
func writeFile(name string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return os.WriteFile(name, buf.Bytes(), 0o644)
}

// writeMarkdown writes report.md: what ran where, the targets, every
// scenario's table with the charts, and the method.
func (r *Results) writeMarkdown(w io.Writer) error {
	e := r.Env
	fmt.Fprintf(w, "# engarde benchmark\n\n")
	fmt.Fprintf(w, "%s, plan **%s**, mode **%s**, %s. %s, git %s, Linux %s, %d × %s, %s.\n\n",
		e.Date.Format("2006-01-02 15:04 UTC"), r.Plan.Name, r.Mode, r.Elapsed.Round(time.Second), e.Engarde, e.Git, e.Kernel, e.CPUs, e.CPU, e.Go)
	if r.Interrupted {
		fmt.Fprintf(w, "**The run was interrupted: the results are partial.**\n\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "%s\n\n", n)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(w, "## Summary\n\n")
		targetTable(r.Targets).WriteMarkdown(w)
	}
	fmt.Fprintf(w, "## Results\n\n")
	for _, t := range r.tables() {
		t.WriteMarkdown(w)
		switch {
		case strings.HasPrefix(t.Title, "Latency"):
			fmt.Fprintf(w, "![Round-trip time percentiles per path and rate](%s)\n\n", latencyFile)
		case strings.HasPrefix(t.Title, "Failover"):
			fmt.Fprintf(w, "![RTT and delivered rate over time while links go down and up](%s)\n\n", failoverFile)
		}
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "## Not measured\n\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "- %s: %s\n", s.Scenario, s.Reason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## Method\n\n")
	for _, m := range r.method() {
		fmt.Fprintf(w, "- %s\n", m)
	}
	fmt.Fprintln(w)
	timing := &report.Table{Title: "Wall time", Columns: []string{"step", "s"}}
	for _, t := range r.Timing {
		timing.Add(t.Step, report.F(t.Seconds, 1))
	}
	timing.Add("total", report.F(r.Elapsed.Seconds(), 1))
	return timing.WriteMarkdown(w)
}

// method describes how the run measured, for the report.
func (r *Results) method() []string {
	p := r.Plan
	out := []string{
		"Generator: engarde-loadgen in the client namespace, sending numbered, timestamped datagrams; the sink behind engarde-server echoes the first copy of each, as WireGuard drops replays. Loss counts sequence numbers never echoed; duplicates are not loss.",
		fmt.Sprintf("Direct path: the generator straight to a second sink on link A's server address (%s:59999), no tunnel: the ceiling of this machine.", "198.18.1.1"),
		fmt.Sprintf("Throughput: RFC 2544 search, a flat-out trial then a bisection between %.2f× and %.2f× its delivered rate, at most %d trials of %v, stopping at %.0f%% resolution; a trial passes with loss ≤ %.1f%%.",
			p.Search.LoFactor, p.Search.HiFactor, p.Search.MaxTrials, p.SearchTrial, 100*p.Search.Resolution, p.Search.MaxLoss) +
			fmt.Sprintf(" The top of the bracket is tried first and raised 1.5× while it passes. A trial where the generator sent less than %.0f%% of the rate asked fails: the path was not tried at that rate.", 100*p.Search.MinOffered),
		fmt.Sprintf("Pairs: the headline figures (%d-byte throughput, latency at %v pkt/s, slow link) run %d pairs of engarde then the direct path, alternating; each figure is the median, ratios are per pair. Other sizes and rates run one pair.", p.Sizes[0], p.PairedRates, p.Pairs),
		"CPU: utime + stime of engarde-client and engarde-server from /proc/PID/stat (10 ms ticks) across the trial, divided by the packets delivered back to the generator: CPU per packet round trip, each packet having crossed both daemons once each way.",
		fmt.Sprintf("Order: %d pkt/s of %d-byte packets for %v (%v for backends other than %s), counting the first copies that come back after a higher sequence number; engarde with both links as they are, the direct path, then engarde with link B through a relay adding %v each way.",
			p.OrderRate, p.Size, p.OrderTrial, p.OrderOtherTrial, p.primary(), p.OrderDelay),
	}
	if !p.OtherSizes && len(p.Sizes) > 1 && len(p.Backends) > 1 {
		out = append(out, fmt.Sprintf("Backends other than %s run the throughput search at %d B only.", p.primary(), p.Sizes[0]))
	}
	if len(p.Backends) > 1 {
		out = append(out, fmt.Sprintf("Backends other than %s run each measurement once (one search per size, one trial per rate), and their ratios compare with the direct path's median.", p.primary()))
	}
	return out
}

// failoverChart draws RTT and delivered rate over time for every
// failover trial, with the link events marked.
func failoverChart(all []*FailoverResult) *report.Chart {
	c := &report.Chart{
		Title:  "Failover: links going down and up mid-stream",
		XLabel: "time since the start of sending (s)",
		Panels: []report.Panel{{YLabel: "max RTT per 100 ms (ms)", LogY: true}, {YLabel: "delivered (pkt/s)"}},
	}
	for i, f := range all {
		if i == 0 {
			for _, e := range f.Events {
				c.Events = append(c.Events, report.Event{X: e.At.Seconds(), Label: e.Label()})
			}
		}
		if !f.Trial.ok() {
			continue
		}
		rtt, rate := report.Series{Name: f.Path}, report.Series{Name: f.Path}
		for _, iv := range f.Trial.Report.Series {
			if iv.Start+loadgen.DefaultSeriesInterval > f.Trial.Report.Duration+time.Millisecond {
				break // the end of sending and the wait for late echoes: partial intervals
			}
			x := (iv.Start + 50*time.Millisecond).Seconds() // the middle of the interval
			y := float64(iv.RTTMax) / 1e3
			if iv.Received == 0 {
				y = math.NaN()
			}
			rtt.Points = append(rtt.Points, report.Point{X: x, Y: y})
			rate.Points = append(rate.Points, report.Point{X: x, Y: float64(iv.Received) * 10})
		}
		c.Panels[0].Series = append(c.Panels[0].Series, rtt)
		c.Panels[1].Series = append(c.Panels[1].Series, rate)
	}
	return c
}

// latencyChart draws the RTT percentiles of every path, one panel per
// rate.
func latencyChart(all []*LatencyResult) *report.Chart {
	c := &report.Chart{
		Title:  "Round-trip time percentiles (medians over the runs)",
		XLabel: "percentile",
		XTicks: []report.Tick{{X: 0, Label: "p50"}, {X: 1, Label: "p90"}, {X: 2, Label: "p99"}, {X: 3, Label: "p99.9"}, {X: 4, Label: "max"}},
	}
	var rates []int
	for _, l := range all {
		if !slices.Contains(rates, l.Rate) {
			rates = append(rates, l.Rate)
		}
	}
	for _, rate := range rates {
		p := report.Panel{YLabel: fmt.Sprintf("RTT (µs) at %d pkt/s", rate), LogY: true, Height: 180}
		for _, l := range all {
			if l.Rate != rate {
				continue
			}
			s := report.Series{Name: l.Path, Markers: true}
			for i, v := range []report.Value{l.P50, l.P90, l.P99, l.P999, l.Max} {
				s.Points = append(s.Points, report.Point{X: float64(i), Y: float64(v)})
			}
			p.Series = append(p.Series, s)
		}
		c.Panels = append(c.Panels, p)
	}
	if len(c.Panels) == 0 {
		c.Panels = []report.Panel{{YLabel: "RTT (µs)"}}
	}
	return c
}
