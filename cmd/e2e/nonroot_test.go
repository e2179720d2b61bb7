package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// The capabilities the README's "Running as a service, without root" and
// scripts/systemd/*.service grant, as setpriv names them, with their bits
// in /proc/PID/status (linux/capability.h).
var (
	clientCaps = []string{"net_raw", "net_admin"}
	serverCaps = []string{"net_admin"}
	capBits    = map[string]uint64{"net_admin": 1 << 12, "net_raw": 1 << 13}
)

// nobody is the unprivileged user and group the tests run engarde as.
const nobody = 65534

// unprivileged is a tunnel whose client and server run as nobody with only
// the given capabilities, through setpriv inside the namespaces.
type unprivileged struct {
	*env
	dir string
}

// newUnprivileged builds the namespace tunnel of newEnv, but starts
// engarde-client and engarde-server as nobody (setpriv, util-linux), each
// with only its capabilities (none when nil), from copies of the binaries
// and the configuration that nobody can read. With wait it returns once
// the client has a link on every interface.
func newUnprivileged(t *testing.T, c topo.TunnelConfig, ccaps, scaps []string, wait bool) *unprivileged {
	t.Helper()
	needNetns(t)
	needTool(t, "setpriv", "util-linux")
	c.Bin = bin
	c.LogLevel = "debug"
	if c.Links == 0 {
		c.Links = 2
	}
	if c.SinkMode == "" {
		c.SinkMode = "first"
	}
	// The control sockets next to the configuration, in the directory
	// nobody may write to below: what the units' RuntimeDirectory is for.
	c.ClientExtra += "  controlSocket: client.sock\n"
	c.ServerExtra += "  controlSocket: server.sock\n"
	// os.MkdirTemp makes the directory 0700; nobody must enter it, and
	// write there the state files the configuration names next to
	// itself (what the units' StateDirectory is for), but not change
	// the binaries or the configuration, which stay root's.
	dir, err := os.MkdirTemp("", "engarde-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"engarde-client", "engarde-server"} {
		if err := copyFile(filepath.Join(bin, name), filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "engarde.yml")
	if err := os.WriteFile(config, []byte(c.YAML()), 0o644); err != nil {
		t.Fatal(err)
	}

	tp, err := topo.New(fmt.Sprintf("egk%d-%d", os.Getpid()%100000, nsSeq.Add(1)), c.Links)
	if err != nil {
		t.Fatal(err)
	}
	tun := &topo.Tunnel{Topo: tp, Config: c, ConfigPath: config}
	e := &unprivileged{env: &env{t: t, Tunnel: tun}, dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			// Where datagrams were dropped: a receive buffer that
			// overflowed (RcvbufErrors) means a starved process.
			for _, ns := range []string{tp.Client, tp.Server} {
				if out, err := tp.Exec(ns, "cat", "/proc/net/snmp"); err == nil {
					t.Logf("UDP counters in %s:\n%s", ns, udpLines(out))
				}
			}
			for _, p := range []*topo.Proc{tun.Client, tun.Server, tun.Sink} {
				if p != nil {
					p.Stop()
					t.Logf("%s stderr:\n%s", p.Name, p.Stderr.String())
				}
			}
		}
		if err := tun.Close(); err != nil {
			t.Errorf("tearing down namespaces: %v", err)
		}
	})
	if tun.Sink, err = tun.StartSink(topo.SinkAddr); err != nil {
		t.Fatal(err)
	}
	if tun.Server, err = tp.Start(tp.Server, nil, "setpriv", setpriv(filepath.Join(dir, "engarde-server"), config, scaps)...); err != nil {
		t.Fatal(err)
	}
	if tun.Client, err = tp.Start(tp.Client, nil, "setpriv", setpriv(filepath.Join(dir, "engarde-client"), config, ccaps)...); err != nil {
		t.Fatal(err)
	}
	tun.Server.Name, tun.Client.Name = "engarde-server", "engarde-client"
	if wait {
		e.waitLog(tun.Client, 5*time.Second, c.Links, `"link eth-`, ` up: `)
	}
	for _, p := range []struct {
		proc *topo.Proc
		caps []string
	}{{tun.Client, ccaps}, {tun.Server, scaps}} {
		e.checkCreds(p.proc, p.caps)
	}
	return e
}

// setpriv returns setpriv's arguments to run binary with config as nobody,
// with no supplementary groups, no way to gain privileges, and exactly
// caps in its effective, permitted, inheritable, ambient and bounding
// sets: what the systemd units' User=, AmbientCapabilities=,
// CapabilityBoundingSet= and NoNewPrivileges= do.
func setpriv(binary, config string, caps []string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return []string{
		"--reuid=" + strconv.Itoa(nobody), "--regid=" + strconv.Itoa(nobody), "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--no-new-privs",
		"--", binary, config,
	}
}

// checkCreds checks in /proc that p runs as nobody with exactly caps
// effective: ip netns exec and setpriv both execute their command in
// place, so p's PID is engarde's.
func (e *unprivileged) checkCreds(p *topo.Proc, caps []string) {
	e.t.Helper()
	pid := p.Cmd.Process.Pid
	// Until the two execs are done, the PID runs ip or setpriv.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && filepath.Base(exe) == p.Name {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("PID %d runs %q, not %s, after 2 s (%v)", pid, exe, p.Name, err)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		e.t.Fatal(err)
	}
	var want uint64
	for _, c := range caps {
		want |= capBits[c]
	}
	status := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			status[k] = strings.TrimSpace(v)
		}
	}
	if name := status["Name"]; !strings.HasPrefix(p.Name, name) {
		e.t.Fatalf("PID %d is %q, not %s", pid, name, p.Name)
	}
	for _, k := range []string{"Uid", "Gid"} {
		for _, id := range strings.Fields(status[k]) {
			if id != strconv.Itoa(nobody) {
				e.t.Errorf("%s runs with %s %q, want %d throughout", p.Name, k, status[k], nobody)
				break
			}
		}
	}
	if g := status["Groups"]; g != "" {
		e.t.Errorf("%s has supplementary groups %q", p.Name, g)
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapBnd"} {
		v, err := strconv.ParseUint(status[k], 16, 64)
		if err != nil || v != want {
			e.t.Errorf("%s %s %s, want %#x (%v)", p.Name, k, status[k], want, caps)
		}
	}
	if status["NoNewPrivs"] != "1" {
		e.t.Errorf("%s NoNewPrivs %q, want 1", p.Name, status["NoNewPrivs"])
	}
}

// TestNetnsNonRoot runs the client and the server as nobody with only the
// capabilities the README and the systemd units name, and checks what the
// root tests check: a stream arrives whole over both links, and survives
// a link down for 2 s.
func TestNetnsNonRoot(t *testing.T) {
	e := newUnprivileged(t, topo.TunnelConfig{}, clientCaps, serverCaps, true)
	r := e.gen(10000, 2*time.Second, 1400)
	if r.Lost != 0 || r.Received == 0 {
		t.Errorf("lost %d of %d as nobody", r.Lost, r.Sent)
	}
	if r2 := e.linkDownStream(t); r2.Lost != 0 {
		t.Errorf("lost %d of %d as nobody with link a down for 2 s", r2.Lost, r2.Sent)
	}
	// status reads nobody's daemons through their control sockets.
	if out := e.status(e.Topo.Client, "engarde-client"); !strings.Contains(out, "eth-a") {
		t.Errorf("client status as nobody:\n%s", out)
	}
	if out := e.status(e.Topo.Server, "engarde-server"); !strings.Contains(out, "CLIENT ADDRESS") {
		t.Errorf("server status as nobody:\n%s", out)
	}
	cl, _ := e.stop()
	for _, p := range []*topo.Proc{e.Client, e.Server} {
		if line := firstLine(p.Stderr.String(), "permission denied"); line != "" {
			t.Errorf("%s was refused something as nobody: %s", p.Name, line)
		}
	}
	for _, l := range []string{"eth-a", "eth-b"} {
		if cl[l]["tx"] < float64(r.Sent) {
			t.Errorf("link %s sent %v datagrams, want at least the first stream's %d", l, cl[l]["tx"], r.Sent)
		}
	}
}

// TestNetnsNonRootNoCaps runs both roles as nobody with no capability at
// all. The README says what each one is for, and so what must hold
// without it: links still bind to their interface (SO_BINDTODEVICE on a
// socket not yet bound needs no privilege since Linux 5.7, commit
// c427bfec18f2 "net: core: enable SO_BINDTODEVICE for non-root users"),
// buffers fall back to the system limits, and only fwmark (SO_MARK, which
// needs CAP_NET_ADMIN or, since 5.17, CAP_NET_RAW) is refused, with a log
// line naming the option and the kernel's answer for every link, once,
// one line saying which capability is missing and how to grant it, and no
// link up without its mark.
func TestNetnsNonRootNoCaps(t *testing.T) {
	if !kernelAtLeast(t, 5, 7) {
		t.Skip("skipping: before Linux 5.7, SO_BINDTODEVICE needs CAP_NET_RAW")
	}
	t.Run("forwards", func(t *testing.T) {
		e := newUnprivileged(t, topo.TunnelConfig{}, nil, nil, true)
		r := e.gen(5000, 2*time.Second, 1400)
		if r.Lost != 0 || r.Received == 0 {
			t.Errorf("lost %d of %d as nobody without capabilities", r.Lost, r.Sent)
		}
	})
	t.Run("fwmark refused", func(t *testing.T) {
		e := newUnprivileged(t, topo.TunnelConfig{ClientExtra: "  fwmark: 0xca6c\n"}, nil, nil, false)
		for _, l := range []string{"eth-a", "eth-b"} {
			e.waitLog(e.Client, 5*time.Second, 1, `"link `+l+`: `, `setting fwmark 0xca6c`, `operation not permitted`)
		}
		// Rescans (every second) and netlink events retry the links:
		// the refusal is logged once per link, and what to do about it
		// once in all, not at every retry.
		time.Sleep(2500 * time.Millisecond)
		out := e.Client.Stderr.String()
		// A link that opens logs its addresses, whatever the words
		// around them.
		if up := strings.Count(out, ` -> 198.18.`); up != 0 {
			t.Errorf("%d links up without their fwmark:\n%s", up, out)
		}
		for _, l := range []string{"eth-a", "eth-b"} {
			if n := strings.Count(out, `"link `+l+`: `); n != 1 {
				t.Errorf("link %s's refusal logged %d times, want once:\n%s", l, n, out)
			}
		}
		hint := `"fwmark 0xca6c cannot be set: the kernel allows SO_MARK only with CAP_NET_ADMIN`
		if n := strings.Count(out, hint); n != 1 {
			t.Errorf("the capability's explanation logged %d times, want once:\n%s", n, out)
		}
		for _, want := range []string{"run engarde-client as root", "AmbientCapabilities=CAP_NET_ADMIN"} {
			if !strings.Contains(firstLine(out, hint), want) {
				t.Errorf("the explanation does not say %q: %s", want, firstLine(out, hint))
			}
		}
		t.Logf("the client says: %s", firstLine(out, "setting fwmark"))
		t.Logf("and: %s", firstLine(out, hint))
	})
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	var maj, min int
	if _, err := fmt.Sscanf(string(b), "%d.%d", &maj, &min); err != nil {
		t.Fatalf("kernel release %q: %v", b, err)
	}
	return maj > major || maj == major && min >= minor
}

// udpLines returns the Udp: lines of /proc/net/snmp (names, then values).
func udpLines(snmp string) string {
	var b strings.Builder
	for _, line := range strings.Split(snmp, "\n") {
		if strings.HasPrefix(line, "Udp:") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func firstLine(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
