package control

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// bigServer is a server with sessions sessions of two addresses each, every
// address with counters and quality samples: the scrape a busy server
// costs.
func bigServer(sessions int) *fakeServer {
	now := time.Now()
	f := &fakeServer{}
	for i := range sessions {
		id := uint64(i + 1)
		ss := SessionStatus{ID: id, Since: now, Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(40000+i)),
			Indexes: []uint32{uint32(i), uint32(i + 1)}, Counters: engine.Counters{TxPackets: 90, RxPackets: 45, LastRx: now}}
		for j := range 2 {
			a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			ss.Addrs = append(ss.Addrs, Peer{Addr: netip.AddrPortFrom(a, uint16(40000+j)), Local: netip.MustParseAddrPort("198.18.255.1:59402"),
				Session: id, Since: now, LastSeen: now, Live: true, Slot: j, Status: "active",
				Counters: engine.Counters{RxPackets: 5, TxPackets: 6, LastRx: now},
				Quality:  engine.Quality{Samples: 200, First: 150, Lost: 4, Copies: 46, LateP50: time.Millisecond, LateP99: 8 * time.Millisecond}})
		}
		f.sessions = append(f.sessions, ss)
	}
	return f
}

// BenchmarkScrapeServer scrapes /metrics of a server with 0, 10 and 100
// sessions of two addresses each (the process and Go series included):
// what a scrape costs the control plane. The packet path pays nothing.
func BenchmarkScrapeServer(b *testing.B) {
	for _, n := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			benchScrape(b, Role{Server: bigServer(n)})
		})
	}
}

// BenchmarkScrapeClient scrapes a client with the test's four interfaces.
func BenchmarkScrapeClient(b *testing.B) {
	benchScrape(b, Role{Client: newFakeClient()})
}

func benchScrape(b *testing.B, role Role) {
	s, err := New(Options{Version: "v9"}, role)
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Host = "127.0.0.1:9001"
	b.ReportAllocs()
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
