// Package topo builds the network namespaces that engarde's end-to-end
// tests, demo and benchmarks run in, and always takes them down again:
//
//	 namespace <prefix>c (client side)        namespace <prefix>s (server side)
//	┌───────────────────────────────┐        ┌───────────────────────────────┐
//	│ generator ─▶ engarde-client   │ eth-a  │  engarde-server ─▶ sink        │
//	│              127.0.0.1:59401  ├────────┤  0.0.0.0:59402    127.0.0.1:   │
//	│        198.18.1.2 fd00:1::2   │        │  198.18.1.1 fd00:1::1   59301  │
//	│                               │ eth-b  │                               │
//	│        198.18.2.2 fd00:2::2   ├────────┤  198.18.2.1 fd00:2::1         │
//	└───────────────────────────────┘        └───────────────────────────────┘
//
// Link i (a, b, c...) uses 198.18.i.0/24 and fd00:i::/64 (the benchmarking
// range and a unique-local prefix); neither namespace has a default route,
// so nothing leaves them. Everything here needs root and iproute2;
// loss emulation needs nftables, rate limits tc.
package topo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Topo is a client and a server namespace joined by veth links.
type Topo struct {
	// Client and Server are the namespace names.
	Client, Server string
	// Links are the links in creation order.
	Links []*Link

	mu    sync.Mutex // guards procs and runDir
	procs []*Proc
	// runDir is the $RUNTIME_DIRECTORY of the processes Start starts, so
	// that their control sockets (NAME.ROLE.sock) are this topology's
	// own: several tests or benchmarks as root at once, each with its
	// engarde.yml, must not meet in /run/engarde.
	runDir string
	// more are further namespaces Close deletes (a Star's sites and
	// attackers).
	more []string
}

// Link is one veth pair between the namespaces. Its ends are named
// "eth-<letter>" on both sides.
type Link struct {
	Name       string
	ClientAddr netip.Addr // IPv4
	ServerAddr netip.Addr
	ClientV6   netip.Addr
	ServerV6   netip.Addr
}

// Usable reports whether this process can build namespaces, and if not,
// why: New needs root, ip and sysctl.
func Usable() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("iproute2's ip command is not installed (apt-get install iproute2)")
	}
	if _, err := exec.LookPath("sysctl"); err != nil {
		return errors.New("procps's sysctl command is not installed (apt-get install procps)")
	}
	return nil
}

// New creates the two namespaces, named prefix+"c" and prefix+"s", with
// links veth pairs between them. Leftovers with the same names (from a run
// that was killed) are removed first. On error nothing is left behind.
func New(prefix string, links int) (*Topo, error) {
	if err := Usable(); err != nil {
		return nil, err
	}
	t := &Topo{Client: prefix + "c", Server: prefix + "s"}
	for _, ns := range []string{t.Client, t.Server} {
		_ = run("ip", "netns", "del", ns) // leftovers; usually absent
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Close()
			return nil, err
		}
		if err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			t.Close()
			return nil, err
		}
		// No duplicate address detection: with it, IPv6 neighbour
		// discovery waits about a second for the link-local addresses of
		// new links, and the first second of traffic is lost.
		for _, k := range []string{"all", "default"} {
			if err := run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf."+k+".accept_dad=0"); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	for range links {
		if _, err := t.AddLink(); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// AddLink adds the next veth pair, addressed and up.
func (t *Topo) AddLink() (*Link, error) {
	i := len(t.Links) + 1
	if i > 26 {
		return nil, errors.New("too many links")
	}
	l := Plan(i)
	cmds := [][]string{
		{"ip", "link", "add", l.Name, "netns", t.Client, "type", "veth", "peer", "name", l.Name, "netns", t.Server},
		// Up before addressing: IPv6 joins an address's solicited-node
		// group when the address is added to a running interface; added
		// to a down one, neighbour discovery fails for its first second.
		{"ip", "-n", t.Server, "link", "set", l.Name, "up"},
		{"ip", "-n", t.Client, "link", "set", l.Name, "up"},
		// The server side first: the client starts using a link as soon
		// as its own address appears, and an address resolution that
		// finds nobody is retried only a second later.
		{"ip", "-n", t.Server, "addr", "add", l.ServerAddr.String() + "/24", "dev", l.Name},
		{"ip", "-n", t.Server, "addr", "add", l.ServerV6.String() + "/64", "dev", l.Name, "nodad"},
		{"ip", "-n", t.Client, "addr", "add", l.ClientAddr.String() + "/24", "dev", l.Name},
		{"ip", "-n", t.Client, "addr", "add", l.ClientV6.String() + "/64", "dev", l.Name, "nodad"},
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			return nil, err
		}
	}
	t.Links = append(t.Links, l)
	return l, nil
}

// Plan returns the names and addresses link i (1 for eth-a) has or will
// have.
func Plan(i int) *Link {
	return &Link{
		Name:       "eth-" + string(rune('a'+i-1)),
		ClientAddr: netip.AddrFrom4([4]byte{198, 18, byte(i), 2}),
		ServerAddr: netip.AddrFrom4([4]byte{198, 18, byte(i), 1}),
		ClientV6:   netip.MustParseAddr(fmt.Sprintf("fd00:%x::2", i)),
		ServerV6:   netip.MustParseAddr(fmt.Sprintf("fd00:%x::1", i)),
	}
}

// Link returns the link called name ("eth-a"), or nil.
func (t *Topo) Link(name string) *Link {
	for _, l := range t.Links {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// SetUp sets the client end of a link up or down (the server end loses
// carrier with it).
func (t *Topo) SetUp(link string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run("ip", "-n", t.Client, "link", "set", link, state)
}

// Exec runs a command in namespace ns and returns its combined output.
func (t *Topo) Exec(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	env, err := t.environ()
	if err != nil {
		return "", err
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// environ is the environment of what Start and Exec run: this process's,
// with RUNTIME_DIRECTORY set to the topology's own directory (made at the
// first call), where the daemons put their control sockets and where the
// status command run by Exec finds them.
func (t *Topo) environ() ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.runDir == "" {
		dir, err := os.MkdirTemp("", "engarde-run-")
		if err != nil {
			return nil, err
		}
		t.runDir = dir
	}
	return append(os.Environ(), "RUNTIME_DIRECTORY="+t.runDir), nil
}

// Nft loads an nftables ruleset (nft -f -) into namespace ns.
func (t *Topo) Nft(ns, ruleset string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// NftRemove deletes an nftables table from namespace ns, if it is there.
// It declares the table, which does nothing when it exists, and deletes it
// in one transaction: nft's "destroy" would do the same but needs nftables
// 1.0.8, and Debian 12 has 1.0.6, where it is a syntax error and the table
// stays.
func (t *Topo) NftRemove(ns, family, table string) error {
	return t.Nft(ns, fmt.Sprintf("table %s %s\ndelete table %s %s\n", family, table, family, table))
}

// Loss drops percent of the packets leaving each namespace on every link
// (nftables numgen), so each direction of each link loses that share.
// Loss(0) removes it. See LossIngress for a drop the sender cannot see.
func (t *Topo) Loss(percent int) error {
	return t.randomDrop("engarde_loss", "out", "output", "oifname", percent)
}

// randomDrop loads, in both namespaces, a table that drops percent of the
// UDP packets in chain (at hook) whose interface (iface: oifname or
// iifname) is a link, replacing any earlier one; percent 0 only removes
// it.
func (t *Topo) randomDrop(table, chain, hook, iface string, percent int) error {
	for _, ns := range []string{t.Client, t.Server} {
		_ = t.NftRemove(ns, "inet", table)
		if percent <= 0 {
			continue
		}
		var rules strings.Builder
		fmt.Fprintf(&rules, "table inet %s {\n chain %s {\n  type filter hook %s priority 0; policy accept;\n", table, chain, hook)
		for _, l := range t.Links {
			fmt.Fprintf(&rules, "  %s %q meta l4proto udp numgen random mod 100 < %d counter drop\n", iface, l.Name, percent)
		}
		fmt.Fprintf(&rules, " }\n}\n")
		if err := t.Nft(ns, rules.String()); err != nil {
			return err
		}
	}
	return nil
}

// Blackhole makes a link silently dead while its carrier stays up: the
// client end drops everything it sends and receives, ARP included, and
// both ends forget their neighbours. Packets then wait in the kernel for a neighbour
// resolution that never succeeds, filling socket send buffers, which is
// how a cut cable beyond a switch looks. Blackhole(link, false) undoes it.
func (t *Topo) Blackhole(link string, on bool) error {
	_ = t.NftRemove(t.Client, "netdev", "engarde_hole")
	if on {
		rules := fmt.Sprintf("table netdev engarde_hole {\n"+
			" chain in {\n  type filter hook ingress device %q priority 0; policy drop;\n }\n"+
			" chain out {\n  type filter hook egress device %q priority 0; policy drop;\n }\n}\n", link, link)
		if err := t.Nft(t.Client, rules); err != nil {
			return err
		}
	}
	// While on, let the kernel queue up to 64 MiB per unresolved
	// neighbour, so that what fills up is the socket's send buffer, not
	// this queue (by default the same size as a socket buffer without
	// CAP_NET_ADMIN). Off, the namespace's default again: the next
	// test's link is an ordinary one.
	q := ""
	if on {
		q = "67108864"
	}
	t.NeighbourQueue(link, q)
	for _, ns := range []string{t.Client, t.Server} {
		_ = run("ip", "-n", ns, "neigh", "flush", "dev", link)
	}
	return nil
}

// NeighbourQueue sets how many bytes each end of link holds for a
// neighbour not yet resolved (unres_qlen_bytes); "" restores the
// namespace's default. Best effort: a link without it keeps its queue.
func (t *Topo) NeighbourQueue(link, bytes string) {
	for _, ns := range []string{t.Client, t.Server} {
		q := bytes
		if q == "" {
			out, err := t.Exec(ns, "sysctl", "-n", "net.ipv4.neigh.default.unres_qlen_bytes")
			if q = strings.TrimSpace(out); err != nil || q == "" {
				q = "212992" // the kernel's default (SK_WMEM_MAX)
			}
		}
		_ = run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.neigh."+link+".unres_qlen_bytes="+q)
	}
}

// Proc is a process started in a namespace.
type Proc struct {
	Cmd    *exec.Cmd
	Name   string
	Stderr *SafeBuffer
	done   chan struct{}
	err    error
}

// Start runs a program in namespace ns. Its standard error is kept (and
// copied to extra if not nil); Close stops it.
func (t *Topo) Start(ns string, extra io.Writer, name string, args ...string) (*Proc, error) {
	return t.StartEnv(ns, nil, extra, name, args...)
}

// StartEnv is Start with further environment variables ("GOMAXPROCS=1"),
// which override this process's own.
func (t *Topo) StartEnv(ns string, env []string, extra io.Writer, name string, args ...string) (*Proc, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	base, err := t.environ()
	if err != nil {
		return nil, err
	}
	// ip netns exec passes its environment on; of duplicates, os/exec
	// keeps the last.
	cmd.Env = append(base, env...)
	p := &Proc{Cmd: cmd, Name: name, Stderr: &SafeBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.Stderr
	if extra != nil {
		cmd.Stderr = io.MultiWriter(p.Stderr, extra)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.mu.Lock()
	t.procs = append(t.procs, p)
	t.mu.Unlock()
	return p, nil
}

// Stop sends SIGTERM and waits up to 5 s, then kills.
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Close stops every process started with Start and deletes the
// namespaces (and with them their interfaces and rules).
func (t *Topo) Close() error {
	t.mu.Lock()
	procs, runDir := t.procs, t.runDir
	t.procs, t.runDir = nil, ""
	t.mu.Unlock()
	for _, p := range procs {
		_ = p.Stop()
	}
	if runDir != "" {
		_ = os.RemoveAll(runDir) // a temporary directory; the OS cleans up after a failure
	}
	var errs []error
	for _, ns := range append([]string{t.Client, t.Server}, t.more...) {
		if ns == "" {
			continue // a Star has no Client
		}
		if err := run("ip", "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SafeBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type SafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
