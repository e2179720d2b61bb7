package main

import (
	"fmt"
	"math"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
)

// LossResult is a path's trial with random loss on every link.
type LossResult struct {
	Path string `json:"path"`
	// LinkLoss is the loss on each link and direction, in percent.
	LinkLoss int   `json:"link_loss_percent"`
	Rate     int   `json:"rate"`
	Trial    Trial `json:"trial"`
	// LossPercent is the end-to-end (round-trip) loss; Expected is what
	// independent losses predict for the path's number of links.
	LossPercent report.Value `json:"loss_percent"`
	Expected    float64      `json:"expected_loss_percent"`
}

// expectedLoss is the round-trip loss, in percent, of a path over links
// links each losing p percent per direction: a datagram is lost when
// every copy is, on the way out or on the way back.
func expectedLoss(p float64, links int) float64 {
	oneWay := math.Pow(p/100, float64(links))
	return 100 * (1 - (1-oneWay)*(1-oneWay))
}

// loss runs the loss scenario for engarde (e) and the direct path (d, nil
// when not part of this run); setLoss applies a loss percentage to every
// link (0 removes it).
func (b *bench) loss(e, d *path, setLoss func(percent int) error) {
	pc := b.plan.LossPercent
	if err := setLoss(pc); err != nil {
		fmt.Fprintf(b.out, "  cannot emulate loss: %v\n", err)
		return
	}
	defer func() {
		if err := setLoss(0); err != nil {
			fmt.Fprintf(b.out, "  removing the loss: %v\n", err)
		}
	}()
	for _, x := range []struct {
		p     *path
		links int
	}{{e, 2}, {d, 1}} {
		if x.p == nil || b.ctx.Err() != nil {
			continue
		}
		t := b.trial(x.p, b.plan.LossRate, b.plan.Size, b.plan.LossTrial, false)
		b.res.Loss = append(b.res.Loss, &LossResult{Path: x.p.name, LinkLoss: pc, Rate: b.plan.LossRate, Trial: t,
			LossPercent: report.Value(t.metric(lossPct)), Expected: expectedLoss(float64(pc), x.links)})
	}
	b.print(lossTable(b.res.Loss))
}

// lossTable tabulates every loss trial.
func lossTable(all []*LossResult) *report.Table {
	t := &report.Table{
		Title:   "Random loss on every link",
		Columns: []string{"path", "link loss", "pkt/s", "sent", "lost", "end-to-end loss", "expected"},
		Notes:   []string{"Each link loses that share of the datagrams in each direction, dropped on arrival (nftables input hook) where the sender cannot see it. engarde loses a packet only when every copy is lost, on the way out or on the way back. \"Expected\" assumes independent losses per datagram; the hook sees GSO and GRO trains of several datagrams as one packet, so losses come in bursts."},
	}
	for _, r := range all {
		sent, lost := "n/a", "n/a"
		if r.Trial.ok() {
			sent, lost = fmt.Sprint(r.Trial.Report.Sent), fmt.Sprint(r.Trial.Report.Lost)
		}
		t.Add(r.Path, fmt.Sprintf("%d%%", r.LinkLoss), fmt.Sprint(r.Rate), sent, lost, pct(float64(r.LossPercent)), pct(r.Expected))
	}
	return t
}

// SlowResult is the slow-link scenario of one path: trials with link A
// rate-limited, each followed by one without the limit at the same load.
type SlowResult struct {
	Path        string  `json:"path"`
	Limit       string  `json:"limit"`
	OfferedMbps float64 `json:"offered_mbps"`
	Rate        int     `json:"rate"`
	// Capacity is the path's RFC 2544 throughput at this size (median),
	// when measured: near it, loss and latency say more about the CPU than
	// about the slow link.
	Capacity  report.Value `json:"capacity_pps"`
	Limited   []Trial      `json:"limited"`
	Unlimited []Trial      `json:"unlimited"`
	// Medians over the trials.
	LimitedLoss    report.Value `json:"limited_loss_percent"`
	UnlimitedLoss  report.Value `json:"unlimited_loss_percent"`
	LimitedLost    report.Value `json:"limited_lost"`
	LimitedP50     report.Value `json:"limited_p50_us"`
	UnlimitedP50   report.Value `json:"unlimited_p50_us"`
	LimitedP99     report.Value `json:"limited_p99_us"`
	UnlimitedP99   report.Value `json:"unlimited_p99_us"`
	LimitedGbps    report.Value `json:"limited_gbps"`
	UnlimitedGbps  report.Value `json:"unlimited_gbps"`
	P50Ratio       report.Value `json:"p50_ratio"`
	P99Ratio       report.Value `json:"p99_ratio"`
	DeliveredRatio report.Value `json:"delivered_ratio"`
}

// slowRate is the packet rate that offers mbps megabits per second of
// size-byte payloads.
func slowRate(mbps float64, size int) int {
	return int(math.Round(mbps * 1e6 / float64(size*8)))
}

// slow runs the slow-link scenario over p: pairs of (link A limited,
// no limit) trials; limit sets or removes the limit.
func (b *bench) slow(p *path, pairs int, limit func(on bool) error) {
	rate := slowRate(b.plan.SlowOfferedMbps, b.plan.Size)
	r := &SlowResult{Path: p.name, Limit: b.plan.SlowLimit, OfferedMbps: b.plan.SlowOfferedMbps, Rate: rate, Capacity: report.NA}
	if t := b.res.throughputOf(p.name, b.plan.Size); t != nil && !t.FlatOnly {
		r.Capacity = t.PPS
	}
	fmt.Fprintf(b.out, "  %s:", p.name)
	for range pairs {
		if b.ctx.Err() != nil {
			break
		}
		if err := limit(true); err != nil {
			fmt.Fprintf(b.out, " cannot limit link A: %v\n", err)
			return
		}
		t := b.trial(p, rate, b.plan.Size, b.plan.Trial, false)
		if err := limit(false); err != nil {
			fmt.Fprintf(b.out, " removing the limit: %v", err)
		}
		r.Limited = append(r.Limited, t)
		u := b.trial(p, rate, b.plan.Size, b.plan.Trial, false)
		r.Unlimited = append(r.Unlimited, u)
		fmt.Fprintf(b.out, " limited %s lost, p50 %s µs / unlimited %s lost, p50 %s µs;",
			pct(t.metric(lossPct)), report.F(t.metric(p50), 0), pct(u.metric(lossPct)), report.F(u.metric(p50), 0))
	}
	fmt.Fprintln(b.out)
	r.summarize()
	b.res.Slow = append(b.res.Slow, r)
	b.print(slowTable(b.res.Slow))
}

func p50(r *loadgen.Report) float64 { return r.RTTP50 }
func p99(r *loadgen.Report) float64 { return r.RTTP99 }

// summarize computes the medians and ratios.
func (r *SlowResult) summarize() {
	med := medianOf
	gbps := func(r *loadgen.Report) float64 { return r.DeliveredGbps }
	r.LimitedLoss, r.UnlimitedLoss = med(r.Limited, lossPct), med(r.Unlimited, lossPct)
	r.LimitedLost = med(r.Limited, func(r *loadgen.Report) float64 { return float64(r.Lost) })
	r.LimitedP50, r.UnlimitedP50 = med(r.Limited, p50), med(r.Unlimited, p50)
	r.LimitedP99, r.UnlimitedP99 = med(r.Limited, p99), med(r.Unlimited, p99)
	r.LimitedGbps, r.UnlimitedGbps = med(r.Limited, gbps), med(r.Unlimited, gbps)
	r.P50Ratio = ratio(r.LimitedP50, r.UnlimitedP50)
	r.P99Ratio = ratio(r.LimitedP99, r.UnlimitedP99)
	r.DeliveredRatio = ratio(r.LimitedGbps, r.UnlimitedGbps)
}

// ratio is a/b, missing when either is or b is zero.
func ratio(a, b report.Value) report.Value {
	return report.Value(report.Ratios([]float64{float64(a)}, []float64{float64(b)})[0])
}

// slowTable tabulates every slow-link result.
func slowTable(all []*SlowResult) *report.Table {
	t := &report.Table{
		Title:   "Slow link (link A rate-limited with tbf)",
		Columns: []string{"path", "runs", "of capacity", "limited: loss", "lost", "p50 µs", "p99 µs", "no limit: loss", "p50 µs", "p99 µs", "p50 ratio", "p99 ratio"},
	}
	for _, r := range all {
		t.Add(r.Path, fmt.Sprint(len(r.Limited)), report.Pct(float64(r.Rate)/float64(r.Capacity)), pct(float64(r.LimitedLoss)), report.F(float64(r.LimitedLost), 0),
			report.F(float64(r.LimitedP50), 0), report.F(float64(r.LimitedP99), 0), pct(float64(r.UnlimitedLoss)),
			report.F(float64(r.UnlimitedP50), 0), report.F(float64(r.UnlimitedP99), 0), report.F(float64(r.P50Ratio), 2), report.F(float64(r.P99Ratio), 2))
	}
	if len(all) > 0 {
		r := all[0]
		t.Notes = append(t.Notes, fmt.Sprintf("Link A limited to %s (tbf, both directions) while %.0f Mbit/s of payload is offered (%d pkt/s); each limited run is followed by one without the limit. Medians. \"Of capacity\": the offered rate over the path's RFC 2544 throughput measured above; near 100%%, loss and latency measure the CPU more than the slow link. The direct path has link A only.", r.Limit, r.OfferedMbps, r.Rate))
	}
	return t
}
