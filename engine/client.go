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
	// WireGuardStats counts traffic between the client and WireGuard:
	// Rx is what WireGuard sent, Tx what was handed back to it.
	WireGuardStats Stats
	// NoLink counts datagrams from WireGuard dropped because no link was
	// up.
	NoLink atomic.Uint64

	active atomic.Pointer[[]*sender] // the senders of the links that carry traffic now
	out    *fanout                   // used only on the WireGuard receive loop

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
	}
	if err := c.role.init(&c.cfg.Options, 4); err != nil {
		return nil, err
	}
	c.out = newFanout(c.opts.Backend)
	c.planner.resolve = c.resolver.resolve
	c.applyLocked(c.cfg)
	c.active.Store(&[]*sender{})
	c.wg, err = c.opts.Backend.Listen(laddr, c.opts.socket())
	if err != nil {
		c.pool.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.ListenAddr, err)
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
	fixed.engine(cfg.Options, c.cfg.Options)
	c.mu.Lock()
	c.applyLocked(cfg)
	c.cfg.DstAddr, c.cfg.DstOverrides, c.cfg.Labels = cfg.DstAddr, cfg.DstOverrides, cfg.Labels
	c.mu.Unlock()
	c.scan()
	return fixed.err()
}

// ListenAddr returns the address WireGuard should send to.
func (c *Client) ListenAddr() netip.AddrPort { return c.wg.LocalAddr() }

// Run forwards until ctx ends, then closes everything it opened.
func (c *Client) Run(ctx context.Context) error {
	c.wgTx = c.newSender(senderConfig{name: "wireguard", conn: c.wg, dst: &c.wgAddr, stats: &c.WireGuardStats})
	wgRx := c.newPump("wireguard", c.wg, &c.WireGuardStats, c.fromWireGuard).start()

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
	return c.shutdown(&c.mu, func() {
		c.active.Store(&[]*sender{})
		for _, l := range c.links {
			c.closeLink(l)
		}
	}, wgRx, c.wgTx)
}

// fromWireGuard is the handler for datagrams from WireGuard: each goes to
// every active link.
func (c *Client) fromWireGuard(bufs []*ring.Packet, msgs []conn.Message) {
	// Replies go to wherever WireGuard sent from last.
	if a := msgs[len(msgs)-1].Addr; c.wgAddr.Load() == nil || *c.wgAddr.Load() != a {
		c.setWireGuardAddr(a)
	}
	if !c.out.send(bufs, msgs, *c.active.Load()) {
		c.NoLink.Add(uint64(len(bufs)))
	}
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
func (c *Client) reply(bufs []*ring.Packet, msgs []conn.Message) {
	c.toWireGuard(c.wgTx, bufs, msgs)
}
