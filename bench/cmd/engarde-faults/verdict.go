package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// inFlight is how long before a fault a packet may have been sent and
// still be lost to it, in flight or queued in a socket, at least: well
// above the steady round trip here (a few milliseconds). It widens an
// outage backwards; inFlightBefore widens it further when the round trips
// just before were longer.
const inFlight = 20 * time.Millisecond

// inFlightBefore is how long before t a packet may have been sent and
// still be in flight at t: inFlight, or the longest round trip of the
// packets sent in the second before t if that is longer (a loaded machine
// holds packets for hundreds of milliseconds at times).
func inFlightBefore(tr *Trace, t int64) time.Duration {
	d := inFlight
	for i, rtt := range tr.RTT {
		if at := tr.T0 + tr.Sent[i]; at >= t-int64(time.Second) && at < t {
			d = max(d, time.Duration(rtt))
		}
	}
	return d
}

// Bound is the RTT a row's packets must stay under while a link is up:
// the steady p99.9 times Factor, or plus Floor, whichever is larger. The
// steady p99.9 alone would fail a row of healthy traffic by chance (one
// packet in a thousand is above it by definition), and this 2-core
// machine, shared, adds scheduling delays of a few milliseconds that have
// nothing to do with the fault.
type Bound struct {
	Steady time.Duration `json:"steady_p999_ns"`
	Factor float64       `json:"factor"`
	Floor  time.Duration `json:"floor_ns"`
	// Share is the fraction of a row's packets that may exceed it: 0.001
	// makes the row's own p99.9 the figure held to the bound.
	Share float64 `json:"share_over"`
}

// allowed is how many of n packets may exceed the bound.
func (b Bound) allowed(n int) int { return int(float64(n) * b.Share) }

// Limit is the bound itself.
func (b Bound) Limit() time.Duration {
	return max(time.Duration(float64(b.Steady)*b.Factor), b.Steady+b.Floor)
}

// Spec is what a row demands of its stream beyond "no packet lost and
// none late while a link is up".
type Spec struct {
	// OutageFrom, when nonzero, starts a span of expected loss (Unix
	// nanoseconds): every link down, or a role restarting. It ends at the
	// first echo received after BackAt, when the path is back; that echo
	// must come within ResumeWithin of BackAt.
	OutageFrom, BackAt int64
	ResumeWithin       time.Duration
	// Settle extends the outage past that first echo: a restarted
	// wireguard-go's new session takes a moment to replace the old one
	// on both sides (the responder keeps its new keypair as "next" and
	// sends under the old one until the initiator's first data under the
	// new one arrives: wireguard-go's Peer.ReceivedWithKeypair), and what
	// it loses meanwhile is WireGuard's.
	Settle time.Duration
}

// Measure is a row's outcome, from its stream's trace.
type Measure struct {
	// Sent counts the packets sent in the judged span; Lost those lost
	// while a link was up, LostOutage those lost in the outage (expected).
	Sent       int `json:"sent"`
	Lost       int `json:"lost"`
	LostOutage int `json:"lost_outage"`
	// MaxRTT and P999 are over the packets sent while a link was up; Over
	// counts those above the bound.
	MaxRTT time.Duration `json:"max_rtt_ns"`
	P999   time.Duration `json:"p999_rtt_ns"`
	Over   int           `json:"over_bound"`
	// Stalled counts the packets above the bound while the reference
	// stream shows the machine stalled (see stalled); they are not in
	// Over.
	Stalled int `json:"over_bound_machine"`
	// Judged counts the packets those figures are over; WorstAt is when
	// the one with MaxRTT was sent (Unix nanoseconds).
	Judged  int   `json:"judged"`
	WorstAt int64 `json:"worst_at_unix_ns"`
	// FirstLost and LastLost are when the first and the last packet
	// counted in Lost were sent (Unix nanoseconds), 0 without any.
	FirstLost int64 `json:"first_lost_unix_ns,omitempty"`
	LastLost  int64 `json:"last_lost_unix_ns,omitempty"`
	// Resume is the time from BackAt to the first echo after it; -1 when
	// none came, 0 when the row has no outage.
	Resume time.Duration `json:"resume_ns"`
	// OutageEnd is the end of the outage (Unix nanoseconds), 0 without
	// one.
	OutageEnd int64 `json:"outage_end_unix_ns,omitempty"`
}

// Machine stalls: a packet above the bound is the machine's doing, not the
// tunnel's, when a packet of the reference stream (the same rate over
// loopback in the client namespace, through neither engarde nor
// WireGuard) sent from stallBefore before it until its echo came back was
// held up by at least half as much as it exceeded the bound, and by at
// least stallMin.
const (
	stallBefore = 20 * time.Millisecond
	stallMin    = time.Millisecond
)

// stalled reports whether ref shows the machine stalled while the packet
// sent at (Unix nanoseconds) took rtt against the bound limit.
func stalled(ref *Trace, at int64, rtt, limit time.Duration) bool {
	if ref == nil || len(ref.Sent) == 0 {
		return false
	}
	need := max((rtt-limit)/2, stallMin)
	lo, hi := at-int64(stallBefore)-ref.T0, at+int64(rtt)-ref.T0
	i, _ := slices.BinarySearch(ref.Sent, lo)
	for ; i < len(ref.Sent) && ref.Sent[i] <= hi; i++ {
		if time.Duration(ref.RTT[i]) >= need {
			return true
		}
	}
	return false
}

// measure judges the packets of tr sent in [from, to) (Unix nanoseconds)
// against spec and bound; ref, when not nil, is the reference stream that
// tells the machine's stalls from the tunnel's.
func measure(tr, ref *Trace, from, to int64, spec Spec, bound Bound) Measure {
	var m Measure
	var outFrom, outTo int64 = 0, -1 // the outage, in send times; empty
	if spec.OutageFrom != 0 {
		outFrom = spec.OutageFrom - int64(inFlightBefore(tr, spec.OutageFrom))
		outTo = 1<<63 - 1 // until the first echo after BackAt, if any
		m.Resume = -1
		first := int64(1<<63 - 1)
		for i, rtt := range tr.RTT {
			if rtt == 0 {
				continue
			}
			if at := tr.T0 + tr.Sent[i] + rtt; at > spec.BackAt && at < first {
				first = at
			}
		}
		if first != 1<<63-1 {
			outTo = first + int64(spec.Settle)
			m.Resume = time.Duration(first - spec.BackAt)
		}
		m.OutageEnd = min(outTo, to)
	}
	limit := bound.Limit()
	var rtts []time.Duration
	for i, rtt := range tr.RTT {
		at := tr.T0 + tr.Sent[i]
		if at < from || at >= to {
			continue
		}
		m.Sent++
		if at >= outFrom && at < outTo {
			if rtt == 0 {
				m.LostOutage++
			}
			continue
		}
		if rtt == 0 {
			if m.Lost == 0 {
				m.FirstLost = at
			}
			m.Lost++
			m.LastLost = at
			continue
		}
		d := time.Duration(rtt)
		if d > m.MaxRTT {
			m.MaxRTT, m.WorstAt = d, at
		}
		rtts = append(rtts, d)
		switch {
		case d <= limit:
		case stalled(ref, at, d, limit):
			m.Stalled++
		default:
			m.Over++
		}
	}
	m.Judged = len(rtts)
	if len(rtts) > 0 {
		slices.Sort(rtts)
		m.P999 = quantile(rtts, 0.999)
	}
	return m
}

// quantile returns the q quantile of sorted xs (the nearest rank).
func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	k := int(float64(len(xs))*q+0.999999) - 1
	return xs[min(max(k, 0), len(xs)-1)]
}

// Back is a link that must carry traffic again within Within of At (Unix
// nanoseconds): After is how long it took, -1 when it did not.
type Back struct {
	Link   string        `json:"link"`
	At     int64         `json:"at_unix_ns"`
	Within time.Duration `json:"within_ns"`
	After  time.Duration `json:"after_ns"`
}

// verdict says whether a row passed and, if not, every reason.
func verdict(m Measure, spec Spec, bound Bound, backs []Back, errs []string) (bool, []string) {
	why := append([]string(nil), errs...)
	if m.Sent == 0 {
		why = append(why, "no packet sent")
	}
	if m.Lost > 0 {
		why = append(why, fmt.Sprintf("%d lost while a link was up", m.Lost))
	}
	if m.Over > bound.allowed(m.Judged) {
		why = append(why, fmt.Sprintf("%d packets above %s (%d allowed)", m.Over, ms(bound.Limit()), bound.allowed(m.Judged)))
	}
	if spec.OutageFrom != 0 {
		switch {
		case m.Resume < 0:
			why = append(why, "traffic never resumed")
		case m.Resume > spec.ResumeWithin:
			why = append(why, fmt.Sprintf("resumed after %s, more than %s", ms(m.Resume), ms(spec.ResumeWithin)))
		}
	}
	for _, b := range backs {
		switch {
		case b.After < 0:
			why = append(why, b.Link+" carried nothing after coming back")
		case b.After > b.Within:
			why = append(why, fmt.Sprintf("%s carried traffic after %s, more than %s", b.Link, ms(b.After), ms(b.Within)))
		}
	}
	return len(why) == 0, why
}

// ms formats a duration in milliseconds, with one decimal below 10 ms.
func ms(d time.Duration) string {
	x := float64(d) / 1e6
	switch {
	case d < 0:
		return "-"
	case x < 10:
		return fmt.Sprintf("%.1f ms", x)
	case x < 10000:
		return fmt.Sprintf("%.0f ms", x)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", x/1000), ".0") + " s"
}
