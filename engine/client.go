package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
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
	// Interfaces lists interfaces; nil means the system's.
	Interfaces func() ([]Iface, error)
	// Watch returns a source of change notifications; nil means netlink
	// where the OS has it, and rescans only otherwise.
	Watch func() (Watcher, error)
	// Rescan is the safety-net rescan period (1 s when 0).
	Rescan time.Duration
	// StateFile, when set, keeps WireGuard's last handshake across a
	// restart (see clientState).
	StateFile string
	// ProbeInterval is the time between probes on each link (probe.go):
	// the default when 0, no probes when negative. Reloadable.
	ProbeInterval time.Duration
}

// Client is the client role: it receives from local WireGuard and sends
// every datagram over every usable interface; it hands whatever comes back
// on any link to WireGuard.
type Client struct {
	role
	cfg ClientConfig

	wg     conn.Conn
	wgAddr atomic.Pointer[netip.AddrPort] // where WireGuard last sent from
	wgTx   *sender
	toWG   merge // orders the links' datagrams to wgTx (merge.go)
	// WireGuardStats counts traffic between the client and WireGuard:
	// Rx is what WireGuard sent, Tx what was handed back to it.
	WireGuardStats Stats
	// NoLink counts datagrams from WireGuard dropped because no link was
	// up.
	NoLink atomic.Uint64
	// Foreign counts datagrams on the listen socket dropped because they
	// came from another address than WireGuard's and were no handshake.
	Foreign atomic.Uint64
	ProbeCounters

	probes clientProbes
	win    windows // the duplicate filter, judging the indexes WireGuard handed out

	initMu   sync.Mutex // guards lastInit
	lastInit struct {
		msg [wgInitiationLen]byte
		at  int64 // nanotime; 0: none yet
	}
	stateKick chan struct{} // a new handshake to save
	stateLog  rateLimit

	active atomic.Pointer[[]*sender] // the senders of the links that carry traffic now
	out    *fanout                   // used only on the WireGuard receive loop

	mu      sync.Mutex // guards links, plans, the planner, swaps and cfg
	links   map[string]*link
	plans   []Plan
	planner planner
	failLog map[string]string // last error logged per interface
	hl      clientHealth      // the links' and the tunnel's states (health.go)
	notes   notes             // what is logged once (startup.go)
	// swaps are run-time exclusion toggles, as the original's web manager
	// made them: an interface here is excluded if the configuration
	// includes it, and included if the configuration excludes it. They
	// last until ResetExclusions or a restart.
	swaps map[string]bool
	// stopping is set once Run closes the links: nothing opens one
	// again, since the pool their receives land in is about to go.
	stopping bool

	kick chan struct{}
	// names resolves the destinations that are names, in the
	// background: the scan reads its answers and never waits for DNS.
	names names
}

// NewClient checks the configuration and opens the WireGuard-side socket.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Interfaces == nil {
		cfg.Interfaces = SystemInterfaces
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = time.Second
	}
	laddr, err := conn.ResolveListen(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen address: %w", err)
	}
	if _, _, err := net.SplitHostPort(cfg.DstAddr); err != nil {
		return nil, fmt.Errorf("destination address: %w", err)
	}
	c := &Client{
		cfg:     cfg,
		links:   map[string]*link{},
		failLog: map[string]string{},
		swaps:   map[string]bool{},
		kick:    make(chan struct{}, 1),
		// The state file's writer is kicked from the WireGuard receive
		// loop, which never waits for it.
		stateKick: make(chan struct{}, 1),
	}
	if err := c.role.init(&c.cfg.Options, 4); err != nil {
		return nil, err
	}
	c.toWG.batch = c.opts.BatchSize
	c.keepBufs = c.opts.BatchSize // a few sockets: a batch each is little memory
	c.out = newFanout(c.opts.Backend)
	c.names.init(c.log, c.Rescan)
	c.names.retain(configuredNames(cfg))
	c.planner.resolve = c.names.get
	c.applyLocked(c.cfg)
	c.notes.names = true
	c.active.Store(&[]*sender{})
	c.probes.interval.Store(int64(probeInterval(cfg.ProbeInterval)))
	c.wg, err = c.opts.Backend.Listen(laddr, c.opts.socket())
	if err != nil {
		c.pool.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, portInUse("engarde-client", laddr, err, nil))
	}
	return c, nil
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
	var fixed fixedSettings
	fixed.check("listenAddr", cfg.ListenAddr != c.cfg.ListenAddr)
	fixed.check("fwmark", cfg.FwMark != c.cfg.FwMark)
	fixed.check("stateFile", cfg.StateFile != c.cfg.StateFile)
	fixed.engine(cfg.Options, c.cfg.Options)
	c.probes.interval.Store(int64(probeInterval(cfg.ProbeInterval)))
	c.mu.Lock()
	c.applyLocked(cfg)
	c.cfg.DstAddr, c.cfg.DstOverrides, c.cfg.Labels = cfg.DstAddr, cfg.DstOverrides, cfg.Labels
	c.notes.names = true
	c.mu.Unlock()
	// A new name's first answer, so that its links do not go down while
	// it is looked up; bounded by one lookup's timeout.
	c.names.retain(configuredNames(cfg))
	c.names.await(configuredNames(cfg), lookupTimeout)
	c.scan()
	return fixed.err()
}

// ListenAddr returns the address WireGuard should send to.
func (c *Client) ListenAddr() netip.AddrPort { return c.wg.LocalAddr() }

// Run forwards until ctx ends, then closes everything it opened.
func (c *Client) Run(ctx context.Context) error {
	c.wgTx = c.newSender(senderConfig{name: "wireguard", conn: c.wg, dst: &c.wgAddr, stats: &c.WireGuardStats})
	wgRx := c.newPump("wireguard", c.wg, &c.WireGuardStats, c.fromWireGuard).start()

	c.loadState() // before the first scan opens links: they re-send what it restores
	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	c.names.start(watchCtx)
	wg.Add(4)
	go func() { defer wg.Done(); c.healthLoop(watchCtx) }()
	go func() { defer wg.Done(); c.keepState(watchCtx) }()
	go func() { defer wg.Done(); c.watch(watchCtx) }()
	go func() { defer wg.Done(); c.scanLoop(watchCtx) }()
	wg.Add(1)
	go func() { defer wg.Done(); c.probeLoop(watchCtx.Done()) }()

	<-ctx.Done()
	stopWatch()
	wg.Wait()
	c.names.stop()

	// Closed links stay in the map so that their counters can still be
	// read once Run has returned.
	return c.shutdown(&c.mu, func() {
		c.stopping = true
		c.active.Store(&[]*sender{})
		for _, l := range c.links {
			c.closeLink(l)
		}
	}, wgRx, c.wgTx)
}

// fromWireGuard is the handler for datagrams from WireGuard: each goes to
// every active link.
func (c *Client) fromWireGuard(bufs []*ring.Packet, msgs []conn.Message) {
	cur := c.wgAddr.Load()
	k := 0
	for i := range msgs {
		m := &msgs[i]
		typ := wgType(m.Buf[:m.N], m.Seg)
		if cur == nil || m.Addr != *cur {
			// Replies go to wherever WireGuard sends from: the first
			// sender, then only a handshake moves it (WireGuard
			// restarted on another port). Other datagrams from
			// elsewhere are some other program's.
			if cur != nil && typ != wgInitiationType && typ != wgResponseType {
				c.Foreign.Add(uint64(m.Count()))
				continue
			}
			cur = c.setWireGuardAddr(m.Addr)
		}
		if typ == wgInitiationType || typ == wgResponseType {
			c.handshake(m.Buf[:m.N], typ)
		}
		keep(bufs, msgs, i, k)
		k++
	}
	if k == 0 {
		return
	}
	if !c.out.send(bufs[:k], msgs[:k], *c.active.Load()) {
		c.NoLink.Add(uint64(k))
	}
}

// handshake notes a handshake message from WireGuard: its sender index is
// what the replies will carry as receiver, and an initiation is what a
// link that appears later re-sends to join the session.
func (c *Client) handshake(b []byte, typ byte) {
	c.win.learn(wgSenderIndex(b))
	if typ != wgInitiationType || len(b) != wgInitiationLen {
		return
	}
	c.initMu.Lock()
	copy(c.lastInit.msg[:], b)
	c.lastInit.at = nanotime()
	c.initMu.Unlock()
	select {
	case c.stateKick <- struct{}{}:
	default: // a save is pending already
	}
}

// initLife is how long WireGuard's last initiation can name its session:
// WireGuard's keys last 180 s, and it rekeys well before.
const initLife = 180 * time.Second

// resendInit sends WireGuard's last initiation, byte for byte, over l (a
// link that just came up), so that the server adds the link's address to
// the session at once rather than at WireGuard's next handshake. WireGuard
// never sees the copy: the server recognises the bytes.
func (c *Client) resendInit(l *link) {
	c.initMu.Lock()
	defer c.initMu.Unlock()
	if c.lastInit.at == 0 || nanotime()-c.lastInit.at > int64(initLife) {
		return
	}
	b := c.pool.Get()
	if b == nil {
		return
	}
	b.N = copy(b.Data(), c.lastInit.msg[:])
	b.Seg, b.Stamp = 0, nanotime()
	l.tx.send([]*ring.Packet{b}, make([]conn.Message, 1))
	c.log.debugf("link %s: re-sent WireGuard's last initiation to join the session", c.linkName(l))
}

func (c *Client) setWireGuardAddr(a netip.AddrPort) *netip.AddrPort {
	p := new(netip.AddrPort)
	*p = a
	if old := c.wgAddr.Swap(p); old != nil {
		c.log.infof("WireGuard now sends from %v (was %v)", a, *old)
	} else {
		c.log.infof("WireGuard peer at %v", a)
	}
	return p
}

// fromLink is the handler for datagrams arriving on link l: they go to
// WireGuard, through the merge that keeps every link's batches in one
// order.
func (c *Client) fromLink(l *link) func([]*ring.Packet, []conn.Message) {
	l.in.handle = func(bufs []*ring.Packet, msgs []conn.Message) {
		bufs, msgs = c.takeReplies(l, bufs, msgs)
		c.toWireGuard(c.wgTx, &c.win, l.path, bufs, msgs)
	}
	return func(bufs []*ring.Packet, msgs []conn.Message) {
		if l.excluded.Load() {
			// An excluded link carries nothing either way: the server
			// sends to it until it times the address out; what comes
			// is counted (RxPackets) and dropped.
			return
		}
		c.toWG.run(&l.in, bufs, msgs)
	}
}
