package topo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/engine"
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// Loopback is engarde without namespaces, for machines where this process
// is not root: a sink, the server and the client run in this process on
// 127.0.0.1, and the client's two links are simulated interfaces eth-a
// (127.0.0.2) and eth-b (127.0.0.3). Nothing in it needs privileges; it
// measures the engine, not the kernel's forwarding between namespaces.
type Loopback struct {
	Client *engine.Client
	Server *engine.Server
	Sink   *loadgen.Sink

	ifs    *loopIfaces
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartLoopback starts a sink (on loadgen's default backend), a server and
// a client on loopback, the last two with backend be
// (conn.Default when nil). The links bind to loopback addresses, not to
// interfaces of their own (conntest.NoDevice). Close stops them.
func StartLoopback(be conn.Backend) (*Loopback, error) {
	if be == nil {
		be = conn.Default(nil)
	}
	sink, err := loadgen.NewSink(netip.MustParseAddrPort("127.0.0.1:0"), loadgen.SinkOptions{})
	if err != nil {
		return nil, err
	}
	l := &Loopback{Sink: sink, ifs: &loopIfaces{list: []engine.Iface{
		{Name: "eth-a", Index: 1001, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}},
		{Name: "eth-b", Index: 1002, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.3")}},
	}, ch: make(chan struct{}, 1)}}
	l.wg.Add(1)
	go func() { defer l.wg.Done(); sink.Serve() }()
	// The zero options are the data-path settings engarde ships with.
	opts := engine.Options{Backend: conntest.NoDevice(be)}
	l.Server, err = engine.NewServer(engine.ServerConfig{Options: opts, ListenAddr: "127.0.0.1:0", DstAddr: sink.Addr().String()})
	if err != nil {
		l.Close()
		return nil, err
	}
	l.Client, err = engine.NewClient(engine.ClientConfig{
		Options:    opts,
		ListenAddr: "127.0.0.1:0",
		DstAddr:    l.Server.ListenAddr().String(),
		Interfaces: l.ifs.get,
		Watch:      func() (engine.Watcher, error) { return l.ifs, nil },
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.Server.Run(ctx) }()
	go func() { defer l.wg.Done(); l.Client.Run(ctx) }()
	if err := l.waitActive(2, 2*time.Second); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// waitActive waits until n links are active.
func (l *Loopback) waitActive(n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		active := 0
		for _, li := range l.Client.Links() {
			if li.Status == "active" {
				active++
			}
		}
		if active >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loopback client: %d links active after %v, want %d", active, d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetUp sets a simulated link ("eth-a", "eth-b") up or down.
func (l *Loopback) SetUp(link string, up bool) { l.ifs.setUp(link, up) }

// Close stops the client, the server and the sink and waits for them.
func (l *Loopback) Close() error {
	if l.cancel != nil {
		l.cancel()
	}
	l.Sink.Close()
	l.wg.Wait()
	return nil
}

// loopIfaces is a Loopback's interface list and change watcher.
type loopIfaces struct {
	mu   sync.Mutex // guards list
	list []engine.Iface
	ch   chan struct{}
}

func (f *loopIfaces) get() ([]engine.Iface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.Iface(nil), f.list...), nil
}

func (f *loopIfaces) setUp(name string, up bool) {
	f.mu.Lock()
	for i := range f.list {
		if f.list[i].Name == name {
			f.list[i].Up = up
		}
	}
	f.mu.Unlock()
	select {
	case f.ch <- struct{}{}:
	default:
	}
}

// Wait blocks until a link changed, or returns net.ErrClosed after Close.
func (f *loopIfaces) Wait() error {
	if _, ok := <-f.ch; !ok {
		return net.ErrClosed
	}
	return nil
}

// Close ends Wait.
func (f *loopIfaces) Close() error { close(f.ch); return nil }
