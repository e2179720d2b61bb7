package engine

import (
	"crypto/rand"
	"encoding/binary"
	"slices"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// Probes measure each link's round trip and loss while the tunnel is idle
// as well as busy. The client sends a small datagram over every link that
// is up, every probe interval; the server answers it on the same link, to
// members of a WireGuard session only, with a reply of the same size.
//
// A probe is never shaped like WireGuard's messages, whose first four
// bytes are a little-endian type of 1 to 4: it starts with probeMagic and
// is 24 bytes long. So an original engarde server, which passes everything
// to WireGuard, makes WireGuard drop it twice over (wireguard-go
// device/receive.go, RoutineReceiveIncoming: datagrams below
// MinMessageSize, 32 bytes, are skipped, and so is an unknown type; the
// kernel's receive.c, prepare_skb_header, rejects both as well). The
// client then concludes that the server does not speak probes (see
// probeUnansweredAfter).
//
// Wire format, little-endian:
//
//	0   probeMagic
//	1   kind: probeRequest or probeReply
//	2   probeVersion
//	3   0
//	4   sequence number (uint32), per link
//	8   the client's send time (int64, its monotonic clock)
//	16  tag (uint64): SipHash-2-4 of bytes 4 to 16 under the link's key
//
// The reply is the probe with its kind byte changed. Only the client knows
// the key (a random one per link, never sent), so only the client can
// check the tag: a reply is counted only when its tag verifies and it
// matches a probe sent on that link and not answered yet. Someone off the
// path cannot fake a round trip or hide a loss; someone on one link sees
// the tags of that link only, and can delay or drop its probes, as it can
// its traffic.
const (
	probeLen     = 24
	probeMagic   = 0xEA
	probeRequest = 1
	probeReply   = 2
	probeVersion = 1
)

// Client-side limits of the probes.
const (
	// probeTimeout is how long a probe waits for its answer: later, it
	// counts as lost (and a late answer changes nothing). It must stay
	// below 2^32 ns, the round trip's room in a slot.
	probeTimeout = time.Second
	// probeWindow is how far back the figures look.
	probeWindow = 60 * time.Second
	// probeSlots is how many probes a link remembers: a power of two; the
	// window is the last probeSlots probes when they span less than
	// probeWindow (below 60 s / 1024, about 59 ms between probes).
	probeSlots = 1024
	// probeUnansweredAfter is how many probes must go unanswered while
	// the server's WireGuard messages kept arriving (the server is alive)
	// before the client concludes that the server does not answer
	// probes. A dead tunnel brings no WireGuard message, so it is never
	// taken for an old server.
	probeUnansweredAfter = 8
	// probeSlowEvery is how often each link is probed once the server is
	// taken for one that does not answer: enough to notice an upgrade.
	probeSlowEvery = 30 * time.Second
)

// Server-side rate limit per member: a token bucket (kept as GCRA, one
// atomic word) refilled once per probeRefill, holding probeBurst. A
// client probing at the fastest interval the configuration allows gets
// four times fewer than the limit, so the bucket never refuses it.
const (
	probeRefill = defaults.MinProbeInterval / 4
	probeBurst  = 16
)

// Slot results (a slot's low 32 bits).
const (
	slotOutstanding = 0
	slotLost        = 0xFFFFFFFF
)

// probeShaped reports whether b (a datagram, or the first of a train of
// seg-sized ones) has a probe's size and first byte: the cheap test the
// receive paths make before anything else.
func probeShaped(b []byte, seg int) bool {
	return (len(b) == probeLen || seg == probeLen && len(b) > 0) && b[0] == probeMagic
}

// parseProbe returns the fields of a probe or reply, and false if b is
// neither.
func parseProbe(b []byte) (kind byte, seq uint32, sent int64, tag uint64, ok bool) {
	if len(b) != probeLen || b[0] != probeMagic || b[2] != probeVersion || b[3] != 0 {
		return 0, 0, 0, 0, false
	}
	if b[1] != probeRequest && b[1] != probeReply {
		return 0, 0, 0, 0, false
	}
	return b[1], binary.LittleEndian.Uint32(b[4:8]), int64(binary.LittleEndian.Uint64(b[8:16])), binary.LittleEndian.Uint64(b[16:24]), true
}

// putProbe writes a probe into b (at least probeLen bytes) and returns its
// length.
func putProbe(b []byte, k *probeKey, seq uint32, sent int64) int {
	b = b[:probeLen]
	b[0], b[1], b[2], b[3] = probeMagic, probeRequest, probeVersion, 0
	binary.LittleEndian.PutUint32(b[4:8], seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(sent))
	binary.LittleEndian.PutUint64(b[16:24], k.tag(b[4:16]))
	return probeLen
}

// probeKey is a link's SipHash key.
type probeKey struct{ k0, k1 uint64 }

func newProbeKey() *probeKey {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return &probeKey{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

func (k *probeKey) tag(b []byte) uint64 { return sipHash24(k.k0, k.k1, b) }

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast
// short-input PRF", 2012): a keyed function whose outputs tell nothing of
// the key, made for short messages such as a probe's 12 bytes.
func sipHash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = v1<<13 | v1>>51
		v1 ^= v0
		v0 = v0<<32 | v0>>32
		v2 += v3
		v3 = v3<<16 | v3>>48
		v3 ^= v2
		v0 += v3
		v3 = v3<<21 | v3>>43
		v3 ^= v0
		v2 += v1
		v1 = v1<<17 | v1>>47
		v1 ^= v2
		v2 = v2<<32 | v2>>32
	}
	n := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		round()
		round()
		v0 ^= w
		m = m[8:]
	}
	last := uint64(n) << 56
	for i := len(m) - 1; i >= 0; i-- {
		last |= uint64(m[i]) << (8 * i)
	}
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// linkProbe is a link's prober state. The client's probe loop sends and
// judges; the link's receive loop records answers, lock-free; stats reads
// both, on the slow path.
type linkProbe struct {
	key atomic.Pointer[probeKey] // nil until the link's first probe
	// on: the link's figures mean something (it has been probed, probes
	// are on and the server answers them); stats is nil otherwise.
	on              atomic.Bool
	sent, answered  atomic.Uint64
	last            atomic.Int64 // nanotime of the last answer; 0: never
	slots           [probeSlots]probeSlot
	next, judged    uint32 // the next sequence number to send and to judge; the probe loop's
	lastSent        int64  // nanotime; the probe loop's
	lostAlive       int    // probes lost while WireGuard's messages arrived; the probe loop's
	scratchB        [1]*ring.Packet
	scratchM        [1]conn.Message
	wireGuardAtSent [probeSlots]uint64 // WireGuard's count when each slot's probe left; the probe loop's
}

// probeSlot is one probe in flight or judged: state holds its sequence
// number (high 32 bits) and its result (low 32: slotOutstanding, slotLost
// or the round trip in ns), so that one compare-and-swap records an
// answer, and a reply for a slot reused since finds another number.
type probeSlot struct {
	state atomic.Uint64
	sent  atomic.Int64 // nanotime; stored before state
}

// send writes a probe to the link's sender, at now; wgTx is the count of
// messages handed to WireGuard so far. It reports whether the probe left
// (a pool without a free buffer sends nothing).
func (p *linkProbe) send(l *link, pool *ring.Pool, now int64, wgTx uint64) bool {
	k := p.key.Load()
	if k == nil {
		k = newProbeKey()
		p.key.Store(k)
		p.next, p.judged = 1, 1
	}
	b := pool.Get()
	if b == nil {
		return false
	}
	seq := p.next
	if p.next++; p.next == 0 {
		p.next = 1 // 0 marks a slot never used
	}
	s := &p.slots[seq%probeSlots]
	p.wireGuardAtSent[seq%probeSlots] = wgTx
	s.sent.Store(now)
	s.state.Store(uint64(seq) << 32)
	b.N = putProbe(b.Data(), k, seq, now)
	b.Seg, b.Stamp = 0, now
	p.scratchB[0] = b
	l.tx.send(p.scratchB[:], p.scratchM[:]) // takes the buffer's reference, never blocks
	p.scratchB[0] = nil
	p.sent.Add(1)
	p.lastSent = now
	return true
}

// judge marks the probes older than probeTimeout that have no answer as
// lost, counting those lost while WireGuard's messages kept arriving
// (wgTx grew since they left).
func (p *linkProbe) judge(now int64, wgTx uint64) {
	for p.judged != p.next {
		i := p.judged % probeSlots
		s := &p.slots[i]
		if now-s.sent.Load() < int64(probeTimeout) {
			return
		}
		// Lost while the server was alive: WireGuard's messages had
		// come before the probe left (so the link's address was a
		// member already: a server of ours would have answered) and kept
		// coming after.
		if st := s.state.Load(); uint32(st) == slotOutstanding && s.state.CompareAndSwap(st, st|slotLost) && p.wireGuardAtSent[i] > 0 && wgTx > p.wireGuardAtSent[i] {
			p.lostAlive++
		}
		if p.judged++; p.judged == 0 {
			p.judged = 1
		}
	}
}

// Outcomes of a reply.
const (
	replyAnswered = iota
	replyBad      // forged, replayed, or for a probe never sent on this link
	replyLate     // genuine, for a probe already judged lost
)

// answer records reply b, received at (nanotime).
func (p *linkProbe) answer(b []byte, at int64) int {
	k := p.key.Load()
	kind, seq, sent, tag, ok := parseProbe(b)
	if k == nil || !ok || kind != probeReply || seq == 0 || k.tag(b[4:16]) != tag {
		return replyBad
	}
	s := &p.slots[seq%probeSlots]
	st := s.state.Load()
	if uint32(st>>32) != seq || s.sent.Load() != sent {
		return replyBad // not in flight: a slot reused since, or never sent
	}
	switch uint32(st) {
	case slotOutstanding:
	case slotLost:
		return replyLate
	default:
		return replyBad // answered already: a replay
	}
	rtt := max(at-sent, 1)
	if rtt >= int64(probeTimeout) {
		return replyLate // judge will count it lost
	}
	if !s.state.CompareAndSwap(st, uint64(seq)<<32|uint64(rtt)) {
		if uint32(s.state.Load()) == slotLost {
			return replyLate
		}
		return replyBad
	}
	p.answered.Add(1)
	p.last.Store(at)
	return replyAnswered
}

// lastAnswer is when a probe was last answered on the link (nanotime, 0:
// never).
func (p *linkProbe) lastAnswer() int64 { return p.last.Load() }

// stats returns what the probes measured; nil when probes are off, the
// link was never probed, or the server does not answer probes.
func (p *linkProbe) stats() *ProbeStats {
	if !p.on.Load() {
		return nil
	}
	now := nanotime()
	st := &ProbeStats{Sent: p.sent.Load(), Answered: p.answered.Load()}
	if last := p.last.Load(); last != 0 {
		st.LastAnswer = time.Unix(0, wallFromMono(last))
	}
	var rtts []time.Duration
	var jitter, prev time.Duration
	var pairs int
	// Every slot, in no order: the window is by time, and jitter wants
	// the answers in the order they were sent, so sort by send time.
	type judged struct {
		sent int64
		rtt  time.Duration
	}
	var got []judged
	for i := range p.slots {
		s := &p.slots[i]
		state := s.state.Load()
		sent := s.sent.Load()
		if state>>32 == 0 || now-sent > int64(probeWindow) {
			continue
		}
		// Loss counts only probes past their time: the answered of the
		// last second would count before their lost siblings can.
		old := now-sent >= int64(probeTimeout)
		switch r := uint32(state); {
		case r == slotLost || r == slotOutstanding:
			if old {
				st.Window++
				st.Lost++
			}
		default:
			if old {
				st.Window++
			}
			got = append(got, judged{sent, time.Duration(r)})
		}
	}
	slices.SortFunc(got, func(a, b judged) int { return int(a.sent - b.sent) })
	for i, g := range got {
		rtts = append(rtts, g.rtt)
		if i > 0 {
			jitter += (g.rtt - prev).Abs()
			pairs++
		}
		prev = g.rtt
	}
	if pairs > 0 {
		st.Jitter = jitter / time.Duration(pairs)
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		st.RTT50, st.RTT99 = nearestRank(rtts, 50), nearestRank(rtts, 99)
	}
	return st
}

// nearestRank is the p-th percentile of sorted (not empty): the smallest
// value with at least p% of the values at or below it.
func nearestRank(sorted []time.Duration, p int) time.Duration {
	return sorted[max((p*len(sorted)+99)/100-1, 0)]
}

// clientProbes is the client's probe state.
type clientProbes struct {
	interval atomic.Int64 // ns; <= 0: off; reloadable
	// unanswered: the server has not answered a probe while its
	// WireGuard messages arrived; the links are probed every
	// probeSlowEvery only.
	unanswered atomic.Bool
	links      []*link // the probe loop's scratch
}

// ProbeCounters are the client's probe counters, summed over links.
type ProbeCounters struct {
	// ProbesSent counts probes sent; ProbesAnswered the replies that
	// matched a probe in flight.
	ProbesSent, ProbesAnswered atomic.Uint64
	// ProbesBad counts replies dropped because their tag did not verify
	// or they matched no probe in flight (forged or replayed);
	// ProbesLate genuine replies that came after probeTimeout.
	ProbesBad, ProbesLate atomic.Uint64
}

// probeInterval returns the engine's interval for a configured one: the
// default for 0, off (-1) when negative.
func probeInterval(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return defaults.ProbeInterval
	case d < 0:
		return -1
	}
	return d
}

// probeMode says what the probes do: "on", "off", or "unanswered" when the
// server has not answered one while its WireGuard messages arrive (an
// original engarde server).
func (c *Client) probeMode() string {
	switch {
	case c.probes.interval.Load() <= 0:
		return "off"
	case c.probes.unanswered.Load():
		return "unanswered"
	}
	return "on"
}

// probesAnswered reports whether the server has answered any probe on any
// link: when false, probes say nothing about a link's health.
func (c *Client) probesAnswered() bool { return c.ProbesAnswered.Load() > 0 }

// probeLoop probes the links until done is closed.
func (c *Client) probeLoop(done <-chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		iv := time.Duration(c.probes.interval.Load())
		c.probeTick(nanotime(), iv)
		// At least every second: a reload's new interval takes effect
		// within one, and the lost are judged within one of their time.
		if iv <= 0 || iv > time.Second {
			iv = time.Second
		}
		t.Reset(iv)
	}
}

// probeTick sends a probe on every link that is up whose last probe left
// iv ago or more (probeSlowEvery when the server does not answer probes),
// judges those past their time, and decides whether the server answers
// probes.
func (c *Client) probeTick(now int64, iv time.Duration) {
	c.mu.Lock()
	ls := c.probes.links[:0]
	for _, l := range c.links {
		if iv <= 0 || l.up {
			ls = append(ls, l)
		}
	}
	c.probes.links = ls
	c.mu.Unlock()
	defer clear(ls)
	if iv <= 0 {
		for _, l := range ls {
			l.probe.on.Store(false)
		}
		return
	}
	wgTx := c.WireGuardStats.TxPackets.Load()
	slow := c.probes.unanswered.Load()
	every := int64(iv)
	if slow {
		every = int64(probeSlowEvery)
	}
	lostAlive := 0
	for _, l := range ls {
		p := &l.probe
		p.judge(now, wgTx)
		lostAlive += p.lostAlive
		if p.key.Load() != nil && now-p.lastSent < every {
			continue
		}
		if p.send(l, c.pool, now, wgTx) {
			c.ProbesSent.Add(1)
		}
	}
	switch {
	case c.probesAnswered():
		if c.probes.unanswered.Swap(false) {
			c.log.infof("the server answers probes now: measuring RTT and loss")
		}
	case !slow && lostAlive >= probeUnansweredAfter:
		c.probes.unanswered.Store(true)
		c.log.infof("the server answers no probes (an original engarde server?): RTT and loss are not measured; probing every %v to notice an upgrade", probeSlowEvery)
	}
	on := !c.probes.unanswered.Load()
	for _, l := range ls {
		l.probe.on.Store(on)
	}
}

// takeReplies takes the probe replies out of a batch received on link l,
// and returns what is left for WireGuard: a length and a byte compared per
// datagram, no allocation. A train of probe-sized datagrams (GRO) is all
// probe replies: no WireGuard message is that short.
func (c *Client) takeReplies(l *link, bufs []*ring.Packet, msgs []conn.Message) ([]*ring.Packet, []conn.Message) {
	k := 0
	for i := range msgs {
		m := &msgs[i]
		if m.N > 0 && probeShaped(m.Buf[:m.N], m.Seg) && c.reply(l, m.Buf[:m.N], m.Seg, bufs[i].Stamp) {
			continue
		}
		keep(bufs, msgs, i, k)
		k++
	}
	return bufs[:k], msgs[:k]
}

// reply handles a probe-shaped datagram (or train) b received on l at at,
// and reports whether it was the probes' (and so not WireGuard's).
func (c *Client) reply(l *link, b []byte, seg int, at int64) bool {
	if seg == probeLen && seg < len(b) {
		for len(b) > 0 {
			n := min(len(b), seg)
			c.count(l.probe.answer(b[:n], at))
			b = b[n:]
		}
		return true
	}
	if _, _, _, _, ok := parseProbe(b); !ok {
		return false // another 24-byte datagram: WireGuard's to judge (and drop)
	}
	c.count(l.probe.answer(b, at)) // a probe, not a reply, counts as bad
	return true
}

func (c *Client) count(outcome int) {
	switch outcome {
	case replyAnswered:
		c.ProbesAnswered.Add(1)
	case replyLate:
		c.ProbesLate.Add(1)
	default:
		c.ProbesBad.Add(1)
	}
}

// ServerProbeCounters are the server's probe counters.
type ServerProbeCounters struct {
	// ProbesAnswered counts probes answered; ProbesRefused those from an
	// address that is no member of a WireGuard session (a stranger, a
	// pending address, forwardAnyUDP's sources), dropped unanswered;
	// ProbesLimited those over a member's rate limit (and trains of
	// probes), dropped unanswered.
	ProbesAnswered, ProbesRefused, ProbesLimited atomic.Uint64
}

// probe handles a probe-shaped datagram, bufs[0] and msgs[0], from mb
// (nil: an address in no session): a member of a WireGuard session gets
// the reply through its own sender (the socket and local address its
// traffic uses), within its rate limit. Nothing else happens: no
// liveness, no duplicate filter, no table entry, nothing to WireGuard. It
// reports false, leaving the datagram to the caller, for a source outside
// WireGuard's sessions under forwardAnyUDP, whose datagrams are data.
func (s *Server) probe(mb *member, bufs []*ring.Packet, msgs []conn.Message, now int64) bool {
	if s.cfg.ForwardAnyUDP && (mb == nil || mb.sess().legacy) {
		// Not a WireGuard session's: with forwardAnyUDP such sources'
		// datagrams are data, whatever their first byte.
		return false
	}
	m := &msgs[0]
	b := m.Buf[:m.N]
	if m.Seg > 0 && m.Seg < m.N {
		s.ProbesLimited.Add(uint64(m.Count())) // a burst no client sends
		return true
	}
	kind, _, _, _, ok := parseProbe(b)
	if !ok || kind != probeRequest || mb == nil || mb.sess().legacy {
		s.ProbesRefused.Add(1)
		return true
	}
	if !allowProbe(&mb.probeTAT, now) {
		s.ProbesLimited.Add(1)
		return true
	}
	b[1] = probeReply
	sendKept(mb.tx, bufs, msgs)
	s.ProbesAnswered.Add(1)
	return true
}

// allowProbe is the generic cell rate algorithm (ITU-T I.371) on tat, the
// theoretical arrival time: a token bucket of probeBurst tokens refilled
// every probeRefill, in one compare-and-swap.
func allowProbe(tat *atomic.Int64, now int64) bool {
	const tau = int64((probeBurst - 1) * probeRefill)
	for {
		t := tat.Load()
		base := max(t, now)
		if base-now > tau {
			return false
		}
		if tat.CompareAndSwap(t, base+int64(probeRefill)) {
			return true
		}
	}
}
