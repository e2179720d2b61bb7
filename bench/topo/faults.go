package topo

// This file holds the faults the fault matrix (engarde-faults) inflicts on
// a topology beyond SetUp, Blackhole and Limit: interfaces deleted and
// recreated, addresses removed, a neighbour that never answers, the roles
// and WireGuard restarted, and the counters that show a link carrying
// traffic again.

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// StartTunnelYAML is StartTunnel on an existing topology, with yml as the
// configuration file instead of c.YAML(): a tunnel whose client names its
// server by DNS, say. c.Links is the number of links the client must
// report up before it returns. It starts no sink. On error the roles it
// started are stopped; the topology is the caller's.
func StartTunnelYAML(tp *Topo, c TunnelConfig, yml string) (*Tunnel, error) {
	if c.Links == 0 {
		c.Links = len(tp.Links)
	}
	c.NoSink = true
	t := &Tunnel{Topo: tp, Config: c}
	fail := func(err error) (*Tunnel, error) {
		for _, p := range []*Proc{t.Client, t.Server} {
			if p != nil {
				_ = p.Stop()
			}
		}
		if t.dir != "" {
			os.RemoveAll(t.dir)
		}
		return nil, err
	}
	var err error
	if t.dir, err = os.MkdirTemp("", "engarde-tunnel-"); err != nil {
		return fail(err)
	}
	t.ConfigPath = filepath.Join(t.dir, "engarde.yml")
	if err := os.WriteFile(t.ConfigPath, []byte(yml), 0o644); err != nil {
		return fail(err)
	}
	if err := t.RestartServer(); err != nil {
		return fail(err)
	}
	if err := t.RestartClient(); err != nil {
		return fail(err)
	}
	return t, nil
}

// CloseConfig removes the configuration directory of a tunnel made by
// StartTunnelYAML, whose topology its caller closes.
func (t *Tunnel) CloseConfig() {
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

// RestartServer stops engarde-server, if it runs, and starts it again on
// the same configuration, returning once it has logged that it is
// starting (it opens its socket right after).
func (t *Tunnel) RestartServer() error {
	if t.Server != nil {
		_ = t.Server.Stop() // a stopped server's exit status says nothing here
	}
	p, err := t.StartEnv(t.Topo.Server, t.Config.Env, nil, filepath.Join(t.Config.Bin, "engarde-server"), t.ConfigPath)
	if err != nil {
		return err
	}
	t.Server = p
	return p.WaitLog(5*time.Second, 1, "engarde-server starting")
}

// RestartClient stops engarde-client, if it runs, and starts it again on
// the same configuration, returning once it has a link up on each of
// Config.Links interfaces.
func (t *Tunnel) RestartClient() error {
	if t.Client != nil {
		_ = t.Client.Stop()
	}
	p, err := t.StartEnv(t.Topo.Client, t.Config.Env, nil, filepath.Join(t.Config.Bin, "engarde-client"), t.ConfigPath)
	if err != nil {
		return err
	}
	t.Client = p
	return p.WaitLog(5*time.Second, t.Config.Links, `"link eth-`, ` up: `)
}

// DeleteLink deletes a link's veth pair (deleting one end deletes both).
func (t *Topo) DeleteLink(name string) error {
	return run("ip", "-n", t.Client, "link", "del", name)
}

// RecreateLink creates link name again, as AddLink did, after DeleteLink:
// the same name and server addresses, and clientAddr (IPv4) as the client
// end's address, which may be a new one in the link's /24.
func (t *Topo) RecreateLink(name string, clientAddr netip.Addr) error {
	l := t.Link(name)
	if l == nil {
		return fmt.Errorf("no link %s", name)
	}
	cmds := [][]string{
		{"ip", "link", "add", l.Name, "netns", t.Client, "type", "veth", "peer", "name", l.Name, "netns", t.Server},
		{"ip", "-n", t.Server, "link", "set", l.Name, "up"},
		{"ip", "-n", t.Client, "link", "set", l.Name, "up"},
		{"ip", "-n", t.Server, "addr", "add", l.ServerAddr.String() + "/24", "dev", l.Name},
		{"ip", "-n", t.Server, "addr", "add", l.ServerV6.String() + "/64", "dev", l.Name, "nodad"},
		{"ip", "-n", t.Client, "addr", "add", clientAddr.String() + "/24", "dev", l.Name},
		{"ip", "-n", t.Client, "addr", "add", l.ClientV6.String() + "/64", "dev", l.Name, "nodad"},
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			return err
		}
	}
	l.ClientAddr = clientAddr
	return nil
}

// SetClientAddr adds (add true) or removes the IPv4 address addr (a /24)
// on the client end of a link.
func (t *Topo) SetClientAddr(link string, addr netip.Addr, add bool) error {
	op := "del"
	if add {
		op = "add"
	}
	return run("ip", "-n", t.Client, "addr", op, addr.String()+"/24", "dev", link)
}

// DeafNeighbour makes the server end of a link ignore every ARP packet
// (nftables, on its ingress) and both ends forget their neighbours: the
// carrier stays up, but the client's address resolution for the server
// never gets an answer, nor the server's for the client.
// DeafNeighbour(link, false) undoes it.
func (t *Topo) DeafNeighbour(link string, on bool) error {
	const table = "engarde_deaf"
	_ = t.NftRemove(t.Server, "netdev", table)
	if on {
		rules := fmt.Sprintf("table netdev %s {\n chain in {\n  type filter hook ingress device %q priority 0; policy accept;\n  ether type arp drop\n }\n}\n", table, link)
		if err := t.Nft(t.Server, rules); err != nil {
			return err
		}
	}
	for _, ns := range []string{t.Client, t.Server} {
		_ = run("ip", "-n", ns, "neigh", "flush", "dev", link) // nothing to flush is fine
	}
	return nil
}

// RxPackets returns the packets each interface of the network namespace
// of process pid has received, read from /proc/<pid>/net/dev, which
// shows the namespace of that process without entering it.
func RxPackets(pid int) (map[string]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetDev(bufio.NewScanner(f))
}

// parseNetDev reads /proc/net/dev: two heading lines, then per interface
// "name: rx_bytes rx_packets ..." (net/core/net-procfs.c, dev_seq_printf_stats).
func parseNetDev(sc *bufio.Scanner) (map[string]uint64, error) {
	out := map[string]uint64{}
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // a heading
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return nil, fmt.Errorf("net/dev: short line %q", sc.Text())
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("net/dev: %q: %w", sc.Text(), err)
		}
		out[strings.TrimSpace(name)] = n
	}
	return out, sc.Err()
}

// Restart stops wireguard-go and starts it again with the same
// configuration (key, port, peers, as wg showconf gives them) and addr
// (CIDR) on the interface, as a reboot of that peer would: its sessions
// are gone, its keys are not.
func (w *WireGuard) Restart(wgGo, addr string) error {
	conf, err := w.t.Exec(w.NS, "wg", "showconf", w.Name)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "engarde-wg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "wg.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return err
	}
	_ = w.Close() // its exit status says nothing here
	sock := filepath.Join(wgSocketDir, w.Name+".sock")
	p, err := w.t.Start(w.NS, nil, wgGo, "-f", w.Name)
	if err != nil {
		return err
	}
	w.Proc = p
	if err := waitSocket(p, sock); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"wg", "setconf", w.Name, file},
		{"ip", "addr", "add", addr, "dev", w.Name},
		{"ip", "link", "set", w.Name, "up"},
	} {
		if _, err := w.t.Exec(w.NS, args...); err != nil {
			return err
		}
	}
	return nil
}

// waitSocket waits up to 5 s for wireguard-go (p) to make its control
// socket.
func waitSocket(p *Proc, sock string) error {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("wireguard-go exited: %v: %s", p.err, p.Stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wireguard-go made no control socket %s within 5 s: %s", sock, p.Stderr.String())
		}
	}
}
