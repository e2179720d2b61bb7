package topo

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// RelayPort is where a link's delay relay listens, on the link's server
// address beside engarde-server's ServerPort.
const RelayPort = ServerPort + 1

// RelayReady and RelayDone are what a relay process logs when it listens
// and, followed by its RelayStats in JSON, when it stops.
const (
	RelayReady = "relay: listening"
	RelayDone  = "relay: stopped: "
)

// DelayedLink is a link of a tunnel whose traffic goes through a delay
// relay (Tunnel.DelayLink).
type DelayedLink struct {
	// Link is the link's index (1 for eth-a), Addr the relay's address.
	Link int
	Addr string
	// Relay is the relay process, in the server namespace.
	Relay *Proc
	t     *Tunnel
}

// DelayLink sends link i through a relay in the server namespace that
// holds each datagram for delay in each direction (Relay): it listens on
// the link's server address, port RelayPort, and forwards to
// engarde-server from that address, which the server therefore sees as
// the link's client address. The client is pointed at it by a reload
// (TunnelConfig.Via), and DelayLink returns once the link is up through
// it. relay is the relay's program and leading arguments, to which
// DelayLink appends -listen, -upstream, -bind and -delay; the program must
// log RelayReady when it listens (engarde-bench relay does).
func (t *Tunnel) DelayLink(i int, delay time.Duration, relay ...string) (*DelayedLink, error) {
	l := Plan(i)
	srv := l.ServerAddr
	if t.Config.V6 {
		srv = l.ServerV6
	}
	listen := netip.AddrPortFrom(srv, RelayPort)
	args := append(append([]string(nil), relay[1:]...), "-listen", listen.String(), "-upstream", t.Config.ServerDstOf(i),
		"-bind", netip.AddrPortFrom(srv, 0).String(), "-delay", delay.String())
	p, err := t.Start(t.Topo.Server, nil, relay[0], args...)
	if err != nil {
		return nil, err
	}
	d := &DelayedLink{Link: i, Addr: listen.String(), Relay: p, t: t}
	if err := p.WaitLog(5*time.Second, 1, RelayReady); err != nil {
		_ = p.Stop()
		return nil, err
	}
	if err := t.route(i, d.Addr); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return d, nil
}

// Stop points the client at engarde-server again, waits until the link is
// up on it, stops the relay and returns what it relayed.
func (d *DelayedLink) Stop() (RelayStats, error) {
	err := d.t.route(d.Link, "")
	_ = d.Relay.Stop() // SIGTERM: it exits 0 after logging its counters
	var st RelayStats
	out := d.Relay.Stderr.String()
	if i := strings.LastIndex(out, RelayDone); i >= 0 {
		line, _, _ := strings.Cut(out[i+len(RelayDone):], "\n")
		if jerr := json.Unmarshal([]byte(line), &st); jerr != nil && err == nil {
			err = fmt.Errorf("relay counters: %w", jerr)
		}
	} else if err == nil {
		err = fmt.Errorf("the relay logged no counters: %s", out)
	}
	return st, err
}

// route sets the client's destination on link i to via (engarde-server's
// own address when empty), reloads the client and waits until it logs the
// link up towards it.
func (t *Tunnel) route(i int, via string) error {
	c := t.Config
	c.Via = map[int]string{}
	for k, v := range t.Config.Via {
		if k != i {
			c.Via[k] = v
		}
	}
	if via != "" {
		c.Via[i] = via
	}
	dst := c.LinkDst(i)
	subs := []string{"link " + Plan(i).Name + " up: ", "-> " + dst}
	n := t.Client.CountLog(subs...)
	if err := t.WriteConfig(c.YAML()); err != nil {
		return err
	}
	t.Config = c
	if err := t.Client.Reload(); err != nil {
		return err
	}
	return t.Client.WaitLog(5*time.Second, n+1, subs...)
}

// RelayMain is a relay process: the relay subcommand of engarde-bench and
// of engarde-faults, run in the server namespace. Its flags are -listen,
// -upstream, -bind and -delay (defDelay when absent). It logs RelayReady
// when it listens; when SIGTERM or an interrupt stops it, it logs
// RelayDone and its counters in JSON.
func RelayMain(args []string, defDelay time.Duration) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "", "`address` clients send to")
	upstream := fs.String("upstream", "", "`address` to relay to")
	bind := fs.String("bind", "", "`address` to send to the upstream from")
	delay := fs.Duration("delay", defDelay, "delay in each direction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ap [3]netip.AddrPort
	for i, s := range []string{*listen, *upstream, *bind} {
		var err error
		if ap[i], err = netip.ParseAddrPort(s); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, err := Relay(ctx, ap[0], ap[1], ap[2], *delay, func() {
		fmt.Fprintf(os.Stderr, "%s on %v, to %v, %v each way\n", RelayReady, ap[0], ap[1], *delay)
	})
	b, _ := json.Marshal(st)
	fmt.Fprintf(os.Stderr, "%s%s\n", RelayDone, b)
	return err
}
