package e2e

// The session tests run real WireGuard (wireguard-go) over engarde on a
// star (bench/topo.Star): one server namespace, engarde-server in front of
// one WireGuard interface with a peer per client, and two client
// namespaces (sites), each with two links, its own WireGuard and its own
// engarde-client. They check that the server keeps its clients apart
// (each site receives its own traffic only, and the server's WireGuard
// sees one stable endpoint per client), that a pulled link costs no
// packet, that nobody else gets anything from the server whatever it
// forges, and that an on-path observer replaying a client's handshake
// cannot cut that client off. Figures are logged on lines starting with
// TWOCLIENTS or ATTACK, one key=value per figure, for quoting:
//
//	go test ./cmd/e2e/ -run 'TestNetnsTwoClients|TestNetnsAttacks|TestNetnsReplayedInitiation' -v -count=1 | grep -E 'TWOCLIENTS|ATTACK'

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// starServerWeb is the session tests' server web manager, on the server
// namespace's loopback (status -json reads it).
const starServerWeb = "  webManager:\n    listenAddr: \"127.0.0.1:59481\"\n"

// pingWire is the size on a veth (Ethernet header included: rx_bytes
// counts it) of one echo reply through the tunnel: a 56-byte echo in an
// 84-byte IP packet, padded to 96 inside a 128-byte WireGuard transport
// message (16-byte header and tag, whitepaper section 5.4.6), then UDP,
// IPv4 and Ethernet headers.
const pingWire = 14 + 20 + 8 + 16 + 96 + 16

var (
	wgGoOnce sync.Once
	wgGoErr  error
)

// needWGStar skips t, saying why, unless the session tests can run here:
// root, the tools they call, and a tun device for wireguard-go; and builds
// wireguard-go (go.mod's tool dependency) into bin once.
func needWGStar(t *testing.T) {
	t.Helper()
	needNetns(t)
	needTool(t, "wg", "wireguard-tools")
	needTool(t, "nft", "nftables")
	needTool(t, "iperf3", "iperf3")
	needTool(t, "ss", "iproute2")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: wireguard-go needs /dev/net/tun: %v", err)
	}
	wgGoOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "wireguard-go"), "golang.zx2c4.com/wireguard").CombinedOutput()
		if err != nil {
			wgGoErr = fmt.Errorf("building wireguard-go: %v\n%s", err, out)
		}
	})
	if wgGoErr != nil {
		t.Fatal(wgGoErr)
	}
}

// newWGStar starts WireGuard over engarde on a star of two sites with two
// links each, and waits for both sites' first handshake. The test's
// cleanup takes it all down, and on failure shows what each process
// logged.
func newWGStar(t *testing.T) *topo.WGStar {
	t.Helper()
	needWGStar(t)
	prefix := fmt.Sprintf("egw%d-%d", os.Getpid()%10000, nsSeq.Add(1))
	w, err := topo.StartWGStar(prefix, topo.WGStarConfig{Bin: bin, ServerExtra: starServerWeb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engarde-server status: %s", serverStatus(w))
			w.Server.Stop()
			t.Logf("engarde-server stderr:\n%s", tail(w.Server.Stderr.String(), 60))
			for _, c := range w.Clients {
				c.Client.Stop()
				t.Logf("site %d engarde-client stderr:\n%s", c.Index, tail(c.Client.Stderr.String(), 30))
			}
		}
		if err := w.Close(); err != nil {
			t.Errorf("tearing down namespaces: %v", err)
		}
	})
	handshake(t, w, 10*time.Second)
	return w
}

// ping sends count echo requests from site c to the server's tunnel
// address, interval apart, allowing a second for each reply.
func ping(t *testing.T, c *topo.WGClient, count int, interval time.Duration) (pingResult, error) {
	return pingFrom(t, c.NS, topo.StarWGServerIP.String(), count, interval)
}

// pingFrom sends count echo requests from namespace ns to dst, interval
// apart, allowing a second for each reply.
func pingFrom(t *testing.T, ns, dst string, count int, interval time.Duration) (pingResult, error) {
	var r pingResult
	spec := pingSpec{Dst: dst, Count: count, Interval: interval, Wait: time.Second}
	err := tool(t, ns, "ping", spec, &r, time.Duration(count)*interval+30*time.Second)
	return r, err
}

// handshake pings the server from every site through the tunnel until
// each got a reply, which takes a WireGuard handshake per site.
func handshake(t *testing.T, w *topo.WGStar, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, c := range w.Clients {
		for {
			r, err := ping(t, c, 1, 0)
			if err == nil && r.Received == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("site %d: no reply through the tunnel within %v (%+v, %v)", c.Index, d, r, err)
			}
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// serverStatus is what engarde-server status -json says, or why not.
func serverStatus(w *topo.WGStar) string {
	out, err := w.Exec(w.Star.Server, filepath.Join(bin, "engarde-server"), "status", "-json", w.ServerConfigPath)
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Fields(out), " ")
}

// serverEndpoints returns the endpoint the server's WireGuard has for each
// site, by site index, failing t unless there is one per site and they
// differ: engarde-server must give each client its own socket towards
// WireGuard.
func serverEndpoints(t *testing.T, w *topo.WGStar) map[int]string {
	t.Helper()
	eps, err := w.WG.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	seen := map[string]int{}
	for _, c := range w.Clients {
		ep := eps[c.WG.PublicKey]
		out[c.Index] = ep
		if ep == "" || ep == "(none)" {
			t.Errorf("the server's WireGuard has no endpoint for site %d: %v", c.Index, eps)
		} else if k, dup := seen[ep]; dup {
			t.Errorf("the server's WireGuard sees sites %d and %d at the same endpoint %s: one socket for both clients", k, c.Index, ep)
		}
		seen[ep] = c.Index
	}
	return out
}

// pings runs ping from every site at once, count echo requests interval
// apart; the returned func waits for them and returns their results by
// site index, failing t if one could not run. It may be called again, and
// t's cleanup calls it, so that no ping outlives t.
func pings(t *testing.T, w *topo.WGStar, count int, interval time.Duration) func() map[int]pingResult {
	t.Helper()
	var mu sync.Mutex
	res := map[int]pingResult{}
	var errs []error
	var wg sync.WaitGroup
	for _, c := range w.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := ping(t, c, count, interval)
			mu.Lock()
			defer mu.Unlock()
			res[c.Index] = r
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wait := sync.OnceValue(func() map[int]pingResult {
		wg.Wait()
		return res
	})
	t.Cleanup(func() { wait() })
	return func() map[int]pingResult {
		t.Helper()
		r := wait()
		for _, err := range errs {
			t.Error(err)
		}
		errs = nil
		return r
	}
}

// siteRx returns the bytes each link of site c has received so far.
func siteRx(t *testing.T, w *topo.WGStar, c *topo.WGClient) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, l := range c.Links {
		n, err := w.RxBytes(c.Site, l.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[l.Name] = n
	}
	return out
}

// since returns the growth of every counter since before, and its sum.
func since(now, before map[string]uint64) (map[string]uint64, uint64) {
	d := map[string]uint64{}
	var sum uint64
	for k, v := range now {
		d[k] = v - before[k]
		sum += d[k]
	}
	return d, sum
}

// iperfPort is the port of site k's iperf3 server.
func iperfPort(k int) int { return 5200 + k }

// startIperf starts an iperf3 server per site in the server namespace, on
// the server's tunnel address, and waits until they listen.
func startIperf(t *testing.T, w *topo.WGStar) {
	t.Helper()
	for _, c := range w.Clients {
		port := strconv.Itoa(iperfPort(c.Index))
		p, err := w.Start(w.Star.Server, nil, "iperf3", "-s", "-B", topo.StarWGServerIP.String(), "-p", port)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			out, _ := w.Exec(w.Star.Server, "ss", "-Hltn", "sport = :"+port)
			if strings.TrimSpace(out) != "" {
				break
			}
			if !p.Running() || time.Now().After(deadline) {
				t.Fatalf("iperf3 -s -p %s does not listen: %s", port, p.Stderr.String())
			}
		}
	}
}

// iperf runs iperf3 TCP from site c to its server for d (reverse: from
// the server to the site) and returns what the receiver got, in Mbit/s.
func iperf(w *topo.WGStar, c *topo.WGClient, d time.Duration, reverse bool) (float64, error) {
	args := []string{"netns", "exec", c.NS, "iperf3", "-c", topo.StarWGServerIP.String(), "-p", strconv.Itoa(iperfPort(c.Index)),
		"-t", strconv.Itoa(int(d.Seconds())), "-J", "--connect-timeout", "3000"}
	if reverse {
		args = append(args, "-R")
	}
	out, err := exec.Command("ip", args...).Output()
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return 0, fmt.Errorf("site %d: iperf3: %v, output: %v", c.Index, err, jerr)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("site %d: iperf3: %s", c.Index, r.Error)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6, nil
}

// TestNetnsTwoClients runs two clients through one server port, each with
// two links: both reach their WireGuard peer at once, each receives its
// own traffic only, the server's WireGuard sees each at one stable
// endpoint of its own, and a link pulled on one client costs neither
// client a ping.
func TestNetnsTwoClients(t *testing.T) {
	w := newWGStar(t)
	a, b := w.Clients[0], w.Clients[1]
	eps := serverEndpoints(t, w)
	t.Logf("TWOCLIENTS endpoints site1=%s site2=%s", eps[1], eps[2])
	startIperf(t, w)

	// Both at once.
	var wg sync.WaitGroup
	mbps := map[int]float64{}
	var mu sync.Mutex
	for _, c := range w.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := iperf(w, c, 3*time.Second, false)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			mbps[c.Index] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("TWOCLIENTS iperf3-both site1_mbps=%.0f site2_mbps=%.0f", mbps[1], mbps[2])
	for k, m := range mbps {
		if m == 0 {
			t.Errorf("site %d got nothing through iperf3 while the other ran too", k)
		}
	}

	// One busy (iperf3 from the server to it), the other idle but for a
	// ping every 200 ms: the idle site's links must receive its own
	// replies, not the busy site's stream.
	for _, pair := range [][2]*topo.WGClient{{a, b}, {b, a}} {
		busy, idle := pair[0], pair[1]
		busyBefore, idleBefore := siteRx(t, w, busy), siteRx(t, w, idle)
		var r pingResult
		var perr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			r, perr = ping(t, idle, 15, 200*time.Millisecond)
		}()
		m, err := iperf(w, busy, 3*time.Second, true)
		<-done
		if err != nil {
			t.Error(err)
		}
		if perr != nil {
			t.Error(perr)
		}
		_, busyRx := since(siteRx(t, w, busy), busyBefore)
		idleLinks, idleRx := since(siteRx(t, w, idle), idleBefore)
		expected := uint64(r.Received * len(idle.Links) * pingWire)
		t.Logf("TWOCLIENTS isolation busy=site%d busy_mbps=%.0f busy_rx_bytes=%d idle=site%d idle_rx_bytes=%d idle_rx_per_link=%v idle_pings=%d/%d idle_own_replies_bytes=%d",
			busy.Index, m, busyRx, idle.Index, idleRx, idleLinks, r.Received, r.Sent, expected)
		// Its own replies, ARP and the odd keepalive: a few KiB. The
		// busy site received hundreds of MiB meanwhile.
		if limit := expected + 16<<10; idleRx > limit {
			t.Errorf("idle site %d received %d bytes on its links while site %d received %d: want about its own %d bytes of replies (at most %d)",
				idle.Index, idleRx, busy.Index, busyRx, expected, limit)
		}
		if r.Lost() != 0 {
			t.Errorf("idle site %d lost %d of %d pings while site %d was busy", idle.Index, r.Lost(), r.Sent, busy.Index)
		}
	}

	// Pull a link on each site mid-ping, in two ways: site 1's eth-a goes
	// down (the client sees it), site 2's eth-b is cut (carrier up,
	// nothing crosses: neither end notices).
	const n, every = 100, 50 * time.Millisecond
	wait := pings(t, w, n, every)
	restore := at(1500*time.Millisecond, func() {
		if err := a.SetUp("eth-a", false); err != nil {
			t.Error(err)
		}
		if err := w.Cut(b.Site, "eth-b", true); err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
		if err := a.SetUp("eth-a", true); err != nil {
			t.Error(err)
		}
		if err := w.Cut(b.Site, "eth-b", false); err != nil {
			t.Error(err)
		}
	})
	res := wait()
	restore()
	t.Logf("TWOCLIENTS link-pull site1_eth-a_down lost=%d/%d site2_eth-b_cut lost=%d/%d", res[1].Lost(), res[1].Sent, res[2].Lost(), res[2].Sent)
	for k, r := range res {
		if r.Lost() != 0 || r.Sent != n {
			t.Errorf("site %d: %d of %d pings lost (sent %d) with a link pulled on each site", k, r.Lost(), n, r.Sent)
		}
	}

	// The links are back: each must carry its site's replies again.
	aBefore, bBefore := siteRx(t, w, a), siteRx(t, w, b)
	res = pings(t, w, 20, every)()
	aLinks, _ := since(siteRx(t, w, a), aBefore)
	bLinks, _ := since(siteRx(t, w, b), bBefore)
	t.Logf("TWOCLIENTS rejoin site1_eth-a_rx_bytes=%d site2_eth-b_rx_bytes=%d pings=%d/%d,%d/%d (own replies per link: %d bytes)",
		aLinks["eth-a"], bLinks["eth-b"], res[1].Received, res[1].Sent, res[2].Received, res[2].Sent, 20*pingWire)
	for _, x := range []struct {
		site int
		link string
		got  uint64
	}{{1, "eth-a", aLinks["eth-a"]}, {2, "eth-b", bLinks["eth-b"]}} {
		if x.got < 10*pingWire {
			t.Errorf("site %d's %s received %d bytes in 20 pings after it came back: it does not carry the session again", x.site, x.link, x.got)
		}
	}

	after := serverEndpoints(t, w)
	t.Logf("TWOCLIENTS endpoints-after site1=%s site2=%s same=%v", after[1], after[2], after[1] == eps[1] && after[2] == eps[2])
	for k, ep := range eps {
		if after[k] != ep {
			t.Errorf("the server's WireGuard moved site %d from %s to %s during the test", k, ep, after[k])
		}
	}
}

// nftCounter reads the first "counter packets N bytes M" of nft's output.
var nftCounterRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

func nftCounter(out string) (packets, bytes uint64, ok bool) {
	m := nftCounterRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, false
	}
	packets, _ = strconv.ParseUint(m[1], 10, 64)
	bytes, _ = strconv.ParseUint(m[2], 10, 64)
	return packets, bytes, true
}

// TestNetnsAttacks sends, each from an attacker namespace of its own,
// forged WireGuard messages and garbage to engarde-server while both
// sites ping through the tunnel: the server must send the attacker
// nothing (an nftables counter on its output to the attacker's address,
// and the attacker's own sockets), and the sites must lose no ping, nor
// move at the server's WireGuard. The live-index forgeries use the session
// indexes and counters an on-path observer reads on a site's link. Each
// attack gets a tunnel of its own, so that one that breaks the sessions
// does not spoil the next one's figures.
func TestNetnsAttacks(t *testing.T) {
	needWGStar(t)
	all := []string{forgeInit, forgeHandshake, forgeTransport, forgeLive, forgeGarbage}
	for _, tc := range []struct {
		name  string
		kinds []string
		count int // per kind and port
		ports int
		rate  int // datagrams per second
	}{
		{"forged-init", []string{forgeInit}, 2000, 1, 2000},
		{"forged-response-cookie", []string{forgeHandshake}, 2000, 1, 2000},
		{"forged-transport-random", []string{forgeTransport}, 2000, 1, 2000},
		{"forged-transport-live", []string{forgeLive}, 2000, 1, 2000},
		{"garbage", []string{forgeGarbage}, 2000, 1, 2000},
		{"many-ports", all, 1, 2000, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWGStar(t)
			spec := attackSpec{Kinds: tc.kinds, Ports: tc.ports, Count: tc.count, Rate: tc.rate}
			f := runAttack(t, w, spec)
			t.Logf("ATTACK %s %s", tc.name, f)
			f.check(t, spec)
		})
	}
}

// attackFigures are what one attack cost: what the server sent the
// attacker, what the sites lost meanwhile, and whether the server's
// WireGuard kept its endpoints.
type attackFigures struct {
	bytes, packets uint64 // from the server to the attacker's address
	res            attackResult
	pings          map[int]pingResult
	moved          []string // endpoints that changed
}

func (f attackFigures) lost() int { return f.pings[1].Lost() + f.pings[2].Lost() }

func (f attackFigures) String() string {
	return fmt.Sprintf("bytes_to_attacker=%d packets_to_attacker=%d attacker_received=%d sent=%d sent_bytes=%d send_errors=%d ports=%d real_lost=%d site1=%d/%d site2=%d/%d endpoints_same=%v",
		f.bytes, f.packets, f.res.Received, f.res.Sent, f.res.SentBytes, f.res.SendErrors, f.res.Ports, f.lost(),
		f.pings[1].Received, f.pings[1].Sent, f.pings[2].Received, f.pings[2].Sent, len(f.moved) == 0)
}

// check fails t unless the attack got nothing back and cost nothing.
func (f attackFigures) check(t *testing.T, spec attackSpec) {
	t.Helper()
	if f.bytes != 0 || f.res.Received != 0 {
		t.Errorf("the server sent the attacker %d packets (%d bytes); its sockets received %d datagrams: want nothing", f.packets, f.bytes, f.res.Received)
	}
	f.checkCost(t, spec)
}

// checkCost fails t if the sites lost a ping or moved at the server's
// WireGuard, or if the attacker did not send all it should have.
func (f attackFigures) checkCost(t *testing.T, spec attackSpec) {
	t.Helper()
	if f.lost() != 0 {
		t.Errorf("the sites lost %d pings during the attack (site 1 %d of %d, site 2 %d of %d)", f.lost(), f.pings[1].Lost(), f.pings[1].Sent, f.pings[2].Lost(), f.pings[2].Sent)
	}
	for _, m := range f.moved {
		t.Error(m)
	}
	if total := spec.Count * spec.Ports * len(spec.Kinds); f.res.Sent != total || f.res.Ports != spec.Ports {
		t.Errorf("the attacker sent %d of %d datagrams from %d ports, want %d", f.res.Sent, total, f.res.Ports, spec.Ports)
	}
}

// runAttack runs spec (its Target, Live and Linger filled in here) from a
// new attacker namespace while every site pings the server through the
// tunnel, and returns what it cost.
func runAttack(t *testing.T, w *topo.WGStar, spec attackSpec) attackFigures {
	t.Helper()
	eps := serverEndpoints(t, w)
	x, err := w.AddAttacker()
	if err != nil {
		t.Fatal(err)
	}
	// The server can reach the attacker (so a reply would get there);
	// then count what it sends it.
	if r, err := pingFrom(t, w.Star.Server, x.Link.Addr.String(), 1, 0); err != nil || r.Received != 1 {
		t.Fatalf("the server cannot reach the attacker: %+v, %v", r, err)
	}
	table := fmt.Sprintf("egw_x%d", x.Index)
	if err := w.Nft(w.Star.Server, fmt.Sprintf("table ip %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ip daddr %s counter\n }\n}\n", table, x.Link.Addr)); err != nil {
		t.Fatal(err)
	}
	total := spec.Count * max(1, spec.Ports) * len(spec.Kinds)
	spec.Linger = 500 * time.Millisecond
	dur := time.Duration(total)*time.Second/time.Duration(spec.Rate) + spec.Linger
	const every = 50 * time.Millisecond
	wait := pings(t, w, int((dur+1500*time.Millisecond)/every), every)
	time.Sleep(300 * time.Millisecond)

	spec.Target = fmt.Sprintf("%s:%d", x.Link.ServerAddr, topo.ServerPort)
	if containsKind(spec.Kinds, forgeLive) {
		spec.Live = liveSessions(t, w)
	}
	var f attackFigures
	if err := tool(t, x.NS, "attack", spec, &f.res, dur+30*time.Second); err != nil {
		t.Fatal(err)
	}
	f.pings = wait()
	out, err := w.Exec(w.Star.Server, "nft", "list", "table", "ip", table)
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if f.packets, f.bytes, ok = nftCounter(out); !ok {
		t.Fatalf("no counter in %s", out)
	}
	after := serverEndpoints(t, w)
	for k, ep := range eps {
		if after[k] != ep {
			f.moved = append(f.moved, fmt.Sprintf("the attack moved site %d's endpoint at the server's WireGuard from %s to %s", k, ep, after[k]))
		}
	}
	return f
}

// TestNetnsReplayedInitiation replays, from attacker namespaces, a real
// handshake initiation captured on one site's link, the way an on-path
// observer of that link could: first from one source port, then from 100
// at once. The server takes a re-sent initiation it has seen answered for
// a link of that session joining (DESIGN.md, "Sessions from the
// handshake"), so the attacker's addresses may receive the session's
// traffic: that figure is reported, not judged. What is judged is the
// threat model's "one who sees one link can disturb that link, not the
// others": neither site may lose a ping, so the attacker's addresses must
// not crowd the site's own out of its session.
func TestNetnsReplayedInitiation(t *testing.T) {
	w := newWGStar(t)
	c := w.Clients[0]
	type capture struct {
		r   sniffResult
		err error
	}
	ch := make(chan capture, 1)
	go func() {
		var r sniffResult
		err := tool(t, c.NS, "sniff", sniffSpec{Iface: c.Links[0].Name, Port: topo.ServerPort, Initiation: true, Timeout: 8 * time.Second}, &r, 15*time.Second)
		ch <- capture{r, err}
	}()
	time.Sleep(300 * time.Millisecond)
	// A new handshake: site 1's WireGuard forgets its peer, then meets it
	// again on the next ping.
	for _, args := range [][]string{
		{"wg", "set", c.WG.Name, "peer", w.WG.PublicKey, "remove"},
		{"wg", "set", c.WG.Name, "peer", w.WG.PublicKey, "endpoint", topo.ClientListen, "allowed-ips", topo.StarWGServerIP.String() + "/32"},
	} {
		if _, err := w.Exec(c.NS, args...); err != nil {
			t.Fatal(err)
		}
	}
	handshake(t, w, 10*time.Second)
	got := <-ch
	if got.err != nil {
		t.Fatal(got.err)
	}
	for _, ports := range []int{1, 100} {
		t.Run(fmt.Sprintf("ports=%d", ports), func(t *testing.T) {
			before := len(evictions(w.Server.Stderr.String(), c.Links))
			spec := attackSpec{Kinds: []string{forgeReplay}, Replay: got.r.Initiation, Ports: ports, Count: 1, Rate: 5000}
			f := runAttack(t, w, spec)
			lines := evictions(w.Server.Stderr.String(), c.Links)[before:]
			evicted := len(lines)
			t.Logf("ATTACK replayed-init ports=%d %s real_members_evicted=%d", ports, f, evicted)
			if f.bytes != 0 {
				t.Logf("ATTACK replayed-init ports=%d note: the replayed initiation made attacker addresses members of site 1's session: the server sent them %d bytes of it (%d datagrams reached the attacker's sockets before they closed)", ports, f.bytes, f.res.Received)
			}
			if evicted != 0 {
				t.Errorf("the attacker's addresses crowded %d of site 1's own addresses out of its session:\n%s", evicted, strings.Join(lines, "\n"))
			}
			f.checkCost(t, spec)
		})
	}
}

// evictions returns the server's log lines saying that one of links' site
// addresses made way for another address in its session.
func evictions(log string, links []*topo.Veth) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "made way for") {
			continue
		}
		for _, l := range links {
			if strings.Contains(line, " left: "+l.Addr.String()+":") {
				out = append(out, line)
			}
		}
	}
	return out
}

func containsKind(kinds []string, k string) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// liveSessions watches each site's first link, as an on-path observer
// would, and returns the sessions it saw in both directions: towards the
// server (the server's WireGuard's receiver index) and towards the site.
// The sites must be pinging.
func liveSessions(t *testing.T, w *topo.WGStar) []session {
	t.Helper()
	var out []session
	for _, c := range w.Clients {
		var r sniffResult
		spec := sniffSpec{Iface: c.Links[0].Name, Port: topo.ServerPort, Watch: 200 * time.Millisecond, Timeout: 3 * time.Second}
		if err := tool(t, c.NS, "sniff", spec, &r, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("site %d's %s: %d transport messages; towards the server index %#08x counter %d, towards the site index %#08x counter %d",
			c.Index, spec.Iface, r.Packets, r.ToServer.Index, r.ToServer.Counter, r.ToClient.Index, r.ToClient.Counter)
		out = append(out, r.ToServer, r.ToClient)
	}
	return out
}
