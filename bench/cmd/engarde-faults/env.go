package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// The topology's names and addresses. The prefix names the namespaces
// (egfc, egfs); WireGuard's interfaces need names of their own, since
// wireguard-go's control sockets in /var/run/wireguard are not per
// namespace. The tunnel's inner addresses are in 198.19.0.0/24, the
// second half of the benchmarking range.
const (
	prefix       = "egf"
	wgServerName = "egfwg-s"
	wgClientName = "egfwg-c"
	wgServerPort = 51820
	wgClientPort = 51821
	wgServerAddr = "198.19.0.1/24"
	wgClientAddr = "198.19.0.2/24"
	sinkPort     = 9999
	// refTarget is the reference stream's sink, over loopback in the
	// client namespace.
	refTarget = "127.0.0.1:9998"
	// relayPort is the delaying relay's port, on link b's server address.
	relayPort = topo.ServerPort + 1
	dnsAddr   = "127.0.0.1:53"
)

// serverName returns the DNS name of the server on link i (1 for eth-a),
// which the client's configuration uses.
func serverName(i int) string { return fmt.Sprintf("srv-%c.egf.test", 'a'+i-1) }

// env is the running topology: namespaces, engarde, WireGuard, the DNS
// server and the sink.
type env struct {
	bin, exe string
	tp       *topo.Topo
	tun      *topo.Tunnel
	wgs, wgc *topo.WireGuard
	sink     *topo.Proc
	refSink  *topo.Proc // the reference stream's, in the client namespace
	dns      *topo.Proc
	relay    *topo.Proc
	unconf   func() // removes /etc/netns/<client>/resolv.conf
	yml      string // the configuration as started
	ymlNow   string // the configuration written now
	logs     string // a directory to save the processes' logs in, when not empty
}

// saveLogs writes the standard error of the processes running now into
// e.logs, one file each.
func (e *env) saveLogs() {
	if err := os.MkdirAll(e.logs, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "engarde-faults: %v\n", err)
		return
	}
	procs := map[string]*topo.Proc{"dns": e.dns, "sink": e.sink}
	if e.tun != nil {
		procs["engarde-client"], procs["engarde-server"] = e.tun.Client, e.tun.Server
	}
	if e.wgs != nil && e.wgc != nil {
		procs["wireguard-go-server"], procs["wireguard-go-client"] = e.wgs.Proc, e.wgc.Proc
	}
	for name, p := range procs {
		if p != nil {
			_ = os.WriteFile(filepath.Join(e.logs, name+".log"), []byte(p.Stderr.String()), 0o644) // a log lost is only a log
		}
	}
}

// tools lists the commands the matrix runs, with the Debian package of each.
var tools = [][2]string{
	{"ip", "iproute2"}, {"tc", "iproute2"}, {"sysctl", "procps"},
	{"nft", "nftables"}, {"wg", "wireguard-tools"},
}

// checkTools returns an error naming every missing command and its
// package.
func checkTools(bin string) error {
	var missing, pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t[0]); err != nil {
			missing = append(missing, t[0])
			pkgs = append(pkgs, t[1])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not installed: %s (apt-get install %s)", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	for _, b := range []string{"engarde-client", "engarde-server", "engarde-loadgen", "wireguard-go"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%s: %w (make faults builds it)", filepath.Join(bin, b), err)
		}
	}
	return nil
}

// clientYAML is the configuration: the client names the server by DNS on
// each link (dstAddr for eth-a, an override for eth-b) and leaves
// WireGuard's own interface alone; the server forwards to WireGuard. Both
// keep a state file beside the configuration, as the shipped systemd
// units do in $STATE_DIRECTORY, so that a restart resumes the session.
// bDst replaces eth-b's destination when not empty.
func clientYAML(bDst string) string {
	if bDst == "" {
		bDst = fmt.Sprintf("%s:%d", serverName(2), topo.ServerPort)
	}
	return fmt.Sprintf(`client:
  description: "engarde-faults client"
  listenAddr: %q
  dstAddr: "%s:%d"
  dstOverrides:
    - ifName: eth-b
      dstAddr: %q
  excludedInterfaces: [%q]
  stateFile: "client.state"
  log: {level: info, format: json}
server:
  description: "engarde-faults server"
  listenAddr: "0.0.0.0:%d"
  dstAddr: "127.0.0.1:%d"
  clientTimeout: 30
  stateFile: "server.state"
  log: {level: info, format: json}
`, topo.ClientListen, serverName(1), topo.ServerPort, bDst, wgClientName, topo.ServerPort, wgServerPort)
}

// setup builds everything; on error what was built is taken down.
func setup(bin, exe, logs string) (e *env, err error) {
	e = &env{bin: bin, exe: exe, logs: logs}
	defer func() {
		if err != nil {
			e.close()
			e = nil
		}
	}()
	if e.tp, err = topo.New(prefix, 2); err != nil {
		return e, err
	}
	if e.unconf, err = topo.ResolvConf(e.tp.Client, netip.MustParseAddrPort(dnsAddr).Addr()); err != nil {
		return e, err
	}
	args := []string{"dns", "-listen", dnsAddr}
	for i, l := range e.tp.Links {
		args = append(args, "-name", serverName(i+1)+"="+l.ServerAddr.String())
	}
	if e.dns, err = e.tp.Start(e.tp.Client, nil, exe, args...); err != nil {
		return e, err
	}
	if err = e.dns.WaitLog(5*time.Second, 1, "dns: listening"); err != nil {
		return e, err
	}
	e.yml = clientYAML("")
	e.ymlNow = e.yml
	if e.tun, err = topo.StartTunnelYAML(e.tp, topo.TunnelConfig{Bin: bin}, e.yml); err != nil {
		return e, err
	}
	wgGo := filepath.Join(bin, "wireguard-go")
	if e.wgs, err = e.tp.StartWireGuard(wgGo, e.tp.Server, wgServerName, wgServerPort, wgServerAddr); err != nil {
		return e, err
	}
	if e.wgc, err = e.tp.StartWireGuard(wgGo, e.tp.Client, wgClientName, wgClientPort, wgClientAddr); err != nil {
		return e, err
	}
	if err = e.wgs.SetPeer(e.wgc.PublicKey, "", hostOf(wgClientAddr)+"/32"); err != nil {
		return e, err
	}
	if err = e.wgc.SetPeer(e.wgs.PublicKey, topo.ClientListen, hostOf(wgServerAddr)+"/32"); err != nil {
		return e, err
	}
	if e.sink, err = e.tp.Start(e.tp.Server, nil, filepath.Join(bin, "engarde-loadgen"), "sink", "-listen", fmt.Sprintf("0.0.0.0:%d", sinkPort)); err != nil {
		return e, err
	}
	if err = e.sink.WaitLog(5*time.Second, 1, "sink listening on"); err != nil {
		return e, err
	}
	if e.refSink, err = e.tp.Start(e.tp.Client, nil, filepath.Join(bin, "engarde-loadgen"), "sink", "-listen", refTarget); err != nil {
		return e, err
	}
	if err = e.refSink.WaitLog(5*time.Second, 1, "sink listening on"); err != nil {
		return e, err
	}
	return e, nil
}

// hostOf returns the address of a CIDR.
func hostOf(cidr string) string { return netip.MustParsePrefix(cidr).Addr().String() }

// sinkTarget is where the stream sends: the sink, through WireGuard.
func sinkTarget() string { return fmt.Sprintf("%s:%d", hostOf(wgServerAddr), sinkPort) }

// close takes everything down: the processes (by their PIDs), the
// namespaces with their interfaces and nftables tables, WireGuard's
// control sockets, the configuration and /etc/netns/<client>.
func (e *env) close() {
	if e.logs != "" {
		e.saveLogs()
	}
	if e.tp != nil {
		if err := e.tp.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "engarde-faults: cleaning up: %v\n", err)
		}
	}
	for _, name := range []string{wgServerName, wgClientName} {
		_ = os.Remove(filepath.Join("/var/run/wireguard", name+".sock")) // gone when wireguard-go stopped cleanly
	}
	if e.tun != nil {
		e.tun.CloseConfig()
	}
	if e.unconf != nil {
		e.unconf()
	}
}

// rxOf returns the packets the server end of each link has received.
func (e *env) rxOf() (map[string]uint64, error) {
	return topo.RxPackets(e.sink.Cmd.Process.Pid)
}

// dnsAnswering turns the DNS server's answers on or off.
func (e *env) dnsAnswering(on bool) error {
	sig := dnsOff
	if on {
		sig = dnsOn
	}
	if sig == nil {
		return errors.ErrUnsupported
	}
	return e.dns.Cmd.Process.Signal(sig)
}

// writeConfig writes the tunnel's configuration and makes the client
// reload it, if it differs from what is written now.
func (e *env) writeConfig(yml string) error {
	if yml == e.ymlNow {
		return nil
	}
	if err := e.tun.WriteConfig(yml); err != nil {
		return err
	}
	e.ymlNow = yml
	return e.tun.Client.Reload()
}

// startRelay starts the delaying relay on link b's server address, in
// front of engarde-server, holding each datagram delay in each direction.
func (e *env) startRelay(delay time.Duration) (string, error) {
	b := e.tp.Link("eth-b")
	listen := netip.AddrPortFrom(b.ServerAddr, relayPort)
	p, err := e.tp.Start(e.tp.Server, nil, e.exe, "relay", "-listen", listen.String(),
		"-upstream", netip.AddrPortFrom(b.ServerAddr, topo.ServerPort).String(),
		"-bind", netip.AddrPortFrom(b.ServerAddr, 0).String(), "-delay", delay.String())
	if err != nil {
		return "", err
	}
	e.relay = p
	return listen.String(), p.WaitLog(5*time.Second, 1, topo.RelayReady)
}

// stopRelay stops the relay, if it runs.
func (e *env) stopRelay() {
	if e.relay != nil {
		_ = e.relay.Stop() // its exit status says nothing here
		e.relay = nil
	}
}

// restore undoes whatever a row may have left: every link present, with
// its address, up, neither black-holed, deaf nor limited, the configuration
// as started, the relay stopped, and every process running.
func (e *env) restore() error {
	var errs []error
	for i, l := range e.tp.Links {
		orig := topo.Plan(i + 1).ClientAddr
		if _, err := e.tp.Exec(e.tp.Client, "ip", "link", "show", l.Name); err != nil {
			errs = append(errs, e.tp.RecreateLink(l.Name, orig))
		} else if l.ClientAddr != orig {
			errs = append(errs, e.tp.DeleteLink(l.Name), e.tp.RecreateLink(l.Name, orig))
		} else if out, _ := e.tp.Exec(e.tp.Client, "ip", "-4", "addr", "show", "dev", l.Name); !strings.Contains(out, orig.String()+"/") {
			errs = append(errs, e.tp.SetClientAddr(l.Name, orig, true))
		}
		errs = append(errs, e.tp.SetUp(l.Name, true))
		_ = e.tp.Blackhole(l.Name, false) // absent tables are fine
		_ = e.tp.DeafNeighbour(l.Name, false)
		_ = e.tp.Limit(l.Name, "", "")
	}
	errs = append(errs, e.writeConfig(e.yml), e.dnsAnswering(true))
	e.stopRelay()
	// A role or wireguard-go that died is reported and started again, so
	// that the rows after it still run.
	wgGo := filepath.Join(e.bin, "wireguard-go")
	for _, r := range []struct {
		p     *topo.Proc
		start func() error
	}{
		{e.tun.Server, e.tun.RestartServer},
		{e.tun.Client, e.tun.RestartClient},
		{e.wgs.Proc, func() error { return e.wgs.Restart(wgGo, wgServerAddr) }},
		{e.wgc.Proc, func() error { return e.wgc.Restart(wgGo, wgClientAddr) }},
		{e.sink, nil}, {e.refSink, nil}, {e.dns, nil},
	} {
		if r.p.Running() {
			continue
		}
		errs = append(errs, fmt.Errorf("%s exited: %s", filepath.Base(r.p.Name), lastLines(r.p.Stderr.String(), 5)))
		if r.start != nil {
			errs = append(errs, r.start())
		}
	}
	return errors.Join(errs...)
}

// grew returns how much a packet counter grew from base to now; a counter
// below base belongs to an interface recreated since, which started from 0.
func grew(base, now uint64) uint64 {
	if now < base {
		return now
	}
	return now - base
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitCarrying waits until every link's server end has received at least
// n packets more than when it was called (the stream runs), up to d.
func (e *env) waitCarrying(ctx context.Context, n uint64, d time.Duration) error {
	base, err := e.rxOf()
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(d); ; {
		now, err := e.rxOf()
		if err != nil {
			return err
		}
		var idle []string
		for _, l := range e.tp.Links {
			if grew(base[l.Name], now[l.Name]) < n {
				idle = append(idle, l.Name)
			}
		}
		if len(idle) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s carried no traffic within %v", strings.Join(idle, ", "), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
