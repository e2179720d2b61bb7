package loadgen

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
)

// recordConn is an conn.Conn that records the size and time of each
// WriteBatch and never receives anything.
type recordConn struct {
	mu      sync.Mutex
	batches []int
	times   []time.Time
	closed  chan struct{}
	once    sync.Once
}

func newRecordConn() *recordConn { return &recordConn{closed: make(chan struct{})} }

func (c *recordConn) ReadBatch(msgs []conn.Message) (int, error) {
	<-c.closed
	return 0, net.ErrClosed
}

func (c *recordConn) WriteBatch(msgs []conn.Message) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	c.batches = append(c.batches, len(msgs))
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	return len(msgs), nil
}

func (c *recordConn) TryWriteBatch(msgs []conn.Message) (int, error) { return c.WriteBatch(msgs) }
func (c *recordConn) SetWriteDeadline(time.Time) error               { return nil }
func (c *recordConn) LocalAddr() netip.AddrPort                      { return netip.MustParseAddrPort("127.0.0.1:1") }
func (c *recordConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// TestPacing checks that a fixed rate is held and, at low rates, is not
// reached by bursting whole batches: at 2 000 pkt/s (a packet every 500 µs)
// most writes carry one packet, two when the machine is loaded.
func TestPacing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate      float64
		count     uint64
		copies    int
		maxMedian int // largest acceptable median datagrams per write
	}{
		{"2k", 2000, 400, 1, 2},
		{"2k copies", 2000, 400, 2, 4},
		{"100k", 100_000, 20_000, 1, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRecordConn()
			start := time.Now()
			r, err := Run(context.Background(), Options{
				Target: netip.MustParseAddrPort("127.0.0.1:9"),
				Conn:   c,
				Rate:   tc.rate,
				Count:  tc.count,
				Copies: tc.copies,
				Wait:   -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			if r.Sent != tc.count || r.Datagrams != tc.count*uint64(tc.copies) {
				t.Fatalf("sent %d packets, %d datagrams, want %d", r.Sent, r.Datagrams, tc.count)
			}
			want := time.Duration(float64(tc.count-1) / tc.rate * float64(time.Second))
			if elapsed < want*98/100 {
				t.Errorf("sent %d packets in %v, want at least %v at %v/s", tc.count, elapsed, want, tc.rate)
			}
			c.mu.Lock()
			sizes := slices.Clone(c.batches)
			c.mu.Unlock()
			slices.Sort(sizes)
			median := sizes[len(sizes)/2]
			t.Logf("%d writes, median %d, max %d datagrams, %v", len(sizes), median, sizes[len(sizes)-1], elapsed)
			if median > tc.maxMedian {
				t.Errorf("median write of %d datagrams, want at most %d", median, tc.maxMedian)
			}
			if sizes[len(sizes)-1] > defaults.BatchSize {
				t.Errorf("write of %d datagrams, more than a batch", sizes[len(sizes)-1])
			}
		})
	}
}
