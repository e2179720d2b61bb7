package main

import (
	"fmt"
	"time"

	"github.com/engarde-project/engarde/bench/report"
	"github.com/engarde-project/engarde/bench/topo"
)

// Conditions of the order scenario.
const (
	condEqual   = "equal links"
	condDirect  = "link A only"
	condDelayed = "link B +%v each way"
)

// OrderResult is one trial of the order scenario: how many first copies
// came back out of sequence order.
type OrderResult struct {
	Path      string `json:"path"`
	Condition string `json:"condition"`
	// DelayB is what link B's relay added in each direction, 0 without
	// the relay.
	DelayB time.Duration `json:"delay_b_ns"`
	Rate   int           `json:"rate"`
	Trial  Trial         `json:"trial"`
	// Received counts the first copies the generator received, Reordered
	// those that arrived after a higher sequence number; PerMillion is
	// Reordered per million Received.
	Received   uint64       `json:"received"`
	Reordered  uint64       `json:"reordered"`
	PerMillion report.Value `json:"per_million"`
	// Relay is what link B's relay passed on, with the delay, and
	// RelayCPU the share of one core it used during the trial (percent).
	Relay    *topo.RelayStats `json:"relay,omitempty"`
	RelayCPU report.Value     `json:"relay_cpu_percent"`
	// Error says why the condition could not be set up.
	Error string `json:"error,omitempty"`
}

// newOrderResult fills the counts from the trial.
func newOrderResult(path, cond string, delay time.Duration, t Trial) *OrderResult {
	r := &OrderResult{Path: path, Condition: cond, DelayB: delay, Rate: t.Rate, Trial: t, PerMillion: report.NA, RelayCPU: report.NA}
	if t.ok() {
		r.Received, r.Reordered = t.Report.Received, t.Report.Reordered
		if r.Received > 0 {
			r.PerMillion = report.Value(1e6 * float64(r.Reordered) / float64(r.Received))
		}
	}
	return r
}

// order runs the order scenario: engarde (e) with both links as they are,
// the direct path (d, nil when not part of this run), then engarde with
// link B through a relay that delays it (relay is the relay's command
// line, for tun.DelayLink).
func (b *bench) order(e, d *path, tun *topo.Tunnel, relay []string, dur time.Duration) {
	rate, size := b.plan.OrderRate, b.plan.Size
	run := func(p *path, cond string, delay time.Duration) *OrderResult {
		r := newOrderResult(p.name, cond, delay, b.trial(p, rate, size, dur, false))
		b.res.Order = append(b.res.Order, r)
		fmt.Fprintf(b.out, "  %-13s %-22s %d of %d out of order (%s per million), %s lost\n", p.name, cond, r.Reordered, r.Received,
			report.F(float64(r.PerMillion), 0), pct(r.Trial.metric(lossPct)))
		return r
	}
	run(e, condEqual, 0)
	if d != nil && b.ctx.Err() == nil {
		run(d, condDirect, 0)
	}
	if b.ctx.Err() == nil {
		delay := b.plan.OrderDelay
		cond := fmt.Sprintf(condDelayed, delay)
		dl, err := tun.DelayLink(2, delay, relay...)
		if err != nil {
			fmt.Fprintf(b.out, "  cannot delay link B: %s\n", firstLine(err.Error(), 300))
			b.res.Order = append(b.res.Order, &OrderResult{Path: e.name, Condition: cond, DelayB: delay, Rate: rate, PerMillion: report.NA, Error: err.Error()})
		} else {
			cpu0, err0 := dl.Relay.CPU()
			start := time.Now()
			r := run(e, cond, delay)
			if cpu1, err1 := dl.Relay.CPU(); err0 == nil && err1 == nil {
				r.RelayCPU = report.Value(100 * float64(cpu1-cpu0) / float64(time.Since(start)))
			}
			st, err := dl.Stop()
			r.Relay = &st
			if err != nil {
				fmt.Fprintf(b.out, "  undoing link B's delay: %v\n", err)
			}
		}
	}
	b.print(orderTable(b.res.Order))
}

// orderTable tabulates every order trial.
func orderTable(all []*OrderResult) *report.Table {
	t := &report.Table{
		Title:   "Order: first copies out of sequence order",
		Columns: []string{"path", "condition", "pkt/s", "first copies received", "out of order", "per million", "loss %"},
		Notes: []string{"Counted by the generator: a first copy (duplicates aside) whose sequence number is below the highest already received. The sink behind engarde-server echoes in the order it receives, so the count covers both directions through the tunnel: engarde-server to the sink, and engarde-client back to the generator. The direct path has link A only.",
			"The delay is a userspace relay (engarde-bench relay, bench/topo.Relay) on link B's server address, in front of engarde-server, holding each datagram in each direction; the client reaches it by a reload that changes link B's destination. Link A is untouched."},
	}
	for _, r := range all {
		if r.Error != "" {
			t.Add(r.Path, r.Condition, fmt.Sprint(r.Rate), "failed: "+firstLine(r.Error, 160))
			continue
		}
		if !r.Trial.ok() {
			t.Add(r.Path, r.Condition, fmt.Sprint(r.Rate), "failed: "+firstLine(r.Trial.Error, 160))
			continue
		}
		t.Add(r.Path, r.Condition, fmt.Sprint(r.Rate), fmt.Sprint(r.Received), fmt.Sprint(r.Reordered), report.F(float64(r.PerMillion), 0), pct(r.Trial.metric(lossPct)))
	}
	for _, r := range all {
		if r.Relay != nil {
			cpu := "Its CPU time was not measured."
			if r.RelayCPU.OK() {
				cpu = fmt.Sprintf("It used %s%% of one core during the trial, on the same two cores as everything else.", report.F(float64(r.RelayCPU), 0))
			}
			t.Notes = append(t.Notes, fmt.Sprintf("%s, %s: the relay passed %d datagrams towards the server and %d back (its socket buffers drop what it cannot read in time); %d found its delay line full and %d failed to send. %s",
				r.Path, r.Condition, r.Relay.Forward, r.Relay.Back, r.Relay.Dropped, r.Relay.Errors, cpu))
		}
	}
	return t
}

// orderOf returns the order result of path in condition, nil when absent.
func (r *Results) orderOf(path, cond string) *OrderResult {
	for _, x := range r.Order {
		if x.Path == path && x.Condition == cond {
			return x
		}
	}
	return nil
}
