package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// Limits the rows hold the tunnel to.
const (
	// backWithin is how soon a link that comes back beside a working one
	// must carry the stream again. It allows one ARP retransmission
	// (net.ipv4.neigh.*.retrans_time_ms, 1 s): while the link was down,
	// the server's kernel queued the replies to the link's address behind
	// the unresolved neighbour (unres_qlen_bytes, 212 KiB of GSO trains:
	// about 1200 datagrams at this rate), and flushes them the moment the
	// client's ARP request arrives; the veth delivers that burst through
	// the client CPU's 1000-packet backlog (net.core.netdev_max_backlog),
	// which drops the ARP reply with most of the burst, and the client
	// asks again a second later. Measured: 989 of 1205 dropped at the
	// client's eth-a, its neighbour INCOMPLETE for 1.03 s. A link back
	// after all were down carries nothing queued, and is held to
	// allDownResume.
	backWithin = 1200 * time.Millisecond
	// dnsBackWithin is the same while DNS does not answer.
	dnsBackWithin = backWithin
	// backPackets is how many packets its server end must receive to
	// count as carrying it (20 ms of the stream; ARP and neighbour
	// discovery send a handful).
	backPackets = 20
	// allDownResume bounds the return of traffic when one link comes back
	// after all were down (issue 10).
	allDownResume = 200 * time.Millisecond
	// roleResume bounds the return of traffic after an engarde role
	// restarts (issue 10 for the server; the same for the client).
	roleResume = time.Second
	// wgSettle is how long after a restarted wireguard-go's first echo
	// its losses are still its new session's (Spec.Settle).
	wgSettle = time.Second
	// wgResume bounds the return of traffic after wireguard-go restarts:
	// a peer that keeps sending without hearing back starts a new
	// handshake after KeepaliveTimeout + RekeyTimeout, 15 s, plus up to
	// 333 ms of jitter (wireguard-go device/timers.go, timersDataSent and
	// expiredNewHandshake; device/constants.go).
	wgResume = 16 * time.Second
	// dnsWait bounds the wait for the client's first unanswered DNS
	// query: engarde caches an answer for 60 s (engine/resolve.go).
	dnsWait = 65 * time.Second
	// dnsOutage is how long the name stays unresolvable once the client
	// asks (issue 10).
	dnsOutage = 10 * time.Second
)

// row is one line of the matrix.
type row struct {
	name string
	// must says what has to hold, in the table's words.
	must string
	// max is the longest the row's stream runs.
	max time.Duration
	run func(x *rowRun)
}

// Event is something a row did to the tunnel.
type Event struct {
	At    int64  `json:"at_unix_ns"`
	What  string `json:"what"`
	Error string `json:"error,omitempty"`
}

// rowRun is a row being run: what it did and what it demands.
type rowRun struct {
	ctx    context.Context
	e      *env
	s      *stream
	start  time.Time
	events []Event
	spec   Spec
	notes  []string
	errs   []string

	mu    sync.Mutex // guards backs
	backs []*Back
	wg    sync.WaitGroup // the watchBack goroutines
}

// sleep waits d, or less when the run is interrupted.
func (x *rowRun) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-x.ctx.Done():
	}
}

// do records the event what and does f, noting its error.
func (x *rowRun) do(what string, f func() error) {
	ev := Event{At: time.Now().UnixNano(), What: what}
	if err := f(); err != nil {
		ev.Error = err.Error()
		x.errs = append(x.errs, what+": "+err.Error())
	}
	x.events = append(x.events, ev)
}

// outage starts a span in which loss is expected.
func (x *rowRun) outage() { x.spec.OutageFrom = time.Now().UnixNano() }

// back marks the path back: the first echo must come within d.
func (x *rowRun) back(d time.Duration) {
	x.spec.BackAt, x.spec.ResumeWithin = time.Now().UnixNano(), d
}

// waitResume waits until an echo arrives after BackAt, or d has passed.
func (x *rowRun) waitResume(d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline) && x.ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		if x.s.echoedSince(x.spec.BackAt) {
			return
		}
	}
}

// watchBack checks, from now on, that link carries the stream again
// within backWithin (or within[0]): it watches its server end's counter
// for up to 3 s, to say how long it took even when too long.
func (x *rowRun) watchBack(link string, within ...time.Duration) {
	b := &Back{Link: link, At: time.Now().UnixNano(), Within: backWithin, After: -1}
	if len(within) > 0 {
		b.Within = within[0]
	}
	base, _ := x.e.rxOf()
	x.mu.Lock()
	x.backs = append(x.backs, b)
	x.mu.Unlock()
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && x.ctx.Err() == nil; time.Sleep(5 * time.Millisecond) {
			now, err := x.e.rxOf()
			if err == nil && grew(base[link], now[link]) >= backPackets {
				x.mu.Lock()
				b.After = time.Duration(time.Now().UnixNano() - b.At)
				x.mu.Unlock()
				return
			}
		}
	}()
}

// downUp takes a link down and up again.
func downUp(link string) func(x *rowRun) {
	return func(x *rowRun) {
		x.sleep(time.Second)
		x.do(link+" down", func() error { return x.e.tp.SetUp(link, false) })
		x.sleep(2 * time.Second)
		x.do(link+" up", func() error { return x.e.tp.SetUp(link, true) })
		x.watchBack(link)
		x.sleep(2 * time.Second)
	}
}

// flap takes eth-a down and up every 200 ms for 10 s.
func flap(x *rowRun) {
	x.sleep(time.Second)
	up := true
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && x.ctx.Err() == nil; {
		up = !up
		what := "eth-a down"
		if up {
			what = "eth-a up"
		}
		x.do(what, func() error { return x.e.tp.SetUp("eth-a", up) })
		x.sleep(200 * time.Millisecond)
	}
	if !up {
		x.do("eth-a up", func() error { return x.e.tp.SetUp("eth-a", true) })
	}
	x.watchBack("eth-a")
	x.sleep(2 * time.Second)
}

// recreate deletes eth-a and creates it again with clientAddr.
func recreate(clientAddr netip.Addr) func(x *rowRun) {
	return func(x *rowRun) {
		x.sleep(time.Second)
		x.do("eth-a deleted", func() error { return x.e.tp.DeleteLink("eth-a") })
		x.sleep(time.Second)
		x.do("eth-a created, "+clientAddr.String(), func() error { return x.e.tp.RecreateLink("eth-a", clientAddr) })
		x.watchBack("eth-a")
		x.sleep(2 * time.Second)
	}
}

// addrGone removes eth-a's IPv4 address and adds it back.
func addrGone(x *rowRun) {
	a := topo.Plan(1).ClientAddr
	x.sleep(time.Second)
	x.do("eth-a address removed", func() error { return x.e.tp.SetClientAddr("eth-a", a, false) })
	x.sleep(1500 * time.Millisecond)
	x.do("eth-a address added", func() error { return x.e.tp.SetClientAddr("eth-a", a, true) })
	x.watchBack("eth-a")
	x.sleep(2 * time.Second)
}

// impaired turns an impairment of eth-a on for hold, then off.
func impaired(what string, set func(e *env, on bool) error, hold time.Duration, back bool) func(x *rowRun) {
	return func(x *rowRun) {
		x.sleep(time.Second)
		x.do("eth-a "+what, func() error { return set(x.e, true) })
		x.sleep(hold)
		x.do("eth-a restored", func() error { return set(x.e, false) })
		if back {
			x.watchBack("eth-a")
		}
		x.sleep(2 * time.Second)
	}
}

// delayed sends eth-b through the relay, 100 ms each way, beside eth-a.
func delayed(x *rowRun) {
	var relay string
	x.sleep(time.Second)
	x.do("relay started", func() (err error) { relay, err = x.e.startRelay(100 * time.Millisecond); return err })
	x.sleep(500 * time.Millisecond)
	if relay != "" {
		x.do("eth-b through the relay (SIGHUP)", func() error { return x.e.writeConfig(clientYAML(relay)) })
	}
	x.sleep(4 * time.Second)
	x.do("eth-b direct again (SIGHUP)", func() error { return x.e.writeConfig(x.e.yml) })
	x.sleep(2 * time.Second)
	x.e.stopRelay()
}

// allDown takes both links down for 5 s, then brings eth-a back, then
// eth-b.
func allDown(x *rowRun) {
	x.sleep(time.Second)
	x.outage()
	x.do("eth-a, eth-b down", func() error {
		if err := x.e.tp.SetUp("eth-a", false); err != nil {
			return err
		}
		return x.e.tp.SetUp("eth-b", false)
	})
	x.sleep(5 * time.Second)
	x.do("eth-a up", func() error { return x.e.tp.SetUp("eth-a", true) })
	x.back(allDownResume)
	x.watchBack("eth-a")
	x.waitResume(2 * time.Second)
	x.sleep(time.Second)
	x.do("eth-b up", func() error { return x.e.tp.SetUp("eth-b", true) })
	x.watchBack("eth-b")
	x.sleep(2 * time.Second)
}

// observe is how long a restart row waits for the traffic to come back,
// beyond what it demands, to say how long it took.
const observe = 20 * time.Second

// restarted restarts something with f and waits for the traffic.
func restarted(what string, within time.Duration, f func(e *env) error) func(x *rowRun) {
	return func(x *rowRun) {
		x.sleep(time.Second)
		x.outage()
		x.do(what+" restarted", func() error { return f(x.e) })
		x.back(within)
		x.waitResume(observe)
		x.sleep(1500 * time.Millisecond)
	}
}

// settled gives a wireguard-go restart row its new session's settling
// time (wgSettle) before losses count against the tunnel again.
func settled(run func(x *rowRun)) func(x *rowRun) {
	return func(x *rowRun) {
		x.spec.Settle = wgSettle
		run(x)
	}
}

// dnsDown stops answering DNS, waits for the client to ask, then keeps the
// name unresolvable for dnsOutage while eth-a goes down and up.
func dnsDown(x *rowRun) {
	x.sleep(time.Second)
	dropped := func() int { return strings.Count(x.e.dns.Stderr.String(), " dropped") }
	before := dropped()
	silent := time.Now()
	x.do("DNS stops answering", func() error { return x.e.dnsAnswering(false) })
	for time.Since(silent) < dnsWait && dropped() == before && x.ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if dropped() == before {
		x.notes = append(x.notes, fmt.Sprintf("the client asked nothing in %v", dnsWait))
	} else {
		x.do(fmt.Sprintf("client's first unanswered query, %s after", ms(time.Since(silent))), func() error { return nil })
	}
	from := time.Now()
	x.sleep(time.Second)
	x.do("eth-a down", func() error { return x.e.tp.SetUp("eth-a", false) })
	x.sleep(3 * time.Second)
	x.do("eth-a up", func() error { return x.e.tp.SetUp("eth-a", true) })
	x.watchBack("eth-a", dnsBackWithin)
	x.sleep(dnsOutage - time.Since(from))
	x.do("DNS answers again", func() error { return x.e.dnsAnswering(true) })
	x.notes = append(x.notes, fmt.Sprintf("%d queries unanswered", dropped()-before))
	x.sleep(1500 * time.Millisecond)
}

// rows is the matrix, in the order it runs.
func rows() []row {
	const linkMust = "no loss, RTT within bound"
	backMust := fmt.Sprintf("%s; the link carries traffic ≤ %s after it is back", linkMust, ms(backWithin))
	wgGo := func(e *env) string { return filepath.Join(e.bin, "wireguard-go") }
	return []row{
		{"link-a-down-up", "eth-a down 2 s: " + backMust, 7 * time.Second, downUp("eth-a")},
		{"link-b-down-up", "eth-b down 2 s: " + backMust, 7 * time.Second, downUp("eth-b")},
		{"flap-a", "eth-a down/up every 200 ms for 10 s: " + backMust, 15 * time.Second, flap},
		{"recreate-a", "eth-a deleted, created again (same name, address): " + backMust, 6 * time.Second, recreate(topo.Plan(1).ClientAddr)},
		{"recreate-a-new-addr", "eth-a deleted, created with 198.18.1.3: " + backMust, 6 * time.Second, recreate(netip.MustParseAddr("198.18.1.3"))},
		{"addr-a-removed", "eth-a's address removed 1.5 s, added back: " + backMust, 6 * time.Second, addrGone},
		{"blackhole-a", "eth-a drops everything 2.5 s (nftables), carrier up: " + backMust, 7 * time.Second,
			impaired("black-holed", func(e *env, on bool) error {
				err := e.tp.Blackhole("eth-a", on)
				// With the kernel's own neighbour queue, not the 64 MiB
				// Blackhole sets for the tests of full socket buffers:
				// a host's link, whose queue flushes at once on return.
				e.tp.NeighbourQueue("eth-a", "")
				return err
			}, 2500*time.Millisecond, true)},
		{"deaf-neighbour-a", "eth-a's ARP unanswered 2.5 s, carrier up: " + backMust, 7 * time.Second,
			impaired("ARP unanswered", func(e *env, on bool) error { return e.tp.DeafNeighbour("eth-a", on) }, 2500*time.Millisecond, true)},
		{"rate-limit-a", "eth-a at 250 kbit/s (tbf; the stream is ~2.2 Mbit/s) for 3 s: " + linkMust, 7 * time.Second,
			impaired("limited to 250 kbit/s", func(e *env, on bool) error {
				if on {
					return e.tp.Limit("eth-a", "250kbit", "50ms")
				}
				return e.tp.Limit("eth-a", "", "")
			}, 3*time.Second, false)},
		{"delay-b-200ms", "eth-b 200 ms slower (a relay, 100 ms each way) for 4 s: " + linkMust, 10 * time.Second, delayed},
		{"all-down-5s", fmt.Sprintf("both links down 5 s, then eth-a: traffic back ≤ %s of eth-a up; no loss after", ms(allDownResume)), 13 * time.Second, allDown},
		{"server-restart", fmt.Sprintf("engarde-server restarted: traffic back ≤ %s of it starting", ms(roleResume)), observe + 5*time.Second,
			restarted("engarde-server", roleResume, func(e *env) error { return e.tun.RestartServer() })},
		{"client-restart", fmt.Sprintf("engarde-client restarted, WireGuard untouched: traffic back ≤ %s of its links up", ms(roleResume)), observe + 5*time.Second,
			restarted("engarde-client", roleResume, func(e *env) error { return e.tun.RestartClient() })},
		{"wg-client-restart", fmt.Sprintf("wireguard-go restarted on the client: traffic back ≤ %s (WireGuard's handshake timers); no loss from %s after that", ms(wgResume), ms(wgSettle)), observe + 5*time.Second,
			settled(restarted("client's wireguard-go", wgResume, func(e *env) error { return e.wgc.Restart(wgGo(e), wgClientAddr) }))},
		{"wg-server-restart", fmt.Sprintf("wireguard-go restarted on the server: traffic back ≤ %s (WireGuard's handshake timers); no loss from %s after that", ms(wgResume), ms(wgSettle)), observe + 5*time.Second,
			settled(restarted("server's wireguard-go", wgResume, func(e *env) error { return e.wgs.Restart(wgGo(e), wgServerAddr) }))},
		{"dns-outage", fmt.Sprintf("server's name unresolvable %v while eth-a goes down and up: %s; eth-a carries traffic ≤ %s after it is back", dnsOutage, linkMust, ms(dnsBackWithin)), dnsWait + dnsOutage + 5*time.Second, dnsDown},
	}
}
