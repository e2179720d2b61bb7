package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/internal/sys"
	"github.com/engarde-project/engarde/ring"
)

// ClientConfig configures the client role.
type ClientConfig struct {
	Options
	// ListenAddr is where local WireGuard sends (host:port).
	ListenAddr string
	// DstAddr is the server (host:port, the host may be a name).
	DstAddr string
	// DstOverrides maps an interface name to another server address.
	DstOverrides map[string]string
	// Excluded interfaces never carry a link.
	Excluded []string
	// Labels name interfaces for people (logs, status).
	Labels map[string]string
	// FwMark, when nonzero, marks link packets (SO_MARK).
	FwMark uint32
	// NoBindDevice skips SO_BINDTODEVICE; only the tests use it, to run
	// several links over loopback.
	NoBindDevice bool
	// Interfaces lists interfaces; nil means the system's.
	Interfaces func() ([]Iface, error)
	// Watch returns a source of change notifications; nil means netlink
	// where the OS has it, and rescans only otherwise.
	Watch func() (Watcher, error)
	// Rescan is the safety-net rescan period (1 s when 0).
	Rescan time.Duration
}

// Watcher reports that interfaces or addresses may have changed.
type Watcher interface {
	// Wait blocks until a change; it returns an error after Close.
	Wait() error
	Close() error
}

// Client is the client role: it receives from local WireGuard and sends
// every datagram over every usable interface; it hands whatever comes back
// on any link to WireGuard.
type Client struct {
	cfg  ClientConfig
	log  *Logger
	pool *ring.Pool

	wg     Conn
	wgAddr atomic.Pointer[netip.AddrPort] // where WireGuard last sent from
	wgTx   *sender
	// WireGuardStats counts traffic between the client and WireGuard:
	// Rx is what WireGuard sent, Tx what was handed back to it.
	WireGuardStats Stats
	// NoLink counts datagrams from WireGuard dropped because no link was
	// up.
	NoLink atomic.Uint64
	// Duplicates counts copies of WireGuard messages (the same reply over
	// another link) not handed to WireGuard.
	Duplicates atomic.Uint64
	dedup      dedup

	active atomic.Pointer[[]*link] // links that carry traffic now
	// The fan-out's scratch, used only on the WireGuard receive loop.
	batchWrites []BatchWrite
	batchLinks  []*link
	timeout     atomic.Int64 // write timeout of every sender, ns; reloadable
	started     time.Time

	mu       sync.Mutex // guards links, plans, the planner, swaps and cfg
	links    map[string]*link
	plans    []Plan
	planner  planner
	resolver resolver
	failLog  map[string]string // last error logged per interface
	// swaps are run-time exclusion toggles, as the original's web manager
	// made them: an interface here is excluded if the configuration
	// includes it, and included if the configuration excludes it. They
	// last until ResetExclusions or a restart.
	swaps map[string]bool

	kick chan struct{}
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
	stats Stats
	up    bool // in the active set; guarded by Client.mu
}

// NewClient checks the configuration and opens the WireGuard-side socket.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Interfaces == nil {
		cfg.Interfaces = SystemInterfaces
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = time.Second
	}
	laddr, err := resolveListen(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen address: %w", err)
	}
	if _, _, err := net.SplitHostPort(cfg.DstAddr); err != nil {
		return nil, fmt.Errorf("destination address: %w", err)
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Log,
		links:   map[string]*link{},
		failLog: map[string]string{},
		swaps:   map[string]bool{},
		kick:    make(chan struct{}, 1),
		started: time.Now(),
	}
	c.planner.resolve = c.resolver.resolve
	c.applyLocked(cfg)
	c.active.Store(&[]*link{})
	c.pool, err = cfg.newPool(4)
	if err != nil {
		return nil, err
	}
	o := cfg.socket()
	c.wg, err = cfg.Backend.Listen(laddr, o)
	if err != nil {
		c.pool.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
	}
	return c, nil
}

// resolveListen parses a listen address; an empty host means all
// addresses, a name is resolved.
func resolveListen(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := ua.AddrPort()
	if !ap.Addr().IsValid() {
		// ":port": every address, IPv4 and IPv6.
		ap = netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// applyLocked takes the parts of cfg that may change at run time.
func (c *Client) applyLocked(cfg ClientConfig) {
	c.planner.dst = cfg.DstAddr
	c.planner.overrides = cfg.DstOverrides
	c.planner.labels = cfg.Labels
	// A run-time toggle is relative to the configuration: when the file
	// now says otherwise about that interface, the file wins.
	was, now := setOf(c.cfg.Excluded), setOf(cfg.Excluded)
	for name := range c.swaps {
		if was[name] != now[name] {
			delete(c.swaps, name)
		}
	}
	c.cfg.Excluded = cfg.Excluded
	c.planner.excluded = c.exclusionsLocked()
	c.timeout.Store(cfg.timeout())
}

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// exclusionsLocked combines the configured exclusions with the run-time
// swaps.
func (c *Client) exclusionsLocked() map[string]bool {
	ex := map[string]bool{}
	for _, x := range c.cfg.Excluded {
		ex[x] = true
	}
	for x := range c.swaps {
		ex[x] = !ex[x]
	}
	return ex
}

// Reconfigure applies a new configuration without restarting: the
// destination, overrides, exclusions, labels and write timeout. Links whose
// source and destination stay the same keep their sockets and lose
// nothing; the others are rebuilt. A change to the listen address, the
// firewall mark or the engine options needs a restart: Reconfigure leaves
// those as they were and returns an error naming them (after applying the
// rest).
func (c *Client) Reconfigure(cfg ClientConfig) error {
	if _, _, err := net.SplitHostPort(cfg.DstAddr); err != nil {
		return fmt.Errorf("destination address: %w", err)
	}
	var fixed []string
	if cfg.ListenAddr != c.cfg.ListenAddr {
		fixed = append(fixed, "listenAddr")
	}
	if cfg.FwMark != c.cfg.FwMark {
		fixed = append(fixed, "fwmark")
	}
	if engineChanged(cfg.Options, c.cfg.Options) {
		fixed = append(fixed, "engine")
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	c.mu.Lock()
	c.applyLocked(cfg)
	c.cfg.DstAddr, c.cfg.DstOverrides, c.cfg.Labels, c.cfg.WriteTimeout = cfg.DstAddr, cfg.DstOverrides, cfg.Labels, cfg.WriteTimeout
	c.mu.Unlock()
	c.scan()
	if len(fixed) > 0 {
		return fmt.Errorf("%v cannot change without a restart; kept the running values", fixed)
	}
	return nil
}

// engineChanged reports whether data-path settings that are fixed for a
// run differ. A nil Backend in next means "the same".
func engineChanged(next, cur Options) bool {
	return (next.Backend != nil && next.Backend.Name() != cur.Backend.Name()) ||
		(next.BatchSize != 0 && next.BatchSize != cur.BatchSize) ||
		(next.QueueLength != 0 && next.QueueLength != cur.QueueLength) ||
		(next.BufferSize != 0 && next.BufferSize != cur.BufferSize) ||
		next.GSO != cur.GSO || next.GRO != cur.GRO
}

// SetExclusion excludes or includes an interface until ResetExclusions or
// a restart, and reports whether that changed anything. The change takes
// effect at once.
func (c *Client) SetExclusion(name string, exclude bool) bool {
	c.mu.Lock()
	if c.planner.excluded[name] == exclude {
		c.mu.Unlock()
		return false
	}
	if c.swaps[name] {
		delete(c.swaps, name)
	} else {
		c.swaps[name] = true
	}
	c.planner.excluded = c.exclusionsLocked()
	c.mu.Unlock()
	c.scan()
	return true
}

// Excluded reports whether an interface is excluded now.
func (c *Client) Excluded(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.planner.excluded[name]
}

// ResetExclusions drops the run-time exclusion changes: the configuration
// decides again.
func (c *Client) ResetExclusions() {
	c.mu.Lock()
	clear(c.swaps)
	c.planner.excluded = c.exclusionsLocked()
	c.mu.Unlock()
	c.scan()
}

// Started returns when the client was created.
func (c *Client) Started() time.Time { return c.started }

// ListenAddr returns the address WireGuard should send to.
func (c *Client) ListenAddr() netip.AddrPort { return c.wg.LocalAddr() }

// Backend returns the name of the backend in use.
func (c *Client) Backend() string { return c.cfg.Backend.Name() }

// Run forwards until ctx ends, then closes everything it opened.
func (c *Client) Run(ctx context.Context) error {
	o := c.cfg
	c.wgTx = newSender("wireguard", c.wg, false, &c.wgAddr, o.QueueLength, o.BatchSize, &c.timeout, &c.WireGuardStats, c.log)
	wgRx := newPump("wireguard", c.wg, c.pool, o.BatchSize, &c.WireGuardStats, c.log, c.fanout).start()

	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); c.watch(watchCtx) }()
	go func() { defer wg.Done(); c.scanLoop(watchCtx) }()

	<-ctx.Done()
	stopWatch()
	wg.Wait()

	// Closed links stay in the map so that their counters can still be
	// read once Run has returned.
	c.mu.Lock()
	c.active.Store(&[]*link{})
	for _, l := range c.links {
		c.closeLink(l)
	}
	c.mu.Unlock()
	wgRx.stop()
	c.wgTx.close()
	return c.pool.Close()
}

// fanout is the handler for datagrams from WireGuard: each goes to every
// active link.
func (c *Client) fanout(bufs []*ring.Buf, msgs []Message) {
	// Replies go to wherever WireGuard sent from last.
	if a := msgs[len(msgs)-1].Addr; c.wgAddr.Load() == nil || *c.wgAddr.Load() != a {
		c.setWireGuardAddr(a)
	}
	links := *c.active.Load()
	if len(links) == 0 {
		c.NoLink.Add(uint64(len(bufs)))
		return
	}
	for _, b := range bufs {
		b.Ref(len(links))
	}
	// Link sockets are connected: one set of messages serves every link.
	msgs = fill(msgs, bufs, netip.AddrPort{})
	ws, to := c.batchWrites[:0], c.batchLinks[:0]
	for _, l := range links {
		if !l.tx.direct() {
			l.tx.send(bufs, msgs) // it queues behind its backlog, or drops
			continue
		}
		ws = append(ws, BatchWrite{Conn: l.tx.conn, Msgs: msgs})
		to = append(to, l)
	}
	if bw, ok := c.cfg.Backend.(BatchWriter); ok && len(ws) > 1 {
		// Every link's copy in one call (io_uring: one io_uring_enter).
		bw.TryWriteBatches(ws)
	} else {
		for i := range ws {
			ws[i].N, ws[i].Err = ws[i].Conn.TryWriteBatch(msgs)
		}
	}
	for i, w := range ws {
		to[i].tx.finish(bufs, msgs, w.N, w.Err)
	}
	clear(ws) // no references to links that may close
	clear(to)
	c.batchWrites, c.batchLinks = ws, to // keep the grown scratch
}

func (c *Client) setWireGuardAddr(a netip.AddrPort) {
	p := new(netip.AddrPort)
	*p = a
	if old := c.wgAddr.Swap(p); old != nil {
		c.log.infof("WireGuard now sends from %v (was %v)", a, *old)
	} else {
		c.log.infof("WireGuard peer at %v", a)
	}
}

// reply is the handler for datagrams arriving on a link: they go to
// WireGuard.
func (c *Client) reply(bufs []*ring.Buf, msgs []Message) {
	if c.cfg.Dedup {
		n := c.dedup.filter(bufs, msgs, &c.Duplicates)
		bufs, msgs = bufs[:n], msgs[:n]
	}
	for _, b := range bufs {
		b.Ref(1)
	}
	c.wgTx.send(bufs, msgs)
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
	plans := c.planner.plan(ifs)
	c.plans = plans
	seen := map[string]bool{}
	changed := false
	for _, p := range plans {
		seen[p.Iface.Name] = true
		l := c.links[p.Iface.Name]
		if l != nil && (l.index != p.Iface.Index || (p.Use && (l.local != p.Local || l.dst != p.Dst)) || c.planner.excluded[l.name] || !hasAddr(p.Iface, l.local)) {
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
			c.log.infof("link %s up: %v -> %v", c.linkName(nl), nl.local, nl.dst)
		case l != nil && p.Use != l.up:
			// Down and back up with the same address: the socket and
			// its source port stay, so the server sees the same peer.
			l.up = p.Use
			changed = true
			if p.Use {
				c.log.infof("link %s up again", c.linkName(l))
			} else {
				c.log.infof("link %s down: %s", c.linkName(l), p.Reason)
			}
		}
	}
	for name, l := range c.links {
		if !seen[name] {
			c.log.infof("link %s: interface gone", c.linkName(l))
			c.closeLink(l)
			delete(c.links, name)
			changed = true
		}
	}
	if changed {
		c.publishLocked()
	}
}

func hasAddr(ifi Iface, a netip.Addr) bool { return slices.Contains(ifi.Addrs, a) }

func describeChange(l *link, p Plan) string {
	switch {
	case l.index != p.Iface.Index:
		return "interface recreated"
	case !hasAddr(p.Iface, l.local):
		return fmt.Sprintf("address %v removed", l.local)
	case p.Reason == "excluded":
		return "excluded"
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
	c.active.Store(&act)
}

func (c *Client) openLink(p Plan) (*link, error) {
	o := c.cfg.socket()
	o.Mark = c.cfg.FwMark
	if !c.cfg.NoBindDevice {
		o.Device = p.Iface.Name
	}
	conn, err := c.cfg.Backend.Dial(netip.AddrPortFrom(p.Local, 0), p.Dst, o)
	if err != nil {
		return nil, err
	}
	l := &link{
		name:  p.Iface.Name,
		label: p.Label,
		index: p.Iface.Index,
		local: p.Local,
		dst:   p.Dst,
	}
	l.tx = newSender("link "+l.name, conn, true, nil, c.cfg.QueueLength, c.cfg.BatchSize, &c.timeout, &l.stats, c.log)
	l.rx = newPump("link "+l.name, conn, c.pool, c.cfg.BatchSize, &l.stats, c.log, c.reply).start()
	return l, nil
}

// closeLink takes l out of service. The active set must no longer hold it
// or be republished right after.
func (c *Client) closeLink(l *link) {
	if l.up {
		l.up = false
		c.publishLocked()
	}
	l.rx.stop()
	l.tx.close()
}

// LinkInfo describes one link for status displays.
type LinkInfo struct {
	Name, Label string
	// Status is "active", "idle" (an interface that carries no link now:
	// down, no address) or "excluded".
	Status string
	Reason string
	// Addrs are the interface's addresses.
	Addrs []netip.Addr
	// Local and Dst are the link's addresses while it has a socket.
	Local netip.Addr
	Dst   netip.AddrPort
	// Target is the configured destination for this interface (its
	// override or dstAddr), as written, whether or not it is used.
	Target string
	Stats  *Stats // nil when no socket is open
}

// Links describes every interface the last scan saw.
func (c *Client) Links() []LinkInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]LinkInfo, 0, len(c.plans))
	for _, p := range c.plans {
		li := LinkInfo{Name: p.Iface.Name, Label: p.Label, Status: "idle", Reason: p.Reason, Addrs: p.Iface.Addrs, Local: p.Local, Dst: p.Dst, Target: c.planner.target(p.Iface.Name)}
		if p.Reason == "excluded" {
			li.Status = "excluded"
		}
		if l := c.links[p.Iface.Name]; l != nil {
			li.Stats = &l.stats
			li.Local, li.Dst = l.local, l.dst
			if l.up {
				li.Status = "active"
			}
		}
		out = append(out, li)
	}
	return out
}

// PlanInterfaces returns what a client with cfg would do with each of ifs,
// for `engarde-client list-interfaces`.
func PlanInterfaces(cfg ClientConfig, ifs []Iface) []Plan {
	var r resolver
	p := planner{dst: cfg.DstAddr, overrides: cfg.DstOverrides, excluded: map[string]bool{}, labels: cfg.Labels, resolve: r.resolve}
	for _, x := range cfg.Excluded {
		p.excluded[x] = true
	}
	return p.plan(ifs)
}
