package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// Watcher reports that interfaces or addresses may have changed.
type Watcher interface {
	// Wait blocks until a change; it returns an error after Close.
	Wait() error
	Close() error
}

// link is one interface's socket to the server.
type link struct {
	name  string
	label string
	index int
	local netip.Addr
	dst   netip.AddrPort
	tx    *sender
	rx    *pump
	in    mergeInput // its way into the client's merge towards WireGuard
	stats Stats
	up    bool // in the active set; guarded by Client.mu
	// path is the link's number in the duplicate filter (-1: none, past
	// maxPaths links), and quality what the filter measured of it.
	path    int
	quality pathQuality
	// probe measures the link's RTT and loss (probe.go).
	probe linkProbe
	// rejoined is when the link last re-sent WireGuard's initiation
	// because it received nothing (nanotime); guarded by Client.mu.
	rejoined int64
	// excluded is set while an exclusion holds the link out of the
	// active set: it keeps its socket (and so its source port, which the
	// server knows it by, and its counters) and drops what it receives.
	excluded atomic.Bool
}

// watch turns kernel notifications into rescans.
func (c *Client) watch(ctx context.Context) {
	newWatcher := c.cfg.Watch
	if newWatcher == nil {
		newWatcher = systemWatcher
	}
	w, err := newWatcher()
	if err != nil {
		c.log.warnf("cannot watch interfaces (%v); rescanning every %v", err, c.cfg.Rescan)
		return
	}
	go func() {
		<-ctx.Done()
		w.Close()
	}()
	for {
		if err := w.Wait(); err != nil {
			if ctx.Err() == nil {
				c.log.warnf("interface watcher stopped (%v); rescanning every %v", err, c.cfg.Rescan)
			}
			return
		}
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func systemWatcher() (Watcher, error) {
	if !sys.Supported {
		return nil, errors.ErrUnsupported
	}
	return sys.NewLinkWatcher()
}

// scanLoop rescans on every notification (coalescing bursts) and
// periodically.
func (c *Client) scanLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Rescan)
	defer t.Stop()
	c.scan()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.win.sweep(nanotime())
			c.rejoin()
		case <-c.kick:
			// A change usually comes as several messages (link, then
			// addresses); let them land before looking.
			time.Sleep(5 * time.Millisecond)
			select {
			case <-c.kick:
			default:
			}
		}
		c.scan()
	}
}

// Rejoin timing: a link that has received nothing for quietFor while
// WireGuard sends re-sends WireGuard's last initiation, at most every
// rejoinEvery: the server may no longer know its address (a NAT on the
// way gave it a new port, or the server restarted), and the initiation's
// bytes let it join again without waiting for WireGuard's next handshake.
const (
	quietFor    = 3 * time.Second
	rejoinEvery = 5 * time.Second
)

// rejoin re-sends WireGuard's last initiation over the links that have
// gone quiet while WireGuard sends.
func (c *Client) rejoin() {
	now := nanotime()
	wall := wallFromMono(now)
	if wall-c.WireGuardStats.LastRx.Load() > int64(time.Second) {
		return // WireGuard is quiet too: nothing is expected back
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.links {
		if !l.up || wall-l.stats.LastRx.Load() < int64(quietFor) || now-l.rejoined < int64(rejoinEvery) {
			continue
		}
		l.rejoined = now
		c.resendInit(l)
	}
}

// Rescan looks at the interfaces now instead of at the next event or tick.
func (c *Client) Rescan() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// scan compares the interfaces with the links and makes them agree.
func (c *Client) scan() {
	ifs, err := c.cfg.Interfaces()
	if err != nil {
		c.log.warnf("%v", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	plans := c.planner.plan(ifs)
	if cameUp(c.plans, plans) {
		c.names.retry() // DNS may be reachable now
	}
	c.plans = plans
	c.noteScanLocked(ifs, plans)
	seen := map[string]bool{}
	changed := false
	for _, p := range plans {
		seen[p.Iface.Name] = true
		l := c.links[p.Iface.Name]
		if l != nil && (l.index != p.Iface.Index || (p.Use && (l.local != p.Local || l.dst != p.Dst)) || !hasAddr(p.Iface, l.local)) {
			// The interface was recreated, readdressed or excluded:
			// the socket is bound to what is gone.
			c.log.infof("link %s: %s; closing its socket", c.linkName(l), describeChange(l, p))
			c.closeLink(l)
			delete(c.links, l.name)
			l = nil
			changed = true
		}
		switch {
		case l == nil && p.Use:
			nl, err := c.openLink(p)
			c.noteOpenLocked(err)
			if err != nil {
				if c.failLog[p.Iface.Name] != err.Error() {
					c.failLog[p.Iface.Name] = err.Error()
					c.log.warnf("link %s: %v (retrying)", p.Iface.Name, err)
				}
				continue
			}
			delete(c.failLog, p.Iface.Name)
			c.links[p.Iface.Name] = nl
			nl.up = true
			changed = true
			if lh := c.hl.links[p.Iface.Name]; lh != nil && lh.status == LinkActive {
				// A new socket for a link that stays active (a new
				// destination or address): no change of state for the
				// evaluation to log, but the operator wants the new
				// addresses.
				c.log.infof("link %s up: %v -> %v (new socket)", c.linkName(nl), nl.local, nl.dst)
			}
			c.resendInit(nl)
		case l != nil && p.Use != l.up:
			// Down and back up with the same address, or excluded and
			// included again: the socket and its source port stay, so
			// the server sees the same peer. The change of state is
			// logged by the evaluation below.
			l.up = p.Use
			changed = true
			if p.Use {
				c.resendInit(l)
			}
		}
		if l != nil {
			l.excluded.Store(p.Excluded)
		}
	}
	for name, l := range c.links {
		if !seen[name] {
			c.closeLink(l)
			delete(c.links, name)
			changed = true
		}
	}
	if changed {
		c.publishLocked()
	}
	c.evaluateLocked(nanotime())
}

// cameUp reports whether an interface in next is up and running with an
// address that it did not have in prev, or was not up and running there.
func cameUp(prev, next []Plan) bool {
	for _, p := range next {
		if !p.Iface.Up || !p.Iface.Running || p.Iface.Loopback {
			continue
		}
		i := slices.IndexFunc(prev, func(q Plan) bool { return q.Iface.Index == p.Iface.Index })
		if i < 0 || !prev[i].Iface.Up || !prev[i].Iface.Running {
			if len(p.Iface.Addrs) > 0 {
				return true
			}
			continue
		}
		for _, a := range p.Iface.Addrs {
			if !hasAddr(prev[i].Iface, a) {
				return true
			}
		}
	}
	return false
}

func hasAddr(ifi Iface, a netip.Addr) bool { return slices.Contains(ifi.Addrs, a) }

func describeChange(l *link, p Plan) string {
	switch {
	case l.index != p.Iface.Index:
		return "interface recreated"
	case !hasAddr(p.Iface, l.local):
		return fmt.Sprintf("address %v removed", l.local)
	case l.dst != p.Dst:
		return fmt.Sprintf("destination now %v", p.Dst)
	}
	return fmt.Sprintf("source address now %v", p.Local)
}

func (c *Client) linkName(l *link) string {
	if l.label != "" {
		return l.name + " (" + l.label + ")"
	}
	return l.name
}

// publishLocked makes the links that are up the active set.
func (c *Client) publishLocked() {
	act := make([]*link, 0, len(c.links))
	for _, l := range c.links {
		if l.up {
			act = append(act, l)
		}
	}
	slices.SortFunc(act, func(a, b *link) int { return a.index - b.index })
	tx := make([]*sender, len(act))
	var live uint32
	for i, l := range act {
		tx[i] = l.tx
		if l.path >= 0 {
			live |= 1 << l.path
		}
	}
	c.active.Store(&tx)
	c.win.paths.live.Store(live)
}

func (c *Client) openLink(p Plan) (*link, error) {
	o := c.opts.socket()
	o.Mark = c.cfg.FwMark
	o.Device = p.Iface.Name
	sock, err := c.opts.Backend.Dial(netip.AddrPortFrom(p.Local, 0), p.Dst, o)
	if err != nil {
		return nil, err
	}
	l := &link{
		name:  p.Iface.Name,
		label: p.Label,
		index: p.Iface.Index,
		local: p.Local,
		dst:   p.Dst,
		path:  c.freePathLocked(),
	}
	if l.path >= 0 {
		l.quality.since.Store(nanotime())
		c.win.paths.q[l.path].Store(&l.quality)
	}
	l.tx = c.newSender(senderConfig{name: "link " + l.name, conn: sock, own: true, stats: &l.stats})
	l.rx = c.newPump("link "+l.name, sock, &l.stats, c.fromLink(l)).start()
	return l, nil
}

// freePathLocked returns a duplicate-filter number no link has.
func (c *Client) freePathLocked() int {
	var used uint32
	for _, l := range c.links {
		if l.path >= 0 {
			used |= 1 << l.path
		}
	}
	for i := range maxPaths {
		if used&(1<<i) == 0 {
			return i
		}
	}
	return -1
}

// closeLink takes l out of service. The active set must no longer hold it
// or be republished right after.
func (c *Client) closeLink(l *link) {
	if l.up {
		l.up = false
		c.publishLocked()
	}
	if l.path >= 0 && c.win.paths.q[l.path].Load() == &l.quality {
		c.win.paths.q[l.path].Store(nil)
	}
	l.rx.stop()
	l.tx.close()
}
