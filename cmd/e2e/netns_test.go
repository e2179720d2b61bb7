// Package e2e runs the real engarde-client and engarde-server binaries in
// two network namespaces joined by veth links (scripts/topo), with the load
// generator as WireGuard's stand-in on both sides, and checks what users
// rely on: nothing lost while one link works.
//
// The tests need root (namespaces) and skip with the reason otherwise; CI
// runs them as root.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/engine/conn"
)

// bin holds the binaries built once for all tests.
var bin string

func TestMain(m *testing.M) {
	code := func() int {
		if topo.Usable() != nil {
			return runChecked(m) // every test skips, saying why
		}
		dir, err := os.MkdirTemp("", "engarde-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", dir+"/",
			"../engarde-client", "../engarde-server", "../../bench/cmd/engarde-loadgen")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building binaries: %v\n%s", err, out)
			return 1
		}
		bin = dir
		return runChecked(m)
	}()
	os.Exit(code)
}

var nsSeq atomic.Int32

// env is one running tunnel for a test.
type env struct {
	t *testing.T
	*topo.Tunnel
}

// newEnv starts a tunnel on fresh namespaces; the test's cleanup takes it
// all down, and on failure shows what each process logged.
func newEnv(t *testing.T, c topo.TunnelConfig) *env {
	t.Helper()
	c.LogLevel = "debug"
	return startEnv(t, "eg", c)
}

// startEnv starts a tunnel on namespaces named from prefix (each test
// file's own, so that their namespaces are told apart), to be torn down
// at t's end; on failure it shows what each process logged.
func startEnv(t *testing.T, prefix string, c topo.TunnelConfig) *env {
	t.Helper()
	needNetns(t)
	c.Bin = bin
	tun, err := topo.StartTunnel(fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%100000, nsSeq.Add(1)), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*topo.Proc{tun.Client, tun.Server, tun.Sink} {
				p.Stop()
				t.Logf("%s stderr:\n%s", filepath.Base(p.Name), p.Stderr.String())
			}
		}
		if err := tun.Close(); err != nil {
			t.Errorf("tearing down namespaces: %v", err)
		}
	})
	return &env{t: t, Tunnel: tun}
}

// needNetns skips t, saying why, unless this process can build network
// namespaces (root, ip and sysctl).
func needNetns(t *testing.T) {
	t.Helper()
	if err := topo.Usable(); err != nil {
		t.Skipf("skipping namespace test: %v", err)
	}
}

// needTool skips t unless name is in PATH (or, if it is a path, exists),
// naming it and the Debian package that has it. Namespace tests call
// needNetns first, so that without root they say that instead.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("skipping: %s not found (apt-get install %s): %v", name, pkg, err)
	}
}

// at runs f after d, in the background; the returned func waits for it.
func at(d time.Duration, f func()) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(d)
		f()
	}()
	return func() { <-done }
}

func (e *env) gen(rate int, dur time.Duration, size int, extra ...string) *loadgen.Report {
	e.t.Helper()
	r, err := e.Gen(rate, dur, size, extra...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("sent %d, received %d, lost %d (%.3f%%), duplicates %d, reordered %d, rtt p50 %.0fµs p99 %.0fµs max %.0fµs",
		r.Sent, r.Received, r.Lost, r.LossPercent, r.Duplicates, r.Reordered, r.RTTP50, r.RTTP99, r.RTTMax)
	return r
}

func (e *env) stop() (client, server topo.Totals) {
	e.t.Helper()
	c, s, err := e.Stop()
	if err != nil {
		e.t.Errorf("stopping: %v", err)
	}
	return c, s
}

func (e *env) waitLog(p *topo.Proc, d time.Duration, n int, subs ...string) {
	e.t.Helper()
	if err := e.WaitLog(p, d, n, subs...); err != nil {
		e.t.Fatal(err)
	}
}

func TestNetnsEveryPacketArrives(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		for _, v6 := range []bool{false, true} {
			name := "ipv4"
			if v6 {
				name = "ipv6"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, topo.TunnelConfig{V6: v6, Backend: backend})
				r := e.gen(10000, 2*time.Second, 1400)
				if r.Lost != 0 || r.Received == 0 {
					t.Errorf("lost %d of %d", r.Lost, r.Sent)
				}
				cl, _ := e.stop()
				for _, l := range []string{"eth-a", "eth-b"} {
					if cl[l]["tx"] < float64(r.Sent) {
						t.Errorf("link %s sent %v datagrams, want every one of %d", l, cl[l]["tx"], r.Sent)
					}
				}
			})
		}
	})
}

// forBackends runs f once per data-path backend the namespace tests cover
// (the default, mmsg, and io_uring), skipping io_uring with the reason
// where this kernel or process cannot use it.
func forBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range []string{"mmsg", "uring"} {
		t.Run(b, func(t *testing.T) {
			if _, err := conn.Open(b, nil); err != nil {
				t.Skipf("skipping the %s backend: %v", b, err)
			}
			f(t, b)
		})
	}
}

// TestNetnsLinkDown takes link a down for 2 s mid-stream, then brings it
// back: nothing may be lost, and link a must carry traffic again.
func TestNetnsLinkDown(t *testing.T) { forBackends(t, testLinkDown) }

func testLinkDown(t *testing.T, backend string) {
	e := newEnv(t, topo.TunnelConfig{Backend: backend})
	if r := e.linkDownStream(t); r.Lost != 0 {
		t.Errorf("lost %d of %d with link a down for 2 s", r.Lost, r.Sent)
	}
}

// linkDownStream streams 20 000 packets/s for 5 s while link a goes down
// 1.5 s in and comes back 2 s later, and waits for the client to see it
// back.
func (e *env) linkDownStream(t *testing.T) *loadgen.Report {
	t.Helper()
	wait := at(1500*time.Millisecond, func() {
		if err := e.SetUp("eth-a", false); err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
		if err := e.SetUp("eth-a", true); err != nil {
			t.Error(err)
		}
	})
	r := e.gen(20000, 5*time.Second, 1400)
	wait()
	e.waitLog(e.Client, time.Second, 1, `link eth-a down: interface down`, `"from":"active"`, `"to":"down"`)
	e.waitLog(e.Client, time.Second, 2, `link eth-a up: `) // when it opened, and back
	return r
}

// TestNetnsDeadLinkFillsBuffers cuts link a without taking it down: its
// carrier stays up, but nothing crosses it and neighbour resolution never
// completes, so the kernel holds every packet sent on it until the
// socket's send buffer is full, on the client and on the server. The
// other link must not notice.
func TestNetnsDeadLinkFillsBuffers(t *testing.T) {
	needNetns(t)
	needTool(t, "nft", "nftables") // Blackhole
	forBackends(t, testDeadLinkFillsBuffers)
}

func testDeadLinkFillsBuffers(t *testing.T, backend string) {
	e := newEnv(t, topo.TunnelConfig{Backend: backend})
	wait := at(1500*time.Millisecond, func() {
		if err := e.Blackhole("eth-a", true); err != nil {
			t.Error(err)
		}
		time.Sleep(3 * time.Second)
		if err := e.Blackhole("eth-a", false); err != nil {
			t.Error(err)
		}
	})
	r := e.gen(20000, 6*time.Second, 1400)
	wait()
	if r.Lost != 0 {
		t.Errorf("lost %d of %d with link a dead for 3 s", r.Lost, r.Sent)
	}
	cl, srv := e.stop()
	if d := cl["eth-a"]["drops"]; d == 0 {
		t.Errorf("client link eth-a dropped nothing: its buffer never filled, so the test proved nothing")
	} else {
		t.Logf("client link eth-a dropped %v packets while dead; eth-b dropped %v", d, cl["eth-b"]["drops"])
	}
	if d := cl["eth-b"]["drops"]; d != 0 {
		t.Errorf("client link eth-b dropped %v packets", d)
	}
	for addr, m := range srv {
		t.Logf("server, client address %s: tx %v drops %v", addr, m["tx"], m["drops"])
	}
}

// TestNetnsLinkAdded adds a third link while traffic flows: it must carry
// traffic within a second.
func TestNetnsLinkAdded(t *testing.T) {
	e := newEnv(t, topo.TunnelConfig{})
	done := make(chan *loadgen.Report)
	go func() { done <- e.gen(5000, 3*time.Second, 1000) }()
	time.Sleep(time.Second)
	l, err := e.AddLink()
	if err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	var took time.Duration
	for {
		out, err := e.Exec(e.Topo.Server, "cat", "/sys/class/net/"+l.Name+"/statistics/rx_packets")
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscan(out, &n)
		if n > 50 {
			took = time.Since(added)
			break
		}
		if time.Since(added) > 2*time.Second {
			t.Fatalf("new link %s received %d packets within 2 s", l.Name, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("new link carried traffic %v after it was configured (at %s)", took.Round(time.Millisecond), added.Format("15:04:05.000"))
	if took > time.Second {
		t.Errorf("new link took %v to carry traffic, want under 1 s\n%s", took, e.Client.Stderr.String())
	}
	if r := <-done; r.Lost != 0 {
		t.Errorf("lost %d of %d while adding a link", r.Lost, r.Sent)
	}
}

// TestNetnsAddressChange renumbers link b mid-stream, as a DHCP lease
// change does (old address removed, new one added): the client must rebind
// to the new address and lose nothing meanwhile.
func TestNetnsAddressChange(t *testing.T) {
	e := newEnv(t, topo.TunnelConfig{})
	wait := at(time.Second, func() {
		b := e.Link("eth-b")
		for _, args := range [][]string{
			{"ip", "addr", "del", b.ClientAddr.String() + "/24", "dev", "eth-b"},
			{"ip", "addr", "add", "198.18.2.3/24", "dev", "eth-b"},
		} {
			if _, err := e.Exec(e.Topo.Client, args...); err != nil {
				t.Error(err)
			}
		}
	})
	r := e.gen(10000, 3*time.Second, 1400)
	wait()
	if r.Lost != 0 {
		t.Errorf("lost %d of %d across an address change", r.Lost, r.Sent)
	}
	e.waitLog(e.Server, time.Second, 1, `: 198.18.2.3:`, ` joined (`)
}

// TestNetnsRandomLoss drops 5% of the packets in each direction of each
// link. A datagram is lost only if every copy is: 0.25% each way, about
// 0.5% for a round trip, instead of 5% and 10% on one link.
func TestNetnsRandomLoss(t *testing.T) {
	needNetns(t)
	needTool(t, "nft", "nftables") // Loss
	e := newEnv(t, topo.TunnelConfig{})
	// The session first, without loss, both links in it. A lost copy of
	// the first handshake keeps its link out of the session until the
	// client re-sends it (up to 5 s: TestClientRejoinsQuietLink), which
	// made this test fail about one run in ten.
	e.gen(1000, 500*time.Millisecond, 1000)
	e.waitLog(e.Server, 2*time.Second, 1, "session 1 link 0 up")
	e.waitLog(e.Server, 2*time.Second, 1, "session 1 link 1 up")
	if err := e.Loss(5); err != nil {
		t.Fatal(err)
	}
	r := e.gen(10000, 4*time.Second, 1000)
	t.Logf("round-trip loss %.3f%% with 5%% loss per link and direction (expected about 0.5%%)", r.LossPercent)
	if r.LossPercent > 1.2 {
		t.Errorf("round-trip loss %.3f%%, want about 0.5%% (two links each losing 5%% per direction)", r.LossPercent)
	}
}

// TestNetnsFwmark checks that fwmark marks every packet the client sends
// on its links (SO_MARK), which is what keeps a full-tunnel WireGuard from
// routing engarde's own packets into itself.
func TestNetnsFwmark(t *testing.T) {
	needNetns(t)
	needTool(t, "nft", "nftables")
	e := newEnv(t, topo.TunnelConfig{ClientExtra: "  fwmark: 0xca6c\n"})
	rules := "table inet engarde_mark {\n chain out {\n  type filter hook output priority 0; policy accept;\n" +
		"  oifname { \"eth-a\", \"eth-b\" } udp dport 59402 meta mark 0xca6c counter\n" +
		"  oifname { \"eth-a\", \"eth-b\" } udp dport 59402 meta mark != 0xca6c counter\n }\n}\n"
	if err := e.Nft(e.Topo.Client, rules); err != nil {
		t.Fatal(err)
	}
	r := e.gen(2000, time.Second, 500)
	out, err := e.Exec(e.Topo.Client, "nft", "list", "table", "inet", "engarde_mark")
	if err != nil {
		t.Fatal(err)
	}
	var marked, unmarked int
	for _, line := range strings.Split(out, "\n") {
		var n int
		if i := strings.Index(line, "counter packets "); i >= 0 {
			fmt.Sscan(line[i+len("counter packets "):], &n)
			if strings.Contains(line, "!=") {
				unmarked = n
			} else {
				marked = n
			}
		}
	}
	// A GSO train passes the output hook as one packet, so the count can
	// be below two per datagram; what matters is that none is unmarked.
	t.Logf("marked %d, unmarked %d link packets", marked, unmarked)
	if marked == 0 || unmarked != 0 || r.Lost != 0 {
		t.Errorf("marked %d and unmarked %d link packets, lost %d of %d; want all marked, none lost", marked, unmarked, r.Lost, r.Sent)
	}
}
