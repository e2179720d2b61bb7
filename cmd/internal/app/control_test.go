package app

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine"
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestServerControl runs an engine server on the fake network, lets one
// client address complete a handshake with a stand-in for WireGuard, and
// checks that the control plane sees the session, its address and the
// server's counters, each under its own name.
func TestServerControl(t *testing.T) {
	conntest.CheckGoroutines(t)
	fn := conntest.NewNet()
	wgAddr := netip.MustParseAddrPort("127.0.0.1:51820")
	wg, err := fn.Listen(wgAddr, conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wg.Close() })
	go answerInitiations(wg)

	srv, err := engine.NewServer(engine.ServerConfig{
		Options:    engine.Options{Backend: fn, DisableGSO: true, DisableGRO: true},
		ListenAddr: "10.0.0.1:4000",
		DstAddr:    wgAddr.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	sc := NewServerControl(srv, wgAddr.String(), "hub")

	if st := sc.ServerStatus(); len(st.Sessions) != 0 || st.Initiations != 0 || st.DstAddr != wgAddr.String() || st.Description != "hub" {
		t.Fatalf("a fresh server: %+v", st)
	}

	clientAddr := netip.MustParseAddrPort("192.0.2.1:1000")
	link, err := fn.Listen(clientAddr, conn.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	init := make([]byte, 148)
	init[0] = 1
	binary.LittleEndian.PutUint32(init[4:8], 42)
	junk := []byte("not WireGuard's")
	dst := srv.ListenAddr()
	if _, err := link.WriteBatch([]conn.Message{{Buf: junk, N: len(junk), Addr: dst}, {Buf: init, N: len(init), Addr: dst}}); err != nil {
		t.Fatal(err)
	}

	// The sender counts what it wrote after the write, so the counters
	// may trail the session by a moment.
	st := sc.ServerStatus()
	for deadline := time.Now().Add(5 * time.Second); (len(st.Sessions) == 0 || st.Upstream.TxPackets == 0) && time.Now().Before(deadline); st = sc.ServerStatus() {
		time.Sleep(10 * time.Millisecond)
	}
	if len(st.Sessions) != 1 {
		t.Fatalf("sessions %+v, want the one the handshake made", st.Sessions)
	}
	ss := st.Sessions[0]
	if !ss.Endpoint.IsValid() || ss.Endpoint == srv.ListenAddr() || ss.AnyUDP || ss.Since.IsZero() {
		t.Errorf("session %+v: want an endpoint of its own", ss)
	}
	if len(ss.Addrs) != 1 {
		t.Fatalf("session addresses %+v", ss.Addrs)
	}
	if p := ss.Addrs[0]; p.Addr != clientAddr || p.Session != ss.ID || !p.Live || p.Quality.Samples != 0 {
		t.Errorf("address %+v", p)
	}
	if st.Initiations != 1 || st.NotWireGuard != 1 || st.NotMember != 0 || st.Foreign != 0 || st.Unrouted != 0 {
		t.Errorf("counters %+v, want one initiation and one datagram not WireGuard's", st.ServerCounters)
	}
	if st.Upstream.TxPackets != 1 || st.Upstream.RxPackets != 1 {
		t.Errorf("handshake socket %+v, want the initiation out and the response back", st.Upstream)
	}
}

// answerInitiations stands in for WireGuard: it answers each initiation
// with a response naming the initiator's index, until c closes.
func answerInitiations(c conn.Conn) {
	msgs := make([]conn.Message, 8)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	var next uint32 = 1000
	for {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			return
		}
		for _, m := range msgs[:n] {
			if m.N != 148 || m.Buf[0] != 1 {
				continue
			}
			next++
			resp := make([]byte, 92)
			resp[0] = 2
			binary.LittleEndian.PutUint32(resp[4:8], next)
			copy(resp[8:12], m.Buf[4:8])
			c.WriteBatch([]conn.Message{{Buf: resp, N: len(resp), Addr: m.Addr}})
		}
	}
}
