package e2e

// This file is the attacker of the session tests: the test binary re-runs
// itself inside an attacker's namespace (see tool), where it sends forged
// WireGuard messages and garbage to engarde-server and counts what comes
// back; and, inside a site, it watches a link the way an on-path observer
// would, to learn the live session indexes and counters (sniff_linux_test.go).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// toolEnv names the environment variable that makes the test binary run
// one of the tools below instead of the tests: its value names the tool,
// which reads a JSON request on standard input and writes a JSON result
// on standard output.
const toolEnv = "ENGARDE_E2E_TOOL"

// tools are the programs the test binary can be re-run as.
var tools = map[string]func(in []byte) (any, error){
	"attack": attackMain,
	"delay":  delayMain,
	"ping":   pingMain,
	"sniff":  sniffMain,
}

// init runs a tool and exits when the binary was started as one; tests
// never see it. It runs before TestMain, which would build binaries.
func init() {
	name := os.Getenv(toolEnv)
	if name == "" {
		return
	}
	f := tools[name]
	if f == nil {
		fmt.Fprintf(os.Stderr, "%s=%s: no such tool\n", toolEnv, name)
		os.Exit(2)
	}
	in, err := readAll(os.Stdin)
	if err == nil {
		var out any
		if out, err = f(in); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(out)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func readAll(f *os.File) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.Bytes(), err
}

// tool runs the tool name in namespace ns with request in, decoding its
// result into out.
func tool(t *testing.T, ns, name string, in, out any, timeout time.Duration) error {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	req, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, exe)
	cmd.Env = append(os.Environ(), toolEnv+"="+name)
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tool %s in %s: %w: %s", name, ns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("tool %s in %s: %w: %s", name, ns, err, stdout.Bytes())
	}
	return nil
}

// Kinds of forged datagram (attackSpec.Kinds).
const (
	// forgeInit is a handshake initiation (type 1, 148 bytes) whose
	// every byte after the header is random: its MACs are wrong, so
	// WireGuard drops it without answering (wireguard-go
	// device/receive.go: CheckMAC1 fails before anything is sent).
	forgeInit = "init"
	// forgeHandshake is a handshake response (type 2, 92 bytes) or a
	// cookie reply (type 3, 64 bytes), alternately, random after the
	// header: what a server's WireGuard receives only when it started a
	// handshake itself.
	forgeHandshake = "response-cookie"
	// forgeTransport is a transport message (type 4) with a random
	// receiver index and counter, 32 to 200 bytes.
	forgeTransport = "transport-random"
	// forgeLive is a transport message carrying a live session's index
	// (attackSpec.Live) with counters just ahead of the real flow's, and
	// every 16th far ahead: if engarde's duplicate filter took them from
	// a non-member, it would drop the real packets that carry those
	// counters later, or slide its window past them.
	forgeLive = "transport-live"
	// forgeGarbage is not WireGuard's: a first byte that is no message
	// type, a WireGuard type at the wrong size, or non-zero reserved
	// bytes.
	forgeGarbage = "garbage"
	// forgeReplay is a real initiation (attackSpec.Replay), byte for
	// byte, as an on-path observer captured it.
	forgeReplay = "replay"
)

// session is a WireGuard session's receiver index and the highest counter
// seen with it, as an on-path observer reads them from the clear-text
// header of transport messages.
type session struct {
	Index   uint32 `json:"index"`
	Counter uint64 `json:"counter"`
}

// forge writes the n-th datagram of kind into b (at least 1500 bytes) and
// returns its length.
func forge(b []byte, kind string, n int, live []session, replay []byte, r *rand.Rand) int {
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	header := func(typ byte) {
		b[0], b[1], b[2], b[3] = typ, 0, 0, 0
	}
	switch kind {
	case forgeInit:
		header(1)
		fill(b[4:148])
		return 148
	case forgeHandshake:
		size := 92
		header(2)
		if n%2 == 1 {
			size = 64
			header(3)
		}
		fill(b[4:size])
		return size
	case forgeTransport:
		size := 32 + r.IntN(169)
		header(4)
		fill(b[4:size])
		return size
	case forgeLive:
		if len(live) == 0 {
			panic("forge: transport-live without a live session")
		}
		s := live[n%len(live)]
		ahead := uint64(1 + n/len(live))
		if n%16 == 15 {
			ahead = 1<<20 + uint64(n)
		}
		size := 32 + 16*(n%8)
		header(4)
		binary.LittleEndian.PutUint32(b[4:], s.Index)
		binary.LittleEndian.PutUint64(b[8:], s.Counter+ahead)
		fill(b[16:size])
		return size
	case forgeReplay:
		if len(replay) == 0 {
			panic("forge: replay without a captured datagram")
		}
		return copy(b, replay)
	case forgeGarbage:
		switch n % 4 {
		case 0: // no message type
			size := 1 + r.IntN(200)
			fill(b[:size])
			b[0] = byte(5 + r.IntN(251))
			return size
		case 1: // an initiation of the wrong size
			size := 149 + r.IntN(60)
			fill(b[:size])
			header(1)
			return size
		case 2: // a response of the wrong size
			size := 1 + r.IntN(91)
			fill(b[:size])
			b[0] = 2
			return size
		default: // a transport message with reserved bytes set
			size := 32 + r.IntN(100)
			fill(b[:size])
			b[0], b[1] = 4, byte(1+r.IntN(255))
			return size
		}
	}
	panic("forge: unknown kind " + kind)
}

// attackSpec is the attack tool's request.
type attackSpec struct {
	// Target is engarde-server (address:port).
	Target string `json:"target"`
	// Kinds are the datagrams to send (forge*), in turn.
	Kinds []string `json:"kinds"`
	// Ports is the number of source ports, a socket each (1 when 0).
	Ports int `json:"ports"`
	// Count is the number of datagrams of each kind from each port.
	Count int `json:"count"`
	// Rate is the datagrams per second, all ports together.
	Rate int `json:"rate"`
	// Live are the sessions forgeLive imitates.
	Live []session `json:"live"`
	// Replay is the datagram forgeReplay repeats.
	Replay []byte `json:"replay"`
	// Linger is how long the sockets listen after the last datagram.
	Linger time.Duration `json:"linger"`
}

// attackResult is what the attack tool did and saw.
type attackResult struct {
	Sent      int `json:"sent"`
	SentBytes int `json:"sentBytes"`
	// SendErrors are datagrams the kernel refused.
	SendErrors int `json:"sendErrors"`
	// Ports is the number of distinct source ports used.
	Ports int `json:"ports"`
	// Received and ReceivedBytes are what came back, on every port.
	Received      int64 `json:"received"`
	ReceivedBytes int64 `json:"receivedBytes"`
}

// attackMain is the attack tool: it sends spec.Count datagrams of each of
// spec.Kinds from each of spec.Ports sockets, paced at spec.Rate, and
// counts what every socket receives until spec.Linger after the last.
func attackMain(in []byte) (any, error) {
	var spec attackSpec
	if err := json.Unmarshal(in, &spec); err != nil {
		return nil, err
	}
	dst, err := net.ResolveUDPAddr("udp4", spec.Target)
	if err != nil {
		return nil, err
	}
	if spec.Ports <= 0 {
		spec.Ports = 1
	}
	var res attackResult
	var recv, recvBytes atomic.Int64
	var wg sync.WaitGroup
	socks := make([]*net.UDPConn, 0, spec.Ports)
	defer func() {
		for _, s := range socks {
			s.Close()
		}
		wg.Wait()
	}()
	ports := map[int]bool{}
	for range spec.Ports {
		s, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return nil, fmt.Errorf("socket %d: %w", len(socks)+1, err)
		}
		socks = append(socks, s)
		ports[s.LocalAddr().(*net.UDPAddr).Port] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 2048)
			for {
				n, err := s.Read(b)
				if err != nil {
					return // closed
				}
				recv.Add(1)
				recvBytes.Add(int64(n))
			}
		}()
	}
	res.Ports = len(ports)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	buf := make([]byte, 2048)
	// Paced by 10 ms slots: rate/100 datagrams each.
	perSlot := max(1, spec.Rate/100)
	slot := time.Now()
	inSlot := 0
	seq := map[string]int{} // per kind
	for range spec.Count {
		for _, s := range socks {
			for _, kind := range spec.Kinds {
				size := forge(buf, kind, seq[kind], spec.Live, spec.Replay, r)
				seq[kind]++
				if _, err := s.WriteToUDP(buf[:size], dst); err != nil {
					res.SendErrors++
				} else {
					res.Sent++
					res.SentBytes += size
				}
				if inSlot++; spec.Rate > 0 && inSlot >= perSlot {
					inSlot = 0
					slot = slot.Add(10 * time.Millisecond)
					time.Sleep(time.Until(slot))
				}
			}
		}
	}
	time.Sleep(spec.Linger)
	res.Received, res.ReceivedBytes = recv.Load(), recvBytes.Load()
	return res, nil
}

// sniffSpec is the sniff tool's request: watch interface Iface for
// transport messages to and from engarde-server's Port.
type sniffSpec struct {
	Iface string `json:"iface"`
	Port  int    `json:"port"`
	// After the first transport message in each direction, watch for
	// Watch more (to take the latest counters), but no longer than
	// Timeout in all.
	Watch   time.Duration `json:"watch"`
	Timeout time.Duration `json:"timeout"`
	// Initiation makes the tool wait for a handshake initiation towards
	// the server instead, and return it.
	Initiation bool `json:"initiation"`
}

// sniffResult is what the sniff tool saw: the receiver index and highest
// counter of the transport messages towards the server (the server's
// WireGuard's index) and towards the client.
type sniffResult struct {
	ToServer session `json:"toServer"`
	ToClient session `json:"toClient"`
	Packets  int     `json:"packets"`
	// Initiation is the first handshake initiation towards the server
	// (with sniffSpec.Initiation).
	Initiation []byte `json:"initiation,omitempty"`
}

// Directions of a captured datagram.
const (
	dirNone = iota
	dirToServer
	dirToClient
)

// parseCapture reads an IPv4 packet captured on a link (from its IP
// header on): if it is a UDP datagram to or from port that carries a
// WireGuard transport message, it returns the direction and the message's
// receiver index and counter.
func parseCapture(p []byte, port int) (dir int, s session) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 17 {
		return dirNone, s
	}
	ihl := int(p[0]&0xf) * 4
	if ihl < 20 || len(p) < ihl+8+16 {
		return dirNone, s
	}
	u := p[ihl:]
	sport, dport := int(binary.BigEndian.Uint16(u[0:])), int(binary.BigEndian.Uint16(u[2:]))
	w := u[8:]
	if w[0] != 4 || w[1]|w[2]|w[3] != 0 {
		return dirNone, s
	}
	s = session{Index: binary.LittleEndian.Uint32(w[4:]), Counter: binary.LittleEndian.Uint64(w[8:])}
	switch {
	case dport == port:
		return dirToServer, s
	case sport == port:
		return dirToClient, s
	}
	return dirNone, session{}
}

// captureInitiation returns the WireGuard handshake initiation an IPv4
// packet captured on a link carries to port, if it carries one.
func captureInitiation(p []byte, port int) ([]byte, bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 17 {
		return nil, false
	}
	ihl := int(p[0]&0xf) * 4
	if ihl < 20 || len(p) < ihl+8 {
		return nil, false
	}
	u := p[ihl:]
	w := u[8:]
	if int(binary.BigEndian.Uint16(u[2:])) != port || len(w) != 148 || w[0] != 1 || w[1]|w[2]|w[3] != 0 {
		return nil, false
	}
	return w, true
}

// observe folds a captured session into the latest one seen in its
// direction: a new index replaces the old (a new handshake), the same
// index keeps its highest counter.
func observe(seen *session, got session) {
	if seen.Index != got.Index || got.Counter >= seen.Counter {
		*seen = got
	}
}
