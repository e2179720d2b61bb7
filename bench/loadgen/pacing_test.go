package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
)

// recordConn is a conn.Conn that plays a sink that answers handshakes and
// echoes nothing: it answers each initiation with a response from
// recordIndex and records the size and time of each WriteBatch of data and
// the headers of the datagrams in it. With silent set it answers nothing;
// copies sets how many copies of each response it sends; with echo set it
// also echoes data, with the receiver index echoIndex, or
// the initiator's when that is 0.
type recordConn struct {
	silent    bool
	copies    int // of each response; 0 means 1
	echo      bool
	echoIndex uint32

	mu        sync.Mutex
	batches   []int
	times     []time.Time
	inits     [][]byte // the initiations received
	headers   []Header // of the data received
	initiator uint32   // the index of the last initiation

	rx     chan []byte
	closed chan struct{}
	once   sync.Once
}

// recordIndex is the index recordConn answers initiations from.
const recordIndex = 0x5151beef

func newRecordConn() *recordConn {
	return &recordConn{rx: make(chan []byte, 1<<16), closed: make(chan struct{})}
}

func (c *recordConn) ReadBatch(msgs []conn.Message) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case b := <-c.rx:
		msgs[0].N = copy(msgs[0].Buf, b)
		msgs[0].Addr = netip.MustParseAddrPort("127.0.0.1:9")
		return 1, nil
	}
}

func (c *recordConn) WriteBatch(msgs []conn.Message) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g, ok := parseInitiation(msgs[0].Buf[:msgs[0].N]); ok && len(msgs) == 1 {
		c.inits = append(c.inits, bytes.Clone(msgs[0].Buf[:msgs[0].N]))
		c.initiator = g
		if !c.silent {
			resp := make([]byte, responseLen)
			putResponse(resp, recordIndex, g)
			for range max(c.copies, 1) {
				c.rx <- resp
			}
		}
		return 1, nil
	}
	c.batches = append(c.batches, len(msgs))
	c.times = append(c.times, time.Now())
	for _, m := range msgs {
		h, err := Decode(m.Buf[:m.N])
		if err != nil {
			panic(fmt.Sprintf("generator sent a datagram that is neither an initiation nor data: %x", m.Buf[:min(m.N, 64)]))
		}
		c.headers = append(c.headers, h)
		if c.echo {
			b := bytes.Clone(m.Buf[:m.N])
			to := c.echoIndex
			if to == 0 {
				to = c.initiator
			}
			binary.LittleEndian.PutUint32(b[4:8], to)
			c.rx <- b
		}
	}
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
