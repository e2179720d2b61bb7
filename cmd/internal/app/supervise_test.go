package app

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestReadyAndHealth: Ready returns once the first scan opened the links,
// and Health sums up the engine's status for systemd, counting only the
// interfaces that have a socket.
func TestReadyAndHealth(t *testing.T) {
	conntest.CheckGoroutines(t)
	ifs := []engine.Iface{
		{Name: "lo", Index: 1, Up: true, Running: true, Loopback: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		{Name: "a", Index: 2, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
		{Name: "b", Index: 3, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}},
	}
	cl, err := engine.NewClient(engine.ClientConfig{
		Options:    engine.Options{Backend: conntest.NewNet(), DisableGSO: true, DisableGRO: true, QueueLength: 16, BufferSize: 2048},
		ListenAddr: "127.0.0.1:51822",
		DstAddr:    "198.51.100.1:4000",
		Interfaces: func() ([]engine.Iface, error) { return ifs, nil },
		Watch:      func() (engine.Watcher, error) { return &stillWatcher{done: make(chan struct{})}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	view := NewClientControl(cl, "")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- cl.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	start := time.Now()
	view.Ready(ctx)
	if len(cl.Links()) == 0 {
		t.Fatalf("Ready returned after %v with no link", time.Since(start))
	}
	var h string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if h = view.Health(); strings.HasSuffix(h, "; 2 of 2 links active") {
			break
		}
	}
	if !strings.HasPrefix(h, "tunnel ") || !strings.HasSuffix(h, "; 2 of 2 links active") {
		t.Errorf("Health() = %q, want the tunnel's state and 2 of 2 links active (loopback has no socket)", h)
	}
}
