package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
)

// spikeWindow is how long after a link goes down its effect is looked for.
const spikeWindow = 500 * time.Millisecond

// FailoverEvent is a link going down or up during the failover trial.
type FailoverEvent struct {
	// At is the planned offset from the start of the trial.
	At   time.Duration `json:"at_ns"`
	Link string        `json:"link"`
	Up   bool          `json:"up"`
	// Error says why the change could not be made.
	Error string `json:"error,omitempty"`
}

// Label describes the event: "eth-a down".
func (e FailoverEvent) Label() string {
	if e.Up {
		return e.Link + " up"
	}
	return e.Link + " down"
}

// Window is what happened in the spikeWindow after a link went down.
type Window struct {
	Event string `json:"event"`
	// MaxRTT is the largest round trip of the packets received in the
	// window, in microseconds, missing when none was; Lost counts packets
	// sent in it that never came back.
	MaxRTT report.Value `json:"max_rtt_us"`
	Lost   uint64       `json:"lost"`
}

// FailoverResult is one path's failover trial.
type FailoverResult struct {
	Path   string          `json:"path"`
	Rate   int             `json:"rate"`
	Events []FailoverEvent `json:"events"`
	// Trial carries the time series (100 ms intervals).
	Trial Trial `json:"trial"`
	// Lost and MaxRTT are over the whole trial.
	Lost   uint64  `json:"lost"`
	MaxRTT float64 `json:"max_rtt_us"`
	// Windows follow each link-down event.
	Windows []Window `json:"windows"`
	// SpikeRTT is the largest MaxRTT of the windows after a link went
	// down while the other was up.
	SpikeRTT report.Value `json:"spike_rtt_us"`
	// SteadyMaxRTT is the largest RTT per interval before the first
	// event (from 0.5 s on), for comparison.
	SteadyMaxRTT report.Value `json:"steady_max_rtt_us"`
	// SteadyP999 is the path's RTT p99.9 at the same rate in the latency
	// scenario (median), missing when that did not run.
	SteadyP999 report.Value `json:"steady_p999_us"`
}

// events lists the failover schedule.
func (f failoverPlan) events() []FailoverEvent {
	return []FailoverEvent{
		{At: f.ADown, Link: "eth-a"},
		{At: f.AUp, Link: "eth-a", Up: true},
		{At: f.BDown, Link: "eth-b"},
	}
}

// failover streams at the plan's rate over p while links go down and up
// (setUp changes a link), then brings every link back up.
func (b *bench) failover(p *path, setUp func(link string, up bool) error) {
	f := b.plan.Failover
	res := &FailoverResult{Path: p.name, Rate: f.Rate, Events: f.events(), SpikeRTT: report.NA, SteadyMaxRTT: report.NA, SteadyP999: report.NA}
	if l := b.res.latencyOf(p.name, f.Rate); l != nil {
		res.SteadyP999 = l.P999
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for i := range res.Events {
			e := &res.Events[i]
			select {
			case <-time.After(time.Until(start.Add(e.At))):
			case <-b.ctx.Done():
				return
			}
			if err := setUp(e.Link, e.Up); err != nil {
				e.Error = err.Error()
			}
		}
	}()
	res.Trial = b.trial(p, f.Rate, b.plan.Size, f.Duration, true)
	<-done
	for _, l := range []string{"eth-a", "eth-b"} {
		if err := setUp(l, true); err != nil {
			fmt.Fprintf(b.out, "  bringing %s back up: %v\n", l, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the client sees the links again (netlink, milliseconds)
	res.analyze()
	b.res.Failover = append(b.res.Failover, res)
	b.print(failoverTable(b.res.Failover))
}

// analyze fills the totals, the windows and the steady maximum from the
// trial's series.
func (r *FailoverResult) analyze() {
	if !r.Trial.ok() {
		return
	}
	rep := r.Trial.Report
	r.Lost, r.MaxRTT = rep.Lost, rep.RTTMax
	for _, e := range r.Events {
		if e.Up {
			continue
		}
		rtt, lost := window(rep.Series, loadgen.DefaultSeriesInterval, e.At, spikeWindow)
		r.Windows = append(r.Windows, Window{Event: e.Label(), MaxRTT: rtt, Lost: lost})
		if rtt.OK() && (!r.SpikeRTT.OK() || rtt > r.SpikeRTT) {
			r.SpikeRTT = rtt
		}
	}
	if len(r.Events) > 0 {
		from := 500 * time.Millisecond
		r.SteadyMaxRTT, _ = window(rep.Series, loadgen.DefaultSeriesInterval, from, r.Events[0].At-from)
	}
}

// window returns the largest RTT (missing when nothing was received) and
// the number of packets lost in the series intervals (each step long) that
// overlap [from, from+d).
func window(series []loadgen.Interval, step, from, d time.Duration) (maxRTT report.Value, lost uint64) {
	maxRTT = report.NA
	for _, iv := range series {
		if iv.Start < from+d && iv.Start+step > from {
			if iv.Received > 0 && (!maxRTT.OK() || report.Value(iv.RTTMax) > maxRTT) {
				maxRTT = report.Value(iv.RTTMax)
			}
			lost += iv.Lost
		}
	}
	return maxRTT, lost
}

// failoverTable tabulates every failover trial.
func failoverTable(all []*FailoverResult) *report.Table {
	t := &report.Table{
		Title:   "Failover (links down and up mid-stream)",
		Columns: []string{"path", "pkt/s", "sent", "lost", "max RTT µs", "after eth-a down", "after eth-b down", "steady max", "steady p99.9"},
	}
	for _, r := range all {
		if !r.Trial.ok() {
			t.Add(r.Path, fmt.Sprint(r.Rate), "failed: "+r.Trial.Error)
			continue
		}
		cells := []string{r.Path, fmt.Sprint(r.Rate), fmt.Sprint(r.Trial.Report.Sent), fmt.Sprint(r.Lost), report.F(r.MaxRTT, 0)}
		for _, w := range r.Windows {
			if w.MaxRTT.OK() {
				cells = append(cells, fmt.Sprintf("%s µs, %d lost", report.F(float64(w.MaxRTT), 0), w.Lost))
			} else {
				cells = append(cells, fmt.Sprintf("nothing back, %d lost", w.Lost))
			}
		}
		for len(cells) < 7 {
			cells = append(cells, "")
		}
		t.Add(append(cells, report.F(float64(r.SteadyMaxRTT), 0), report.F(float64(r.SteadyP999), 0))...)
	}
	if len(all) > 0 {
		var ev []string
		for _, e := range all[0].Events {
			ev = append(ev, fmt.Sprintf("%s at %v", e.Label(), e.At))
		}
		t.Notes = append(t.Notes, fmt.Sprintf("Schedule: %s. \"After\" columns: the largest RTT and the packets lost in the %v after the link went down (100 ms resolution). Steady max: the largest RTT from 0.5 s to the first event; steady p99.9: the latency scenario at the same rate. The direct path has link A only.", strings.Join(ev, ", "), spikeWindow))
	}
	return t
}
