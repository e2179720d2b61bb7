package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
)

// Bounds are how far each curve may rise after the warm-up above its
// highest value during the warm-up.
type Bounds struct {
	// RSS may grow by RSSBytes or RSSPercent of the warm-up's highest,
	// whichever is more.
	RSSBytes   uint64  `json:"rss_bytes"`
	RSSPercent float64 `json:"rss_percent"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"fds"`
}

// Curve is one measure of one process over the soak.
type Curve struct {
	Process string  `json:"process"`
	Measure string  `json:"measure"`
	Start   float64 `json:"start"`
	// WarmMax is the highest value during the warm-up; Limit is the
	// highest allowed after it.
	WarmMax float64 `json:"warmup_max"`
	Limit   float64 `json:"limit"`
	End     float64 `json:"end"`
	Max     float64 `json:"max"`
	// MaxAt is when Max was first reached.
	MaxAt time.Duration `json:"max_at_ns"`
	OK    bool          `json:"ok"`
}

// measure is one column of a sample.
type measure struct {
	process, name string
	get           func(Sample) float64
	limit         func(warmMax float64, b Bounds) float64
	unit          float64 // divisor for printing
}

func measures() []measure {
	var ms []measure
	for _, p := range []struct {
		name string
		u    func(Sample) Usage
	}{{"client", func(s Sample) Usage { return s.Client }}, {"server", func(s Sample) Usage { return s.Server }}} {
		u := p.u
		ms = append(ms,
			measure{p.name, "rss MiB", func(s Sample) float64 { return float64(u(s).RSS) },
				func(w float64, b Bounds) float64 { return w + max(float64(b.RSSBytes), w*b.RSSPercent/100) }, 1 << 20},
			measure{p.name, "heap MiB", func(s Sample) float64 { return float64(u(s).HeapInuse) }, nil, 1 << 20},
			measure{p.name, "goroutines", func(s Sample) float64 { return float64(u(s).Goroutines) },
				func(w float64, b Bounds) float64 { return w + float64(b.Goroutines) }, 1},
			measure{p.name, "fds", func(s Sample) float64 { return float64(u(s).FDs) },
				func(w float64, b Bounds) float64 { return w + float64(b.FDs) }, 1},
		)
	}
	return ms
}

// curves summarises the samples, each measure judged against its bound
// after warm (the heap is shown, not judged: RSS bounds it).
func curves(samples []Sample, warm time.Duration, b Bounds) []Curve {
	var out []Curve
	if len(samples) == 0 {
		return nil
	}
	for _, m := range measures() {
		c := Curve{Process: m.process, Measure: m.name, Start: m.get(samples[0]) / m.unit, End: m.get(samples[len(samples)-1]) / m.unit, OK: true}
		var warmMax, maxV float64
		for _, s := range samples {
			v := m.get(s)
			if s.At <= warm {
				warmMax = max(warmMax, v)
			}
			if v > maxV {
				maxV, c.MaxAt = v, s.At
			}
		}
		c.WarmMax, c.Max = warmMax/m.unit, maxV/m.unit
		if m.limit != nil {
			limit := m.limit(warmMax, b)
			c.Limit = limit / m.unit
			for _, s := range samples {
				if s.At > warm && m.get(s) > limit {
					c.OK = false
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// Flap is one link taken down and brought back.
type Flap struct {
	Link string        `json:"link"`
	Down time.Duration `json:"down_ns"` // since the stream started
	Up   time.Duration `json:"up_ns"`
}

// Result is what a soak found; the JSON file holds it.
type Result struct {
	Duration time.Duration   `json:"duration_ns"`
	Warmup   time.Duration   `json:"warmup_ns"`
	Rate     int             `json:"rate"`
	Bounds   Bounds          `json:"bounds"`
	Curves   []Curve         `json:"curves"`
	Flaps    []Flap          `json:"flaps"`
	Stream   *loadgen.Report `json:"stream"`
	Samples  []Sample        `json:"samples"`
	// Failures says why the soak failed; empty when it passed.
	Failures []string `json:"failures"`
}

// judge fills Failures.
func (r *Result) judge() {
	for _, c := range r.Curves {
		if !c.OK {
			r.Failures = append(r.Failures, fmt.Sprintf("%s %s rose to %.1f at %v, above %.1f (the warm-up's highest, %.1f, plus the bound)",
				c.Process, c.Measure, c.Max, c.MaxAt.Round(time.Second), c.Limit, c.WarmMax))
		}
	}
	if r.Stream == nil {
		r.Failures = append(r.Failures, "the stream did not report")
		return
	}
	if r.Stream.Received == 0 {
		r.Failures = append(r.Failures, "nothing came back")
	}
	if r.Stream.Lost != 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("lost %d of %d packets with one link always up%s%s", r.Stream.Lost, r.Stream.Sent, lossTimes(r.Stream), stalls(r.Stream)))
	}
}

// lossTimes says when packets were lost, from the stream's time series.
func lossTimes(rep *loadgen.Report) string {
	s := ""
	n := 0
	for _, iv := range rep.Series {
		if iv.Lost == 0 {
			continue
		}
		if n++; n > 10 {
			s += ", ..."
			break
		}
		s += fmt.Sprintf(", %d at %v", iv.Lost, iv.Start.Round(100*time.Millisecond))
	}
	if s == "" {
		return ""
	}
	return " (" + s[2:] + ")"
}

// stalls says when the generator sent nothing for a second or more: then
// the machine was too busy to run it, it catches up in a burst, and a
// loss in that burst says more about the machine than about engarde.
func stalls(rep *loadgen.Report) string {
	var s string
	var from time.Duration
	quiet := 0
	flush := func() {
		if d := time.Duration(quiet) * loadgen.DefaultSeriesInterval; d >= time.Second {
			s += fmt.Sprintf(", %v from %v", d, from.Round(100*time.Millisecond))
		}
		quiet = 0
	}
	for _, iv := range rep.Series {
		// Intervals after the sending stopped (the wait for late
		// replies) are quiet by design.
		if iv.Sent != 0 || iv.Start >= rep.Duration {
			flush()
			continue
		}
		if quiet == 0 {
			from = iv.Start
		}
		quiet++
	}
	flush()
	if s == "" {
		return ""
	}
	return "; the generator stalled (sent nothing) for " + s[2:] + ": was the machine overloaded?"
}

// print writes the curves and the stream as tables.
func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "soak: %v at %d pkt/s, a link down for %v every %v (%d flaps), warm-up %v, %d samples\n",
		r.Duration, r.Rate, flapDown, flapEvery, len(r.Flaps), r.Warmup, len(r.Samples))
	fmt.Fprintf(w, "bounds after the warm-up, above its highest: rss +%d MiB or +%.0f%% (the larger), goroutines +%d, fds +%d\n\n",
		r.Bounds.RSSBytes>>20, r.Bounds.RSSPercent, r.Bounds.Goroutines, r.Bounds.FDs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PROCESS\tMEASURE\tSTART\tWARM-UP MAX\tEND\tMAX\tMAX AT\tLIMIT\tVERDICT\t")
	for _, c := range r.Curves {
		limit, verdict := "-", "shown"
		if c.Limit != 0 {
			limit, verdict = num(c.Limit), "ok"
			if !c.OK {
				verdict = "FAIL"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\t\n", c.Process, c.Measure, num(c.Start), num(c.WarmMax), num(c.End), num(c.Max), c.MaxAt.Round(time.Second), limit, verdict)
	}
	tw.Flush()
	if s := r.Stream; s != nil {
		fmt.Fprintf(w, "\nstream: sent %d, received %d, lost %d, duplicates %d, reordered %d, rtt p50 %.0f µs, p99.9 %.0f µs, max %.0f µs\n",
			s.Sent, s.Received, s.Lost, s.Duplicates, s.Reordered, s.RTTP50, s.RTTP999, s.RTTMax)
	}
}

func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}
