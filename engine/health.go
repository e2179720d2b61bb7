package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/internal/sys"
)

// Link and tunnel states (see LinkStatus and TunnelState) are decided here,
// on a ticker, from what the data path counts already: the hot path only
// updates its atomics (LastRx, the send counters), and the evaluation
// reads them every healthEvery.
//
// A link is stalled when it has a socket and either
//   - probes are answered on some link, and this one has had neither a
//     probe answer nor a datagram for stallAfter; or
//   - WireGuard has been sending over it for stallAfter and nothing came
//     back on it in that time. WireGuard's messages only: a probe to an
//     original engarde server, or a re-sent initiation (which the server
//     absorbs), gets no answer on an idle tunnel, and must not stall it.
//
// The second rule needs no probe, so it works against an original engarde
// server too, and it covers the worst case: every link dead at once. It is
// back to active at its first datagram or probe answer.

// stallAfter is how long a link may send without anything coming back
// before it counts as stalled: longer than a round trip and a few lost
// packets, short enough that an operator sees a dead server within
// seconds. One-way traffic without probes (an upload over UDP that
// WireGuard answers only with a keepalive every 10 s) can look stalled
// for a moment; probes, answered, keep such a link active.
const stallAfter = 3 * time.Second

// healthEvery is how often the states are evaluated.
const healthEvery = 250 * time.Millisecond

// maxEvents is how many changes of state Events keeps.
const maxEvents = 100

// noState is the From of an event for something that had no state (a link
// seen for the first time, a client address joining) and the To of one
// that has none any more (an address forgotten).
const noState = "none"

// Failure reports whether the change is to a failing state (a link stalled
// or down, a tunnel degraded or down): those are logged as warnings, the
// recoveries as information.
func (e Event) Failure() bool {
	switch e.To {
	case string(LinkStalled), string(LinkDown), string(TunnelDegraded):
		return true
	}
	return false
}

// eventLog keeps the last maxEvents changes of state.
type eventLog struct {
	mu   sync.Mutex // guards ring, next and n
	ring [maxEvents]Event
	next int // where the next event goes
	n    int // events held
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.ring[l.next] = e
	l.next = (l.next + 1) % maxEvents
	l.n = min(l.n+1, maxEvents)
	l.mu.Unlock()
}

// list returns the events held, oldest first.
func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, 0, l.n)
	for i := range l.n {
		out = append(out, l.ring[(l.next-l.n+i+maxEvents)%maxEvents])
	}
	return out
}

// changed records a change of state and logs it.
func (r *role) changed(e Event, msg string) {
	r.events.add(e)
	r.log.event(e, msg)
}

// Events returns the last changes of state, oldest first.
func (c *Client) Events() []Event { return c.events.list() }

// Events returns the last changes of state, oldest first.
func (s *Server) Events() []Event { return s.events.list() }

// clientHealth is the client's evaluated states; guarded by Client.mu.
type clientHealth struct {
	links    map[string]*linkHealth // by interface name
	tunnel   TunnelInfo
	reported bool  // the tunnel's first state has been logged
	last     int64 // nanotime of the last evaluation
	answered bool  // probes are answered on some link, at the last tick
	// wgSent is how many datagrams from WireGuard the client had taken at
	// the last evaluation: each went to every link carrying traffic.
	wgSent uint64
}

// linkHealth is one interface's evaluated state, and what the evaluation
// remembers of its counters.
type linkHealth struct {
	status LinkStatus
	since  time.Time
	reason string
	// expected says that the interface should carry traffic, so that its
	// failure degrades the tunnel: it carried some in this run, or the
	// configuration names it (a label or a destination override). An
	// interface that was never up (a bridge without carrier) is shown
	// down but degrades nothing.
	expected bool

	link    *link // the socket the counters below are of; nil when not carrying
	refused uint64
	errs    uint64
	// waiting is since when (nanotime) WireGuard has sent over the link
	// with nothing back; 0 when something came back since.
	waiting int64
	upAt    int64 // when it began carrying, on this socket
	// errAt is when the kernel last refused a send or reported an ICMP
	// error (nanotime); errMsg says what.
	errAt  int64
	errMsg string
}

// linkRefused counts the ICMP port unreachables the link's socket reported.
func linkRefused(l *link) uint64 {
	if r, ok := l.tx.conn.(conn.Refuser); ok {
		return r.Refused()
	}
	return 0
}

// healthLoop evaluates the states every healthEvery until ctx ends.
func (c *Client) healthLoop(ctx context.Context) {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			answered := c.probesAnswered() // before mu: the prober has locks of its own
			c.mu.Lock()
			c.hl.answered = answered
			if !c.stopping {
				c.evaluateLocked(nanotime())
			}
			c.mu.Unlock()
		}
	}
}

// evaluateLocked decides every interface's state and the tunnel's, and
// reports the changes. The scan calls it too, so that an interface going
// down or an exclusion shows at once, not at the next tick.
func (c *Client) evaluateLocked(now int64) {
	h := &c.hl
	if h.links == nil {
		h.links = map[string]*linkHealth{}
	}
	wall := time.Unix(0, wallFromMono(now))
	// What WireGuard sent since the last look (less what came from other
	// local programs, which went nowhere) went to every carrying link.
	wg := c.WireGuardStats.RxPackets.Load() - c.Foreign.Load()
	wgSent := wg > h.wgSent
	h.wgSent = wg
	seen := make(map[string]bool, len(c.plans))
	for _, p := range c.plans {
		if p.Iface.Loopback {
			continue // never a link: not worth a state
		}
		name := p.Iface.Name
		seen[name] = true
		lh := h.links[name]
		first := lh == nil
		if first {
			lh = &linkHealth{}
			h.links[name] = lh
		}
		st, why := c.judgeLocked(p, lh, now, wgSent)
		if st == LinkActive || p.Label != "" || c.planner.overrides[name] != "" {
			lh.expected = true
		}
		switch {
		case first && st != LinkActive:
			// What the interface was when the client first saw it is no
			// change: a bridge without carrier stays quiet.
			lh.status, lh.since, lh.reason = st, wall, why
		case first || st != lh.status:
			from := string(lh.status)
			if first {
				from = noState
			}
			lh.status, lh.since, lh.reason = st, wall, why
			c.changed(Event{At: wall, Link: name, From: from, To: string(st), Reason: why},
				fmt.Sprintf("link %s %s: %s", labelled(name, p.Label), verb(st), why))
		default:
			lh.reason = why
		}
	}
	for name, lh := range h.links {
		if seen[name] {
			continue
		}
		delete(h.links, name)
		if lh.status != LinkDown && lh.status != LinkExcluded {
			const why = "interface gone"
			c.changed(Event{At: wall, Link: name, From: string(lh.status), To: string(LinkDown), Reason: why},
				fmt.Sprintf("link %s %s: %s", name, verb(LinkDown), why))
		}
	}
	st, why := c.tunnelLocked()
	t := &h.tunnel
	if !h.reported || st != t.State {
		from := string(t.State)
		if !h.reported {
			from = noState
		}
		h.reported = true
		t.State, t.Since, t.Reason = st, wall, why
		msg := "tunnel " + string(st)
		if why != "" {
			msg += ": " + why
		}
		c.changed(Event{At: wall, From: from, To: string(st), Reason: why}, msg)
	}
	t.Reason = why
	h.last = now
}

// judgeLocked decides one interface's state from its plan and its link;
// wgSent says that WireGuard sent since the last evaluation.
func (c *Client) judgeLocked(p Plan, lh *linkHealth, now int64, wgSent bool) (LinkStatus, string) {
	l := c.links[p.Iface.Name]
	switch {
	case p.Excluded:
		lh.link = nil
		if c.swaps[p.Iface.Name] {
			return LinkExcluded, "excluded at run time"
		}
		return LinkExcluded, "excluded by the configuration"
	case l == nil && p.Use:
		lh.link = nil
		if err := c.failLog[p.Iface.Name]; err != "" {
			return LinkDown, "no socket: " + err
		}
		return LinkDown, "no socket"
	case l == nil || !l.up:
		lh.link = nil
		return LinkDown, p.Reason
	}
	ref, errs := linkRefused(l), l.stats.SendErrors.Load()
	if lh.link != l {
		// A new socket, or one carrying again: judged from now on.
		lh.link, lh.refused, lh.errs = l, ref, errs
		lh.waiting, lh.upAt, lh.errAt = 0, now, 0
		wgSent = false // before it carried
	}
	heard := max(lh.upAt, l.probe.lastAnswer())
	if rx := l.stats.LastRx.Load(); rx != 0 {
		heard = max(heard, rx-epoch.UnixNano())
	}
	if lh.waiting != 0 && heard > lh.waiting {
		lh.waiting = 0 // answered since it began waiting
	}
	if wgSent && lh.waiting == 0 {
		// Sent since the last look: the earliest the send can have been.
		lh.waiting = max(c.hl.last, lh.upAt, 1)
	}
	switch {
	case ref > lh.refused:
		lh.errAt = now
		lh.errMsg = fmt.Sprintf("nothing listens on %v (ICMP port unreachable: a wrong port, or the server not running)", l.dst)
	case errs > lh.errs:
		lh.errAt = now
		lh.errMsg = "sends fail"
		if e := l.tx.lastErr.Load(); e != nil {
			lh.errMsg = "sends fail: " + (*e).Error()
			if sys.IsFiltered(*e) {
				lh.errMsg = "a firewall on this host refuses what the link sends: " + (*e).Error()
			}
		}
	}
	lh.refused, lh.errs = ref, errs
	quiet := time.Duration(now - heard).Round(100 * time.Millisecond)
	sending := lh.waiting != 0 && now-lh.waiting > int64(stallAfter)
	unprobed := c.hl.answered && now-heard > int64(stallAfter)
	switch {
	case !sending && !unprobed:
		return LinkActive, fmt.Sprintf("%v -> %v", l.local, l.dst)
	case lh.errAt > heard:
		return LinkStalled, "unreachable: " + lh.errMsg
	case sending:
		return LinkStalled, fmt.Sprintf("nothing came back for %v while WireGuard sends", quiet)
	}
	return LinkStalled, fmt.Sprintf("no probe answer and nothing received for %v", quiet)
}

// tunnelLocked decides the tunnel's state from the links' states.
func (c *Client) tunnelLocked() (TunnelState, string) {
	var active int
	var stalled, failing, none []string
	var unreachable []string // "name: why" of the stalled links that the kernel says cannot reach the server
	for _, p := range c.plans {
		lh := c.hl.links[p.Iface.Name]
		if lh == nil {
			continue
		}
		name := p.Iface.Name
		switch lh.status {
		case LinkActive:
			active++
		case LinkStalled:
			stalled = append(stalled, name)
			failing = append(failing, name+" stalled")
			if why, ok := strings.CutPrefix(lh.reason, "unreachable: "); ok {
				unreachable = append(unreachable, name+": "+why)
			}
		case LinkDown:
			if lh.expected {
				failing = append(failing, name+" down ("+lh.reason+")")
			}
			none = append(none, name+" down ("+lh.reason+")")
		case LinkExcluded:
			none = append(none, name+" excluded")
		}
	}
	switch {
	case active > 0 && len(failing) == 0:
		return TunnelUp, ""
	case active > 0:
		return TunnelDegraded, strings.Join(failing, "; ")
	case len(unreachable) > 0:
		return TunnelDown, "server unreachable: " + sameReason(unreachable)
	case len(stalled) > 0:
		return TunnelDown, fmt.Sprintf("server silent: nothing came back for %v on %s (the server, or the path to it, drops what the links send)",
			stallAfter, strings.Join(stalled, ", "))
	case len(none) == 0:
		return TunnelDown, "no link: no interface"
	}
	return TunnelDown, "no link: " + strings.Join(none, "; ")
}

// sameReason joins "name: why" items, saying why once when every item
// says the same: "why (a, b)".
func sameReason(items []string) string {
	var names []string
	why := ""
	for _, it := range items {
		n, w, _ := strings.Cut(it, ": ")
		if why != "" && w != why {
			return strings.Join(items, "; ")
		}
		why = w
		names = append(names, n)
	}
	return why + " (" + strings.Join(names, ", ") + ")"
}

// verb is how a log sentence says that a link took state st: "up" for
// active, as the log always said (scripts wait for "link eth0 up: ").
func verb(st LinkStatus) string {
	if st == LinkActive {
		return "up"
	}
	return string(st)
}

func labelled(name, label string) string {
	if label != "" {
		return name + " (" + label + ")"
	}
	return name
}

// Tunnel returns the client's tunnel state.
func (c *Client) Tunnel() TunnelInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.hl.tunnel
	if !c.hl.reported {
		t = TunnelInfo{State: TunnelDown, Since: c.started, Reason: "no link: not started"}
	}
	t.Probes = c.probeMode()
	return t
}

// serverHealth is the server's evaluated state; guarded by Server.mu.
type serverHealth struct {
	tunnel TunnelInfo
	// What the sockets to WireGuard reported at the last tick: ICMP
	// errors and failed sends, per session socket (nil: the handshake
	// socket).
	upErrs map[*session]uint64
	errAt  int64 // when they last grew (nanotime)
	errMsg string
}

// The server's tunnel is down when WireGuard cannot be reached: the sockets
// to dstAddr report ICMP port unreachables (nothing listens there: the
// wrong port, WireGuard not running) or fail to send, and nothing came
// from WireGuard since. That is the one failure that takes every client
// down at once, and the only one the server can tell from its own
// sockets. "No client" is not down: a server waiting for clients, or
// whose clients are idle, is ready, and /healthz must not fail a host
// whose tunnel nobody uses right now. Nor is a WireGuard that does not
// answer an initiation: it drops those of unknown peers, and anyone can
// send one.
//
// It is degraded while some session has a stalled member: an address that
// has sent nothing for stallAfter while another address of its session
// sends, so a link of that client is failing.

// healthLoop evaluates the server's states every healthEvery until ctx ends.
func (s *Server) healthLoop(ctx context.Context) {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			if !s.stopping {
				s.evaluateLocked(nanotime())
			}
			s.mu.Unlock()
		}
	}
}

// memberLink names a member in events: its session and slot, which stay
// while its address may change.
func memberLink(m *member) string {
	return fmt.Sprintf("session %d link %d", m.sess().id, m.slot)
}

// evaluateLocked decides the members' states and the server's.
func (s *Server) evaluateLocked(now int64) {
	wall := time.Unix(0, wallFromMono(now))
	var stalled []string
	for _, sess := range s.sessions {
		if sess.legacy {
			continue // unrelated sources: one's silence says nothing of another's
		}
		var freshest int64
		for _, m := range sess.members {
			freshest = max(freshest, m.lastSeen.Load())
		}
		for _, m := range sess.members {
			seen := m.lastSeen.Load()
			switch {
			case m.status == LinkActive && now-seen > int64(stallAfter) && now-freshest <= int64(stallAfter):
				why := fmt.Sprintf("%v sent nothing for %v while another link of its client sends", m.addr, time.Duration(now-seen).Round(100*time.Millisecond))
				s.setMemberLocked(m, LinkStalled, why, wall, now)
			case m.status == LinkStalled && seen > m.stalledAt:
				s.setMemberLocked(m, LinkActive, fmt.Sprintf("%v sends again", m.addr), wall, now)
			}
			if m.status == LinkStalled {
				stalled = append(stalled, fmt.Sprintf("%s stalled (%v)", memberLink(m), m.addr))
			}
		}
	}
	h := &s.hl
	if h.upErrs == nil {
		h.upErrs = map[*session]uint64{}
	}
	heard := s.UpstreamStats.LastRx.Load()
	grew := s.noteUpstreamLocked(nil, s.hs, &s.UpstreamStats)
	live := make(map[*session]bool, len(s.sessions))
	for _, sess := range s.sessions {
		live[sess] = true
		heard = max(heard, sess.upStats.LastRx.Load())
		grew = s.noteUpstreamLocked(sess, sess.up, &sess.upStats) || grew
	}
	for sess := range h.upErrs {
		if sess != nil && !live[sess] {
			delete(h.upErrs, sess)
		}
	}
	if grew {
		h.errAt = now
	}
	st, why := TunnelUp, ""
	switch {
	case h.errAt != 0 && heard <= wallFromMono(h.errAt):
		st, why = TunnelDown, fmt.Sprintf("wireguard unreachable: %v: %s", s.dst, h.errMsg)
	case len(stalled) > 0:
		st, why = TunnelDegraded, strings.Join(stalled, "; ")
	}
	t := &h.tunnel
	if t.State == "" {
		t.State, t.Since = TunnelUp, s.started
	}
	if st != t.State {
		from := t.State
		t.State, t.Since = st, wall
		msg := "server " + string(st)
		if why != "" {
			msg += ": " + why
		}
		s.changed(Event{At: wall, From: string(from), To: string(st), Reason: why}, msg)
	}
	t.Reason = why
}

// noteUpstreamLocked takes what a socket to WireGuard reported, and says
// whether its refusals or send errors grew since the last tick.
func (s *Server) noteUpstreamLocked(sess *session, c conn.Conn, st *Stats) bool {
	var ref uint64
	if r, ok := c.(conn.Refuser); ok {
		ref = r.Refused()
	}
	n := ref + st.SendErrors.Load()
	h := &s.hl
	old := h.upErrs[sess] // 0 for a new socket: it began at 0
	h.upErrs[sess] = n
	if n <= old {
		return false
	}
	h.errMsg = "nothing listens on that port (ICMP port unreachable)"
	if st.SendErrors.Load() > 0 && ref == 0 {
		h.errMsg = "sends fail"
	}
	return true
}

// setMemberLocked changes a member's state and reports it.
func (s *Server) setMemberLocked(m *member, st LinkStatus, why string, wall time.Time, now int64) {
	from := m.status
	m.status, m.statusAt = st, wall
	if st == LinkStalled {
		m.stalledAt = now
	}
	s.changed(Event{At: wall, Link: memberLink(m), From: string(from), To: string(st), Reason: why},
		fmt.Sprintf("%s %s: %s", memberLink(m), verb(st), why))
}

// joinedLocked reports a member's arrival in its session.
func (s *Server) joinedLocked(m *member) {
	if m.sess().legacy {
		// forwardAnyUDP's sources are not a client's links.
		s.log.infof("session %d: address %v joined (replying from %v)", m.sess().id, m.addr, m.local)
		return
	}
	why := fmt.Sprintf("%v joined (replying from %v)", m.addr, m.local)
	s.changed(Event{At: m.since, Link: memberLink(m), From: noState, To: string(LinkActive), Reason: why},
		fmt.Sprintf("%s %s: %s", memberLink(m), verb(LinkActive), why))
}

// leftLocked reports that a member left its session: why says how (it
// was forgotten after its silence, made way for another, its session
// ended).
func (s *Server) leftLocked(m *member, why string) {
	if m.sess().legacy {
		s.log.infof("session %d: address %v left: %s", m.sess().id, m.addr, why)
		return
	}
	wall := time.Now()
	s.changed(Event{At: wall, Link: memberLink(m), From: string(m.status), To: noState, Reason: why},
		fmt.Sprintf("%s left: %v %s", memberLink(m), m.addr, why))
}

// Tunnel returns the server's state over its sessions.
func (s *Server) Tunnel() TunnelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.hl.tunnel
	if t.State == "" {
		t = TunnelInfo{State: TunnelUp, Since: s.started}
	}
	// The server answers every member's probes: "on" once a client probes.
	t.Probes = "off"
	if s.ProbesAnswered.Load() > 0 {
		t.Probes = "on"
	}
	return t
}
