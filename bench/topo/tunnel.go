package topo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
)

// Ports of the tunnel under test.
const (
	ClientListen = "127.0.0.1:59401" // engarde-client, where WireGuard sends
	ServerPort   = 59402             // engarde-server on every link
	SinkAddr     = "127.0.0.1:59301" // the sink standing in for WireGuard
)

// TunnelConfig describes a tunnel to start on a topology.
type TunnelConfig struct {
	// Bin is the directory holding engarde-client, engarde-server and
	// engarde-loadgen.
	Bin string
	// Links is the number of links (2 when 0).
	Links int
	// V6 runs the tunnel over the links' IPv6 addresses.
	V6 bool
	// Backend is engine.backend for both roles ("" for the default).
	Backend string
	// SinkMode is the sink's echo mode ("first" when empty).
	SinkMode string
	// ClientExtra and ServerExtra are YAML lines appended to each
	// section, indented by two spaces.
	ClientExtra, ServerExtra string
	// LogLevel of both roles ("info" when empty).
	LogLevel string
	// ServerDst is the server's dstAddr: where it forwards to (SinkAddr
	// when empty; a WireGuard listen address in benchmarks).
	ServerDst string
	// NoSink starts no sink: something else listens on ServerDst.
	NoSink bool
	// Env are environment variables for engarde-client and
	// engarde-server ("GOMAXPROCS=1"), over this process's.
	Env []string
	// Via replaces the client's destination on link i (1 for eth-a) with
	// another address: a relay in front of the server (DelayLink).
	Via map[int]string
}

// Tunnel is engarde running on a topology: the sink and engarde-server in
// the server namespace, engarde-client in the client namespace. Sink is nil
// with TunnelConfig.NoSink.
type Tunnel struct {
	*Topo
	Config               TunnelConfig
	ConfigPath           string
	Sink, Server, Client *Proc
	dir                  string
}

// StartTunnel builds the topology, writes an engarde.yml in the style of
// the README's second scenario (a destination per link with dstOverrides),
// and starts the sink, the server and the client, returning once the client
// has a link on every interface. On error nothing is left behind.
func StartTunnel(prefix string, c TunnelConfig) (*Tunnel, error) {
	if c.Links == 0 {
		c.Links = 2
	}
	if c.SinkMode == "" {
		c.SinkMode = "first"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	tp, err := New(prefix, c.Links)
	if err != nil {
		return nil, err
	}
	t := &Tunnel{Topo: tp, Config: c}
	if err := t.start(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// LinkDst is the server address the client uses on link i (1 for eth-a):
// Via's when set.
func (c TunnelConfig) LinkDst(i int) string {
	if v, ok := c.Via[i]; ok {
		return v
	}
	return c.ServerDstOf(i)
}

// ServerDstOf is engarde-server's address on link i, whatever Via says.
func (c TunnelConfig) ServerDstOf(i int) string {
	l := Plan(i)
	if c.V6 {
		return fmt.Sprintf("[%s]:%d", l.ServerV6, ServerPort)
	}
	return fmt.Sprintf("%s:%d", l.ServerAddr, ServerPort)
}

// serverDst is where the server forwards.
func (c TunnelConfig) serverDst() string {
	if c.ServerDst != "" {
		return c.ServerDst
	}
	return SinkAddr
}

// YAML returns the configuration file for both roles.
func (c TunnelConfig) YAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client:\n  description: \"engarde test client\"\n  listenAddr: %q\n  dstAddr: %q\n  dstOverrides:\n", ClientListen, c.LinkDst(1))
	for i := 2; i <= 4; i++ {
		// Overrides for links that do not exist yet are fine: a link
		// added later finds its destination here.
		fmt.Fprintf(&b, "    - ifName: %s\n      dstAddr: %q\n", Plan(i).Name, c.LinkDst(i))
	}
	fmt.Fprintf(&b, "  log: {level: %s, format: json}\n", c.LogLevel)
	if c.Backend != "" {
		fmt.Fprintf(&b, "  engine: {backend: %s}\n", c.Backend)
	}
	// State files beside the configuration (relative to it), as systemd's
	// state directory gives them: a restarted role resumes its sessions.
	b.WriteString("  stateFile: client.state\n")
	b.WriteString(c.ClientExtra)
	listen := fmt.Sprintf("0.0.0.0:%d", ServerPort)
	if c.V6 {
		listen = fmt.Sprintf("[::]:%d", ServerPort)
	}
	fmt.Fprintf(&b, "server:\n  description: \"engarde test server\"\n  listenAddr: %q\n  dstAddr: %q\n  clientTimeout: 30\n", listen, c.serverDst())
	fmt.Fprintf(&b, "  log: {level: %s, format: json}\n", c.LogLevel)
	if c.Backend != "" {
		fmt.Fprintf(&b, "  engine: {backend: %s}\n", c.Backend)
	}
	b.WriteString("  stateFile: server.state\n")
	b.WriteString(c.ServerExtra)
	return b.String()
}

func (t *Tunnel) start() error {
	var err error
	if t.dir, err = os.MkdirTemp("", "engarde-tunnel-"); err != nil {
		return err
	}
	t.ConfigPath = filepath.Join(t.dir, "engarde.yml")
	if err := os.WriteFile(t.ConfigPath, []byte(t.Config.YAML()), 0o644); err != nil {
		return err
	}
	bin := t.Config.Bin
	if !t.Config.NoSink {
		if t.Sink, err = t.StartSink(SinkAddr); err != nil {
			return err
		}
	}
	if t.Server, err = t.StartEnv(t.Topo.Server, t.Config.Env, nil, filepath.Join(bin, "engarde-server"), t.ConfigPath); err != nil {
		return err
	}
	if t.Client, err = t.StartEnv(t.Topo.Client, t.Config.Env, nil, filepath.Join(bin, "engarde-client"), t.ConfigPath); err != nil {
		return err
	}
	return t.WaitLog(t.Client, 5*time.Second, t.Config.Links, `"link eth-`, ` up: `)
}

// StartSink starts another sink (engarde-loadgen sink, in the tunnel's
// echo mode) in the server namespace, listening on addr: with addr on a
// link's server address, a generator aimed at it measures the direct path.
// It returns once the sink listens.
func (t *Tunnel) StartSink(addr string) (*Proc, error) {
	p, err := t.Start(t.Topo.Server, nil, filepath.Join(t.Config.Bin, "engarde-loadgen"), "sink", "-listen", addr, "-mode", t.Config.SinkMode)
	if err != nil {
		return nil, err
	}
	return p, t.WaitLog(p, 5*time.Second, 1, "sink listening on")
}

// Close stops everything and deletes the namespaces and the config.
func (t *Tunnel) Close() error {
	err := t.Topo.Close()
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
	return err
}

// WaitLog waits until p has logged n lines containing every one of subs.
func (t *Tunnel) WaitLog(p *Proc, d time.Duration, n int, subs ...string) error {
	return p.WaitLog(d, n, subs...)
}

// CountLog counts the lines p has logged so far that contain every one of
// subs: WaitLog(d, CountLog(subs...)+1, subs...) waits for the next one.
func (p *Proc) CountLog(subs ...string) int {
	got := 0
	for _, line := range strings.Split(p.Stderr.String(), "\n") {
		if containsAll(line, subs) {
			got++
		}
	}
	return got
}

// WaitLog waits until p has logged n lines containing every one of subs.
func (p *Proc) WaitLog(d time.Duration, n int, subs ...string) error {
	deadline := time.Now().Add(d)
	for {
		got := p.CountLog(subs...)
		if got >= n {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited: %v\n%s", filepath.Base(p.Name), p.err, p.Stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s logged %d lines with %q within %v, want %d:\n%s", filepath.Base(p.Name), got, subs, d, n, p.Stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// Gen runs the load generator in the client namespace through the tunnel
// and returns its report. extra are further engarde-loadgen gen flags.
func (t *Tunnel) Gen(rate int, dur time.Duration, size int, extra ...string) (*loadgen.Report, error) {
	return t.GenTo(ClientListen, rate, dur, size, extra...)
}

// GenTo is Gen aimed at another target (the sink directly, for a baseline).
func (t *Tunnel) GenTo(target string, rate int, dur time.Duration, size int, extra ...string) (*loadgen.Report, error) {
	return t.GenContext(context.Background(), target, rate, dur, size, extra...)
}

// GenContext is GenTo that stops sending when ctx is done: the generator
// gets SIGINT and still reports what it sent. Later extra flags override
// earlier ones ("-wait", "300ms" shortens the default 1 s wait).
func (t *Tunnel) GenContext(ctx context.Context, target string, rate int, dur time.Duration, size int, extra ...string) (*loadgen.Report, error) {
	args := append([]string{"netns", "exec", t.Topo.Client, filepath.Join(t.Config.Bin, "engarde-loadgen"), "gen",
		"-target", target, "-rate", fmt.Sprint(rate), "-duration", dur.String(),
		"-size", fmt.Sprint(size), "-wait", "1s", "-json", "-"}, extra...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	// ip netns exec executes the generator in place: the signal reaches it.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("generator: %w\n%s", err, stderr.String())
	}
	var r loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("generator report: %w\n%s", err, stdout.String())
	}
	return &r, nil
}

// Totals are a role's final counters per link (client) or per client
// address (server), read from the JSON lines it logs when it stops.
type Totals map[string]map[string]float64

// Stop ends the client and the server and returns their final counters.
func (t *Tunnel) Stop() (client, server Totals, err error) {
	errs := []error{t.Client.Stop(), t.Server.Stop()}
	return totals(t.Client, "link"), totals(t.Server, "client"), errors.Join(errs...)
}

func totals(p *Proc, key string) Totals {
	out := Totals{}
	sc := bufio.NewScanner(strings.NewReader(p.Stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		msg, _ := m["message"].(string)
		k, ok := m[key].(string)
		if !ok || !strings.HasSuffix(msg, "totals") {
			continue
		}
		out[k] = map[string]float64{}
		for f, v := range m {
			if x, ok := v.(float64); ok {
				out[k][f] = x
			}
		}
	}
	return out
}
