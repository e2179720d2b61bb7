package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/engarde-project/engarde/bench/report"
)

// The RTT bound (see Bound): twice the steady p99.9 or 2 ms above it,
// whichever is larger; a row's p99.9 must be within it.
const (
	boundFactor = 2
	boundFloor  = 2 * time.Millisecond
	boundShare  = 0.001
)

// table tabulates a run.
func table(res *Result) *report.Table {
	t := &report.Table{
		Title:   "Fault matrix: WireGuard (wireguard-go) over engarde, two links",
		Columns: []string{"row", "must hold", "sent", "lost (link up)", "lost (outage)", "max RTT (sent at)", "p99.9", "bound", "above (machine)", "reference max", "resume", "link back", "verdict"},
	}
	for _, r := range res.Rows {
		m := r.Measure
		resume := ""
		if r.Spec.OutageFrom != 0 {
			resume = ms(m.Resume)
			if m.Resume < 0 {
				resume = "never"
			}
		}
		var backs []string
		for _, b := range r.Backs {
			if b.After < 0 {
				backs = append(backs, b.Link+" never")
			} else {
				backs = append(backs, b.Link+" "+ms(b.After))
			}
		}
		v := "PASS"
		if !r.Pass {
			v = "FAIL: " + strings.Join(r.Why, "; ")
		}
		if len(r.Notes) > 0 {
			v += " (" + strings.Join(r.Notes, "; ") + ")"
		}
		lost := fmt.Sprint(m.Lost)
		if m.Lost > 0 {
			lost += fmt.Sprintf(" (%.1f-%.1f s)", float64(m.FirstLost-r.Start)/1e9, float64(m.LastLost-r.Start)/1e9)
		}
		t.Add(r.Name, r.Must, fmt.Sprint(m.Sent), lost, fmt.Sprint(m.LostOutage),
			maxAt(r), ms(m.P999), ms(r.Bound.Limit()), fmt.Sprintf("%d (%d)", m.Over, m.Stalled), ms(r.Reference.MaxRTT), resume, strings.Join(backs, ", "), v)
	}
	b := res.Bound
	t.Notes = []string{
		fmt.Sprintf("Stream: %d pkt/s of %d-byte datagrams with sequence numbers, echoed by a sink behind WireGuard; a stream of its own per row. Steady (%d packets): RTT p99.9 %s (the median of its three thirds'), max %s.",
			res.Rate, res.Size, res.SteadySent, ms(b.Steady), ms(res.SteadyMax)),
		fmt.Sprintf("RTT bound: max(%g x steady p99.9, steady p99.9 + %s), %s for the run's steady stream; a row's steady p99.9 is the larger of the run's and that of its own packets before its first fault (the load of this shared machine changes from minute to minute). At most %g%% of a row's packets may be above it (the row's own p99.9 within it). The steady p99.9 alone would fail healthy rows by chance (a row sends thousands of packets, and one in a thousand is above it by definition), and this shared 2-core VM adds scheduling delays of milliseconds. Max RTT is shown with when its packet was sent, from the row's start.",
			b.Factor, ms(b.Floor), ms(b.Limit()), 100*b.Share),
		fmt.Sprintf("Lost (link up): packets sent while at least one link was up that never came back; lost (outage): those sent from %s (or the longest round trip of the second before, if longer) before an outage to the first echo after the path was back (expected). Times in parentheses are send times from the row's start (faults begin at 1 s). Resume: from the path back (link up, role or wireguard-go started) to that first echo. Link back: from the link's return until its server end has received %d packets of the stream; a link back beside a working one may take one ARP retransmission (1 s), when the burst of replies the server's kernel queued for its address while it was down overflows the client's receive backlog and takes the ARP reply with it (a kernel effect; the other link carried everything meanwhile).",
			ms(inFlight), backPackets),
		fmt.Sprintf("Above (machine): packets above the bound that count against the row, and in parentheses those excused because a reference stream (the same rate over loopback in the client namespace, through neither engarde nor WireGuard) sent from %s before until their echo was held up at least half as much beyond the bound (at least %s): the machine stalled, not the tunnel. Reference max: the reference stream's largest RTT in the row; hundreds of milliseconds there mean the machine itself stalled (other work on its 2 cores), and the row's figures are not the tunnel's alone. Reference p99.9 in the steady phase: %s.", ms(stallBefore), ms(stallMin), ms(res.SteadyRef)),
		"The client names the server by DNS (srv-a.egf.test, srv-b.egf.test, from a DNS server in the client namespace); both roles keep a state file (stateFile), as the shipped systemd units do.",
	}
	t.Notes = append(t.Notes, fmt.Sprintf("Whole run: %s.", res.Duration.Round(time.Second)))
	return t
}

// maxAt is the row's largest RTT and when its packet was sent, from the
// row's start: "12 ms at 3.1 s".
func maxAt(r RowResult) string {
	if r.Measure.Judged == 0 {
		return "-"
	}
	return fmt.Sprintf("%s at %.1f s", ms(r.Measure.MaxRTT), float64(r.Measure.WorstAt-r.Start)/1e9)
}
