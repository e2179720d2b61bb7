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
	echo, listen := echoAndPort(t)

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

// TestRelayBatches streams numbered datagrams through the relay faster
// than one a delay: they leave in batches, and every one comes back once,
// in order.
func TestRelayBatches(t *testing.T) {
	const (
		delay = 3 * time.Millisecond
		n     = 2000
	)
	echo, listen := echoAndPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan RelayStats, 1)
	go func() {
		st, err := Relay(ctx, listen, echo.LocalAddr().(*net.UDPAddr).AddrPort(), netip.MustParseAddrPort("127.0.0.1:0"), delay, func() { close(ready) })
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	<-ready

	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan []uint16, 1)
	go func() {
		var seen []uint16
		b := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(seen) < n {
			k, err := c.Read(b)
			if err != nil {
				break
			}
			if k == 2 {
				seen = append(seen, uint16(b[0])|uint16(b[1])<<8)
			}
		}
		got <- seen
	}()
	// 2 000 datagrams in about 100 ms: 60 in each delay line at a time,
	// a few per batch, and no more in flight than the test's own sockets'
	// default buffers hold (some 270 small datagrams) should a reader be
	// late.
	for i := range n {
		if _, err := c.Write([]byte{byte(i), byte(i >> 8)}); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
	seen := <-got
	if len(seen) != n {
		t.Errorf("%d of %d datagrams came back", len(seen), n)
	}
	for i, x := range seen {
		if int(x) != i {
			t.Fatalf("datagram %d came back as number %d: out of order or lost", i, x)
		}
	}
	cancel()
	st := <-done
	if st.Forward != n || st.Back != n || st.Errors != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v, want %d each way, no errors", st, n)
	}
}

// echoAndPort starts a UDP echo on loopback, closed when the test ends,
// and finds a free loopback port for the relay (taken and released).
func echoAndPort(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
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
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	listen := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()
	return echo, listen
}
