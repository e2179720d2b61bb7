package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// TestStartsWithExistingConfigs starts both binaries with a configuration
// written for the original engarde (every key it knew, Windows interface
// names included) and with the README's two scenarios, and stops them.
// They run in a namespace with no route anywhere, so the destinations in
// those files are never reached: nothing is sent, the test only proves the
// files are accepted and the programs start and stop cleanly.
func TestStartsWithExistingConfigs(t *testing.T) {
	if err := topo.Usable(); err != nil {
		t.Skipf("skipping: %v (the binaries run in an isolated namespace)", err)
	}
	tp, err := topo.New(fmt.Sprintf("eg%d-cfg", os.Getpid()%100000), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	for _, file := range []string{"original.yml", "scenario1.yml", "scenario2.yml"} {
		path, err := filepath.Abs(filepath.Join("../../config/testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, prog := range []string{"engarde-client", "engarde-server"} {
			t.Run(file+"/"+prog, func(t *testing.T) {
				p, err := tp.Start(tp.Client, nil, filepath.Join(bin, prog), path)
				if err != nil {
					t.Fatal(err)
				}
				ready := `"waiting for WireGuard"`
				if prog == "engarde-server" {
					ready = `"waiting for clients"`
				}
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(p.Stderr.String(), ready) {
					select {
					case <-p.Done():
						t.Fatalf("%s exited with %s:\n%s", prog, file, p.Stderr.String())
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s did not start with %s:\n%s", prog, file, p.Stderr.String())
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err := p.Stop(); err != nil {
					t.Errorf("%s did not stop cleanly: %v\n%s", prog, err, p.Stderr.String())
				}
			})
		}
	}
}

// TestRefusesBrokenConfigs checks that a typo or a bad address stops the
// program before it starts, with the file, line and key in the message.
func TestRefusesBrokenConfigs(t *testing.T) {
	if bin == "" {
		t.Skip("skipping: binaries are built only when namespace tests can run (root)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name, yml, want string
	}{
		{"typo", "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"198.18.1.1:59402\"\n  excludedInterface: [wg0]\n",
			`broken.yml:4: client.excludedInterface: unknown key "excludedInterface" (did you mean "excludedInterfaces"?)`},
		{"bad address", "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"198.18.1.1:99999\"\n",
			`broken.yml:3: client.dstAddr: invalid address "198.18.1.1:99999"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "broken.yml")
			if err := os.WriteFile(path, []byte(c.yml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(filepath.Join(bin, "engarde-client"), path).CombinedOutput()
			if err == nil {
				t.Fatalf("engarde-client started with a broken config:\n%s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("error output:\n%s\nwant it to contain:\n%s", out, c.want)
			}
		})
	}
}

// TestSecondServerExits starts engarde-server twice on one port in one
// namespace, the second through the IPv4 address of a wildcard the first
// holds for both families: the second must exit non-zero at once, naming
// the port and the process that holds it, and leave the first
// running; it pins the bug where the second started silently beside the
// first (SO_REUSEPORT on both) and new clients were split between them.
// Once the first has stopped, the same configuration starts again: a
// restart is no second server.
func TestSecondServerExits(t *testing.T) {
	if bin == "" {
		t.Skip("skipping: binaries are built only when namespace tests can run (root)")
	}
	tp, err := topo.New(fmt.Sprintf("eg%d-su", os.Getpid()%100000), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	dir := t.TempDir()
	write := func(name, listen string) string {
		path := filepath.Join(dir, name)
		yml := "server:\n  listenAddr: \"" + listen + "\"\n  dstAddr: \"127.0.0.1:59301\"\n"
		if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	first, second := write("first.yml", ":59402"), write("second.yml", "127.0.0.1:59402")
	start := func(config string) *topo.Proc {
		t.Helper()
		p, err := tp.Start(tp.Server, nil, filepath.Join(bin, "engarde-server"), config)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ready := func(p *topo.Proc) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Stderr.String(), `"waiting for clients"`); time.Sleep(20 * time.Millisecond) {
			select {
			case <-p.Done():
				t.Fatalf("engarde-server exited:\n%s", p.Stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("engarde-server did not start:\n%s", p.Stderr.String())
			}
		}
	}
	a := start(first)
	ready(a)
	b := start(second)
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		b.Stop()
		t.Fatalf("a second engarde-server on port 59402 kept running:\n%s", b.Stderr.String())
	}
	if err := b.Cmd.ProcessState; err == nil || err.Success() {
		t.Errorf("the second engarde-server exited with %v, want a failure", b.Cmd.ProcessState)
	}
	out := b.Stderr.String()
	t.Logf("the second server says: %s", strings.TrimSpace(out))
	holder := fmt.Sprintf("in use by engarde-server (PID %d)", a.Cmd.Process.Pid)
	for _, want := range []string{"port 59402/udp", holder, "another engarde-server"} {
		if !strings.Contains(out, want) {
			t.Errorf("the second server's error does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "waiting for clients") {
		t.Errorf("the second server said it was ready:\n%s", out)
	}
	select {
	case <-a.Done():
		t.Fatalf("the first engarde-server exited:\n%s", a.Stderr.String())
	default:
	}
	if err := a.Stop(); err != nil {
		t.Errorf("the first engarde-server did not stop cleanly: %v\n%s", err, a.Stderr.String())
	}
	c := start(first)
	ready(c)
	if err := c.Stop(); err != nil {
		t.Errorf("the restarted engarde-server did not stop cleanly: %v\n%s", err, c.Stderr.String())
	}
}

// TestTunnelInterfaceSkipped gives the client's namespace a TUN device,
// up and addressed as a VPN's would be, beside a cable: the client's
// netlink dump reports its kind, list-interfaces says why it carries no
// link and how to make it one, and the running client logs that once,
// with a link on the cable only. (The device has no carrier, nothing
// reading it: without the kind, its reason would be "no carrier", which
// the first carrier would end.) Names in the configuration that match no
// interface are warned about once each.
func TestTunnelInterfaceSkipped(t *testing.T) {
	if bin == "" {
		t.Skip("skipping: binaries are built only when namespace tests can run (root)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: no TUN driver: %v", err)
	}
	tp, err := topo.New(fmt.Sprintf("eg%d-sut", os.Getpid()%100000), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	for _, args := range [][]string{
		{"ip", "tuntap", "add", "mode", "tun", "name", "tun-su"},
		{"ip", "addr", "add", "198.19.77.2/24", "dev", "tun-su"},
		{"ip", "link", "set", "tun-su", "up"},
	} {
		if _, err := tp.Exec(tp.Client, args...); err != nil {
			t.Skipf("skipping: %v", err)
		}
	}
	config := filepath.Join(t.TempDir(), "engarde.yml")
	yml := "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"198.18.1.1:59402\"\n" +
		"  excludedInterfaces: [\"wg9\"]\n" +
		"  dstOverrides:\n    - ifName: eth-z\n      dstAddr: \"198.18.1.1:59403\"\n"
	if err := os.WriteFile(config, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	const why = "TUN/TAP interface, not a link unless named in interfaceLabels or dstOverrides"
	out, err := tp.Exec(tp.Client, filepath.Join(bin, "engarde-client"), "list-interfaces", config)
	if err != nil {
		t.Fatal(err)
	}
	if line := firstLine(out, "tun-su"); !strings.Contains(line, why) {
		t.Errorf("list-interfaces says of tun-su %q, want %q:\n%s", line, why, out)
	}
	p, err := tp.Start(tp.Client, nil, filepath.Join(bin, "engarde-client"), config)
	if err != nil {
		t.Fatal(err)
	}
	// The line that says a link opened, whatever its wording: it names
	// the link's addresses.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Stderr.String(), `198.18.1.2 -> 198.18.1.1:59402`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no link on eth-a within 5 s:\n%s", p.Stderr.String())
		}
	}
	time.Sleep(2500 * time.Millisecond) // a few rescans
	if err := p.Stop(); err != nil {
		t.Errorf("engarde-client did not stop cleanly: %v", err)
	}
	log := p.Stderr.String()
	for _, c := range []struct {
		line string
		n    int
	}{
		{`"interface tun-su is a TUN/TAP interface`, 1},
		{`"link tun-su`, 0},
		{`"link":"tun-su"`, 0},
		{`198.19.77.2 ->`, 0},
		{`"interface eth-z, named in dstOverrides, does not exist (yet)`, 1},
		{`"interface wg9, named in excludedInterfaces, does not exist (yet)`, 1},
	} {
		if n := strings.Count(log, c.line); n != c.n {
			t.Errorf("%d lines %s, want %d:\n%s", n, c.line, c.n, log)
		}
	}
	t.Logf("the client says: %s", firstLine(log, "interface tun-su"))
}
