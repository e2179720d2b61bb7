package e2e

// This file checks the link quality figures (first share, loss, lateness
// of copies) that engarde measures in its duplicate filter, on a tunnel
// whose link a loses packets and whose link b is slow. There is no netem
// here: the delay is a relay in user space, the delay tool below, which
// the test binary runs in the server namespace.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/cmd/internal/control"
)

// TestNetnsLinkQuality drops 10% of the datagrams arriving on link a, in
// each direction, and delays link b by 20 ms each way, then reads the
// quality figures of both roles: link a must lose about 10% and deliver
// first most of the time; link b must lose nothing and come about 20 ms
// behind. The client judges the server's replies, the server the client's
// datagrams: each sees one direction.
func TestNetnsLinkQuality(t *testing.T) {
	needNetns(t)
	needTool(t, "nft", "nftables") // LinkLossIngress
	const (
		lossPercent = 10
		delay       = 20 * time.Millisecond
	)
	e := newEnv(t, topo.TunnelConfig{ClientExtra: clientWeb, ServerExtra: serverWeb})
	e.waitLog(e.Client, 5*time.Second, 1, "web manager listening on http://127.0.0.1:59480/")
	e.waitLog(e.Server, 5*time.Second, 1, "web manager listening on http://", ":59481/")

	b := e.Link("eth-b")
	d := e.delayLinkB(delay)

	// The loss starts once the generator's handshake is through: a lost
	// initiation copy would keep link a out of the session, which is
	// another test's matter.
	lossStart := at(300*time.Millisecond, func() {
		if err := e.LinkLossIngress("eth-a", lossPercent); err != nil {
			t.Error(err)
		}
	})
	var midClient, midServer string
	mid := at(4*time.Second, func() {
		midClient, _ = e.Exec(e.Topo.Client, filepath.Join(bin, "engarde-client"), "status", "-wide", e.ConfigPath)
		midServer, _ = e.Exec(e.Topo.Server, filepath.Join(bin, "engarde-server"), "status", "-wide", e.ConfigPath)
	})
	r := e.gen(2000, 5*time.Second, 1000)
	lossStart()
	mid()
	if r.Lost != 0 {
		t.Errorf("lost %d of %d round trips with link b intact", r.Lost, r.Sent)
	}

	cl := e.clientList()
	ca, cb := iface(cl, "eth-a").Quality, iface(cl, "eth-b").Quality
	if ca == nil || cb == nil {
		t.Fatalf("client links without quality: %+v", cl.Interfaces)
	}
	sa, sb := serverQuality(t, e, e.Link("eth-a").ClientAddr), serverQuality(t, e, b.ServerAddr)
	t.Log(qualityLine("client", "a", *ca))
	t.Log(qualityLine("client", "b", *cb))
	t.Log(qualityLine("server", "a", sa))
	t.Log(qualityLine("server", "b", sb))

	loss := float64(lossPercent) / 100
	for _, side := range []struct {
		name string
		a, b control.Quality
	}{{"client", *ca, *cb}, {"server", sa, sb}} {
		check := func(link, what string, v *float64, lo, hi float64) {
			t.Helper()
			switch {
			case v == nil:
				t.Errorf("%s, link %s: %s is null", side.name, link, what)
			case *v < lo || *v > hi:
				t.Errorf("%s, link %s: %s %.4g, want between %g and %g", side.name, link, what, *v, lo, hi)
			}
		}
		if side.a.Samples == 0 || side.b.Samples == 0 {
			t.Errorf("%s: samples a %d, b %d; want some on both", side.name, side.a.Samples, side.b.Samples)
		}
		check("a", "lossRate", side.a.LossRate, loss/2, loss*1.5)
		check("a", "firstShare", side.a.FirstShare, 0.8, 1)
		// The same claim from the counts alone: of the sampled messages
		// either link delivered first, link a delivered most. The engine
		// counts First when a sample arrives but Samples only when it is
		// judged, 4096 messages later, so that over a short stream First
		// exceeds Samples and firstShare is clamped to 1.
		if firsts := side.a.First + side.b.First; firsts == 0 || float64(side.a.First) < 0.8*float64(firsts) {
			t.Errorf("%s: link a delivered %d of the %d sampled messages delivered first, want over 80%%", side.name, side.a.First, firsts)
		}
		// Not 0 on the client: the server sends to b's address once it
		// has joined, 20 ms after a's (its initiation copy comes late),
		// so b misses the first 40 replies, a few samples.
		check("b", "lossRate", side.b.LossRate, 0, 0.02)
		ms := float64(delay / time.Millisecond)
		check("b", "lateP50Ms", side.b.LateP50Ms, 0.75*ms, 3*ms)
	}

	res, err := d.stop()
	if err != nil {
		t.Error(err)
	}
	t.Logf("delay relay: %d client addresses, %d datagrams to the server, %d back, %d send errors", res.Clients, res.Forward, res.Back, res.Errors)
	t.Logf("engarde-client status during the stream:\n%s", midClient)
	t.Logf("engarde-server status during the stream:\n%s", midServer)
	t.Logf("engarde-client status:\n%s", e.status(e.Topo.Client, "engarde-client"))
	t.Logf("engarde-server status:\n%s", e.status(e.Topo.Server, "engarde-server"))
}

// serverQuality returns the quality of the server's client address with
// IP ip (the one with most samples if several sessions have it).
func serverQuality(t *testing.T, e *env, ip netip.Addr) control.Quality {
	t.Helper()
	var l control.ServerList
	out := e.status(e.Topo.Server, "engarde-server", "-json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var q control.Quality
	found := false
	for _, s := range l.Sessions {
		for _, a := range s.Addresses {
			ap, err := netip.ParseAddrPort(a.Address)
			if err != nil || ap.Addr().Unmap() != ip {
				continue
			}
			if !found || a.Quality.Samples > q.Samples {
				q, found = a.Quality, true
			}
		}
	}
	if !found {
		t.Fatalf("the server has no client address %v: %s", ip, out)
	}
	return q
}

// qualityLine is one role's figures for one link, in a line to grep.
func qualityLine(side, link string, q control.Quality) string {
	pct := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100**v)
	}
	ms := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.2fms", *v)
	}
	return fmt.Sprintf("QUALITY side=%s link=%s samples=%d first=%s loss=%s late_p50=%s late_p99=%s first_n=%d lost_n=%d copies=%d",
		side, link, q.Samples, pct(q.FirstShare), pct(q.LossRate), ms(q.LateP50Ms), ms(q.LateP99Ms), q.First, q.Lost, q.Copies)
}

// delaySpec is the delay tool's request.
type delaySpec struct {
	// Listen is where the client's link sends.
	Listen string `json:"listen"`
	// Upstream is where the relay forwards: engarde-server.
	Upstream string `json:"upstream"`
	// Bind is the local address of the sockets towards Upstream, one per
	// client address.
	Bind string `json:"bind"`
	// Delay is how long each datagram is held, in each direction.
	Delay time.Duration `json:"delay"`
}

// delayResult is what the delay tool relayed, written when it stops.
type delayResult struct {
	Clients int    `json:"clients"` // client addresses heard
	Forward uint64 `json:"forward"` // datagrams sent to Upstream
	Back    uint64 `json:"back"`    // datagrams sent back to clients
	Errors  uint64 `json:"errors"`  // sends that failed, or found the delay line full
}

// delayMain relays datagrams between the clients that send to Listen and
// Upstream, holding each for Delay, until SIGTERM.
func delayMain(in []byte) (any, error) {
	var spec delaySpec
	if err := json.Unmarshal(in, &spec); err != nil {
		return nil, err
	}
	listen, err := netip.ParseAddrPort(spec.Listen)
	if err != nil {
		return nil, err
	}
	up, err := netip.ParseAddrPort(spec.Upstream)
	if err != nil {
		return nil, err
	}
	bind, err := netip.ParseAddrPort(spec.Bind)
	if err != nil {
		return nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, err := topo.Relay(ctx, listen, up, bind, spec.Delay, func() {
		fmt.Fprintf(os.Stderr, "delay: relaying %v -> %v, %v each way\n", listen, up, spec.Delay)
	})
	return delayResult{Clients: st.Sources, Forward: st.Forward, Back: st.Back, Errors: st.Errors + st.Dropped}, err
}

// delayProc is the delay tool running in a namespace.
type delayProc struct {
	cmd            *exec.Cmd
	stdout, stderr topo.SafeBuffer
	done           chan struct{}
	err            error
	once           sync.Once
	res            delayResult
	stopErr        error
}

// startDelay runs the delay tool in namespace ns and returns once it
// listens; the test's cleanup stops it (before the namespaces go, since
// cleanups run last first) and shows its output if the test failed.
// delayLinkB sends link b through a relay that holds each datagram for
// delay each way: it listens on b's server address, another port, and
// forwards to engarde-server from that address, which the server therefore
// sees as link b's client address. The client is pointed at it by a
// reload, and the link is back up through it when delayLinkB returns.
func (e *env) delayLinkB(delay time.Duration) *delayProc {
	e.t.Helper()
	b := e.Link("eth-b")
	direct := e.Config.LinkDst(2)
	relay := netip.AddrPortFrom(b.ServerAddr, topo.ServerPort+1)
	d := startDelay(e.t, e.Topo.Server, delaySpec{
		Listen:   relay.String(),
		Upstream: direct,
		Bind:     netip.AddrPortFrom(b.ServerAddr, 0).String(),
		Delay:    delay,
	})
	old := fmt.Sprintf("dstAddr: %q", direct)
	if !strings.Contains(e.Config.YAML(), old) {
		e.t.Fatalf("test bug: no %s in the configuration", old)
	}
	if err := e.WriteConfig(strings.Replace(e.Config.YAML(), old, fmt.Sprintf("dstAddr: %q", relay), 1)); err != nil {
		e.t.Fatal(err)
	}
	if err := e.Client.Reload(); err != nil {
		e.t.Fatal(err)
	}
	e.waitLog(e.Client, 3*time.Second, 1, `link eth-b up: `, "-> "+relay.String())
	return d
}

func startDelay(t *testing.T, ns string, spec delaySpec) *delayProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	req, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", ns, exe)
	p.cmd.Env = append(os.Environ(), toolEnv+"=delay")
	p.cmd.Stdin = bytes.NewReader(req)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("delay tool stderr:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), "delay: relaying") {
		select {
		case <-p.done:
			t.Fatalf("delay tool exited: %v\n%s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("delay tool not listening within 5 s:\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// stop ends the tool (SIGTERM, then SIGKILL after 5 s) and returns what
// it relayed; later calls return the same.
func (p *delayProc) stop() (delayResult, error) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if p.err != nil {
			p.stopErr = fmt.Errorf("delay tool: %w: %s", p.err, bytes.TrimSpace([]byte(p.stderr.String())))
			return
		}
		if err := json.Unmarshal([]byte(p.stdout.String()), &p.res); err != nil {
			p.stopErr = fmt.Errorf("delay tool result: %w: %s", err, p.stdout.String())
		}
	})
	return p.res, p.stopErr
}
