package topo

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRelayDelays runs the relay on loopback in front of an echo server:
// every datagram comes back, in order, no sooner than twice the delay.
func TestRelayDelays(t *testing.T) {
	const delay = 40 * time.Millisecond
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		b := make([]byte, 2048)
		for {
			n, src, err := echo.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(b[:n], src)
		}
	}()
	// A free port for the relay: taken and released.
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	listen := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	type result struct {
		st  RelayStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := Relay(ctx, listen, echo.LocalAddr().(*net.UDPAddr).AddrPort(), netip.MustParseAddrPort("127.0.0.1:0"), delay, func() { close(ready) })
		done <- result{st, err}
	}()
	<-ready

	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 20
	start := time.Now()
	for i := range n {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 16)
	for i := range n {
		k, err := c.Read(b)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if k != 1 || b[0] != byte(i) {
			t.Fatalf("datagram %d: got %v", i, b[:k])
		}
		if i == 0 {
			if rtt := time.Since(start); rtt < 2*delay {
				t.Errorf("first echo after %v, want at least %v", rtt, 2*delay)
			}
		}
	}
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.st.Sources != 1 || r.st.Forward != n || r.st.Back != n || r.st.Errors != 0 || r.st.Dropped != 0 {
		t.Errorf("stats %+v, want 1 source, %d each way, no errors", r.st, n)
	}
}
