package engine

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/engine/conn/conntest"
	"github.com/engarde-project/engarde/ring"
)

// childEnv marks the run of this test binary inside the namespace the
// parent test made.
const childEnv = "ENGARDE_TEST_NETNS_CHILD"

// TestPathErrorRealSockets is TestPathErrorDropsRestOfBatch on kernel
// sockets: in a network namespace of its own, an nftables rule drops what
// link a sends (the kernel answers sendmmsg with EPERM), and a batch of 64
// datagrams to both links costs link a filteredRun failed sends, not 64,
// while link b delivers all 64, on each batch backend. The parent makes
// the namespace and the rule, and runs this test binary inside it.
func TestPathErrorRealSockets(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		pathErrorChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (a network namespace and an nftables rule)")
	}
	for _, c := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("skipping: %s not found", c)
		}
	}
	ns := fmt.Sprintf("egr-senderr-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "set", "lo", "up")
	for _, a := range []string{"198.18.0.1/32", "198.18.0.2/32", "198.18.0.3/32"} {
		run("ip", "-n", ns, "addr", "add", a, "dev", "lo")
	}
	run("ip", "netns", "exec", ns, "nft", "add table inet egr; add chain inet egr out { type filter hook output priority 0; }; add rule inet egr out ip saddr 198.18.0.2 udp dport 5000 drop")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestPathErrorRealSockets$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("the test inside the namespace failed: %v", err)
	}
}

func pathErrorChild(t *testing.T) {
	const batch = 64
	bad, good := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	for _, be := range conntest.Platform(t) {
		t.Run(be.Name(), func(t *testing.T) {
			// The receiver is the test's tool: mmsg, whose reads can be tried.
			srv, err := conn.NewMmsg(nil).Listen(netip.MustParseAddrPort("198.18.0.1:5000"), conn.SocketOptions{BatchSize: batch})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			pool, err := ring.NewPool(2048, 2*batch, 2*batch)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var timeout atomic.Int64
			timeout.Store(int64(time.Second))
			var stats [2]Stats
			var senders []*sender
			for i, a := range []netip.Addr{bad, good} {
				c, err := be.Dial(netip.AddrPortFrom(a, 0), srv.LocalAddr(), conn.SocketOptions{BatchSize: batch, GSO: true})
				if err != nil {
					t.Fatal(err)
				}
				s := newSender(senderConfig{name: "link " + a.String(), conn: c, own: true, stats: &stats[i]}, batch, batch, &timeout, testLogger(t))
				defer s.close()
				senders = append(senders, s)
			}
			f := newFanout(be)
			for round := range 3 {
				bufs := make([]*ring.Packet, batch)
				for i := range bufs {
					bufs[i] = pool.Get()
					// Sizes that differ: one datagram per message, no GSO
					// train to hide the count.
					bufs[i].N = copy(bufs[i].Data(), bytes.Repeat([]byte{byte(i)}, 100+i))
					bufs[i].Stamp = nanotime()
				}
				f.send(bufs, make([]conn.Message, batch), senders)
				for _, b := range bufs {
					b.Release()
				}
				bs := stats[0].Read()
				if want := uint64(round + 1); bs.SendErrors != want*filteredRun || bs.DropError != want*batch || bs.TxPackets != 0 {
					t.Fatalf("round %d: refused link: %d failed sends, %d dropped, %d sent; want %d, %d, 0", round, bs.SendErrors, bs.DropError, bs.TxPackets, want*filteredRun, want*batch)
				}
			}
			t.Logf("refused link after 3 batches of %d: %+v", batch, stats[0].Read())
			msgs := make([]conn.Message, batch)
			for i := range msgs {
				msgs[i].Buf = make([]byte, 2048)
			}
			got := 0
			deadline := time.Now().Add(2 * time.Second)
			for got < 3*batch && time.Now().Before(deadline) {
				n, err := srv.(conn.ReadWaiter).TryReadBatch(msgs)
				if err == conn.ErrWouldBlock {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range msgs[:n] {
					if m.Addr.Addr() != good {
						t.Fatalf("datagram from %v", m.Addr)
					}
					if i := got % batch; !bytes.Equal(m.Buf[:m.N], bytes.Repeat([]byte{byte(i)}, 100+i)) {
						t.Fatalf("datagram %d: %d bytes, not what was sent", got, m.N)
					}
					got++
				}
			}
			if got != 3*batch {
				t.Fatalf("the other link delivered %d of %d", got, 3*batch)
			}
		})
	}
}
