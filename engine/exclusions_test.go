package engine

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestExclusionDuringShutdown toggles exclusions from several goroutines
// while Run stops and after it has returned. It pins the bug where a
// toggle that came after Run had closed the links opened one again, on a
// pool Run was about to free: a receive then landed in unmapped memory.
// Now no link is open once Run returns, and the toggles return
// ErrStopping.
func TestExclusionDuringShutdown(t *testing.T) {
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			conntest.CheckGoroutines(t)
			for round := range 20 {
				exclusionShutdownRound(t, conntest.NoDevice(be), round)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func exclusionShutdownRound(t *testing.T, be conn.Backend, round int) {
	ifs := &testIfaces{ch: make(chan struct{}, 1), ifs: []Iface{
		{Name: "a", Index: 101, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}},
		{Name: "b", Index: 102, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.3")}},
	}}
	c, err := NewClient(ClientConfig{
		Options:    Options{Backend: be, Log: testLogger(t), QueueLength: 16, BufferSize: 2048},
		ListenAddr: "127.0.0.1:0",
		DstAddr:    "127.0.0.1:9", // nothing answers; no traffic flows
		Interfaces: ifs.list,
		Watch:      ifs.watcher,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	deadline := time.Now().Add(3 * time.Second)
	for len(*c.active.Load()) != 2 {
		if time.Now().After(deadline) {
			cancel()
			<-ran
			t.Fatalf("round %d: %d links active, want 2", round, len(*c.active.Load()))
		}
		time.Sleep(time.Millisecond)
	}

	var (
		wg      sync.WaitGroup
		done    = make(chan struct{})
		refused atomic.Int64
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				var err error
				if (i+g)%5 == 4 {
					err = c.ResetExclusions()
				} else {
					_, err = c.SetExclusion([]string{"a", "b"}[g%2], i%2 == 0)
				}
				switch {
				case errors.Is(err, ErrStopping):
					refused.Add(1)
				case err != nil:
					t.Errorf("toggle: %v", err)
				}
			}
		}()
	}
	time.Sleep(time.Duration(round%4) * time.Millisecond)
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("round %d: Run: %v", round, err)
	}
	// Toggles keep coming after Run has returned.
	for end := time.Now().Add(200 * time.Millisecond); refused.Load() < 8 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if refused.Load() == 0 {
		t.Errorf("round %d: no toggle returned ErrStopping after Run returned", round)
	}
	close(done)
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	for name, l := range c.links {
		if l.up {
			t.Errorf("round %d: link %s is open after Run returned", round, name)
			c.closeLink(l) // so the goroutine check reports only this
		}
	}
	if n := len(*c.active.Load()); n != 0 {
		t.Errorf("round %d: %d links active after Run returned", round, n)
	}
}
