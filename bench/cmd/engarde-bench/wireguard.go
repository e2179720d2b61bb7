package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/engarde-project/engarde/bench/report"
	"github.com/engarde-project/engarde/bench/topo"
)

// Addresses of the WireGuard scenario: wireguard-go's listen ports and the
// tunnel's inner addresses (198.19.0.0/24, the second half of the
// benchmarking range).
const (
	wgServerPort = 51820
	wgClientPort = 51821
	wgServerIP   = "198.19.0.1"
	wgClientIP   = "198.19.0.2"
	iperfPort    = "5201"
)

// Configurations of the WireGuard scenario.
const (
	wgAlone = "alone"    // WireGuard straight over link A, no engarde
	wgBoth  = "both"     // over engarde, both links up
	wgOne   = "one link" // over engarde, link B down
)

// wgConfigs are the configurations in the order each round runs them.
var wgConfigs = []string{wgAlone, wgBoth, wgOne}

// wgDownLink is the link the one-link configuration takes down.
const wgDownLink = "eth-b"

// IperfRun is one iperf3 TCP run through WireGuard.
type IperfRun struct {
	// Path is "wireguard" (over link A alone) or "wireguard over
	// engarde/BACKEND" (with ", eth-b down" for the one-link runs).
	Path string `json:"path"`
	// Config is wgAlone, wgBoth or wgOne ("" in older reports: from
	// Path).
	Config string `json:"config"`
	Round  int    `json:"round"`
	// Gbps is what the receiver got, SentGbps what the sender sent.
	Gbps        float64 `json:"gbps"`
	SentGbps    float64 `json:"sent_gbps"`
	Retransmits int     `json:"retransmits"`
	// CPU is the share of one core each process used during the run, in
	// percent (100 is a whole core; the machine has NumCPU cores).
	CPU map[string]float64 `json:"cpu_percent"`
	// IperfHostCPU and IperfRemoteCPU are iperf3's own figures, in
	// percent of one core.
	IperfHostCPU   float64 `json:"iperf_host_cpu_percent"`
	IperfRemoteCPU float64 `json:"iperf_remote_cpu_percent"`
	Error          string  `json:"error,omitempty"`
}

// config is the run's configuration, from Path for a run without one.
func (r *IperfRun) config() string {
	switch {
	case r.Config != "":
		return r.Config
	case r.Path == "wireguard":
		return wgAlone
	case strings.HasSuffix(r.Path, " down"):
		return wgOne
	}
	return wgBoth
}

// WireGuardResult is the WireGuard scenario.
type WireGuardResult struct {
	Backend string     `json:"backend"`
	Runs    []IperfRun `json:"runs"`
	// Medians over the rounds: WireGuard alone, over engarde with both
	// links (Engarde*), over engarde with link B down (OneLink*).
	AloneGbps          report.Value `json:"alone_gbps"`
	EngardeGbps        report.Value `json:"engarde_gbps"`
	OneLinkGbps        report.Value `json:"one_link_gbps"`
	AloneRetransmits   report.Value `json:"alone_retransmits"`
	EngardeRetransmits report.Value `json:"engarde_retransmits"`
	OneLinkRetransmits report.Value `json:"one_link_retransmits"`
	// Ratio is both links over alone, OneLinkRatio one link over alone,
	// BothOverOne both links over one link.
	Ratio        report.Value `json:"ratio"`
	OneLinkRatio report.Value `json:"one_link_ratio"`
	BothOverOne  report.Value `json:"both_over_one"`
	// Notes say what limits the throughput, from the CPU figures.
	Notes []string `json:"notes"`
}

// wireguard runs iperf3 over wireguard-go on a topology of its own, each
// round in turn: WireGuard straight over link A, WireGuard over engarde
// (with backend) with both links, and over engarde with link B down (its
// client end set down: engarde-client closes its socket there, the server
// end loses carrier), brought up again after the run.
func (b *bench) wireguard(bin, prefix, backend string) error {
	for _, tool := range []string{"wg", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install wireguard-tools iperf3)", tool)
		}
	}
	wgGo := filepath.Join(bin, "wireguard-go")
	tun, err := topo.StartTunnel(prefix, topo.TunnelConfig{Bin: bin, Backend: backend, NoSink: true,
		ServerDst: fmt.Sprintf("127.0.0.1:%d", wgServerPort)})
	if err != nil {
		return err
	}
	defer tun.Close()
	ws, err := tun.StartWireGuard(wgGo, tun.Topo.Server, "egbwg-s", wgServerPort, wgServerIP+"/24")
	if err != nil {
		return err
	}
	defer ws.Close()
	wc, err := tun.StartWireGuard(wgGo, tun.Topo.Client, "egbwg-c", wgClientPort, wgClientIP+"/24")
	if err != nil {
		return err
	}
	defer wc.Close()
	if err := ws.SetPeer(wc.PublicKey, "", wgClientIP+"/32"); err != nil {
		return err
	}
	iperf, err := tun.Start(tun.Topo.Server, nil, "iperf3", "-s", "-B", wgServerIP, "-p", iperfPort)
	if err != nil {
		return err
	}
	defer iperf.Stop()
	if err := waitListen(tun, iperfPort, iperf); err != nil {
		return err
	}

	res := &WireGuardResult{Backend: backend}
	b.res.WireGuard = res
	over := "wireguard over " + enginePath(backend)
	paths := map[string]struct{ name, endpoint string }{
		wgAlone: {"wireguard", fmt.Sprintf("%s:%d", topo.Plan(1).ServerAddr, wgServerPort)},
		wgBoth:  {over, topo.ClientListen},
		wgOne:   {over + ", " + wgDownLink + " down", topo.ClientListen},
	}
	procs := map[string]*topo.Proc{"wireguard-go client": wc.Proc, "wireguard-go server": ws.Proc,
		"engarde-client": tun.Client, "engarde-server": tun.Server}
	for round := range b.plan.WGRounds {
		for _, cfg := range wgConfigs {
			if b.ctx.Err() != nil {
				break
			}
			p := paths[cfg]
			run := IperfRun{Path: p.name, Config: cfg, Round: round}
			var err error
			if cfg == wgOne {
				err = setLinkWaiting(tun, wgDownLink, false)
			}
			// A new path starts with a new handshake, as a WireGuard
			// brought up over engarde does: engarde-server answers only
			// sessions whose handshake it saw, and a session kept from
			// the other path would wait for WireGuard's next one.
			if err == nil {
				err = wc.RemovePeer(ws.PublicKey)
			}
			if err == nil {
				err = wc.SetPeer(ws.PublicKey, p.endpoint, wgServerIP+"/32")
			}
			if err != nil {
				run.Error = err.Error()
			} else {
				run = b.iperf(tun, run, procs)
			}
			if cfg == wgOne {
				if err := setLinkWaiting(tun, wgDownLink, true); err != nil && run.Error == "" {
					run.Error = "bringing " + wgDownLink + " back up: " + err.Error()
				}
			}
			res.Runs = append(res.Runs, run)
			fmt.Fprintf(b.out, "  %-38s round %d: %s Gbit/s, %d retransmits%s\n", p.name, round+1, report.F(run.Gbps, 3), run.Retransmits, errSuffix(run.Error))
		}
	}
	res.summarize()
	b.print(wireguardTable(res))
	return nil
}

// setLinkWaiting sets a link's client end down or up and waits until
// engarde-client has logged the link down or up.
func setLinkWaiting(tun *topo.Tunnel, link string, up bool) error {
	subs := []string{"link " + link + " down: "}
	if up {
		subs = []string{"link " + link + " up: "}
	}
	n := tun.Client.CountLog(subs...)
	if err := tun.SetUp(link, up); err != nil {
		return err
	}
	return tun.Client.WaitLog(5*time.Second, n+1, subs...)
}

// waitListen waits until a TCP port listens in the server namespace.
func waitListen(tun *topo.Tunnel, port string, p *topo.Proc) error {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := tun.Exec(tun.Topo.Server, "ss", "-Hltn", "sport = :"+port)
		if strings.TrimSpace(out) != "" {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("iperf3 -s exited: %s", p.Stderr.String())
		default:
		}
	}
	return errors.New("iperf3 -s does not listen after 5 s")
}

// iperf runs one iperf3 client in the client namespace, sampling the CPU
// time of procs around it.
func (b *bench) iperf(tun *topo.Tunnel, run IperfRun, procs map[string]*topo.Proc) IperfRun {
	ctx, cancel := context.WithTimeout(b.ctx, b.plan.WGTime+15*time.Second)
	defer cancel()
	before := map[string]time.Duration{}
	for name, p := range procs {
		before[name], _ = p.CPU()
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tun.Topo.Client, "iperf3", "-c", wgServerIP, "-p", iperfPort,
		"-t", fmt.Sprint(int(b.plan.WGTime.Seconds())), "-J", "--connect-timeout", "3000")
	out, err := cmd.Output()
	wall := time.Since(start)
	run.CPU = map[string]float64{}
	for name, p := range procs {
		if after, err := p.CPU(); err == nil {
			run.CPU[name] = 100 * float64(after-before[name]) / float64(wall)
		}
	}
	r, perr := parseIperf(out)
	switch {
	case b.ctx.Err() != nil:
		run.Error = "interrupted"
	case perr != nil && err != nil:
		run.Error = fmt.Sprintf("iperf3: %v: %v", err, perr)
	case perr != nil:
		run.Error = perr.Error()
	default:
		run.Gbps, run.SentGbps, run.Retransmits = r.End.SumReceived.BitsPerSecond/1e9, r.End.SumSent.BitsPerSecond/1e9, r.End.SumSent.Retransmits
		run.IperfHostCPU, run.IperfRemoteCPU = r.End.CPU.HostTotal, r.End.CPU.RemoteTotal
	}
	return run
}

// iperfReport is the part of iperf3's JSON output (-J) we read.
type iperfReport struct {
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf decodes iperf3's JSON output; a run that failed is an error.
func parseIperf(b []byte) (*iperfReport, error) {
	var r iperfReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("iperf3 output: %w", err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond == 0 {
		return nil, errors.New("iperf3: nothing received")
	}
	return &r, nil
}

// summarize computes the medians and the notes on what limits the
// throughput.
func (r *WireGuardResult) summarize() {
	gbps, retr := map[string][]float64{}, map[string][]float64{}
	cpu := map[string]map[string][]float64{}
	for _, run := range r.Runs {
		if run.Error != "" {
			continue
		}
		c := run.config()
		gbps[c], retr[c] = append(gbps[c], run.Gbps), append(retr[c], float64(run.Retransmits))
		if cpu[c] == nil {
			cpu[c] = map[string][]float64{}
		}
		for name, pc := range run.CPU {
			cpu[c][name] = append(cpu[c][name], pc)
		}
		cpu[c]["iperf3 (both ends)"] = append(cpu[c]["iperf3 (both ends)"], run.IperfHostCPU+run.IperfRemoteCPU)
	}
	med := func(xs []float64) report.Value { return report.Value(report.Median(xs)) }
	r.AloneGbps, r.EngardeGbps, r.OneLinkGbps = med(gbps[wgAlone]), med(gbps[wgBoth]), med(gbps[wgOne])
	r.AloneRetransmits, r.EngardeRetransmits, r.OneLinkRetransmits = med(retr[wgAlone]), med(retr[wgBoth]), med(retr[wgOne])
	r.Ratio, r.OneLinkRatio, r.BothOverOne = ratio(r.EngardeGbps, r.AloneGbps), ratio(r.OneLinkGbps, r.AloneGbps), ratio(r.EngardeGbps, r.OneLinkGbps)
	r.Notes = nil
	machine := 100 * float64(numCPU())
	busy := map[string]float64{}
	what := map[string]string{wgAlone: "WireGuard alone", wgBoth: "WireGuard over engarde, both links", wgOne: "WireGuard over engarde, " + wgDownLink + " down"}
	for _, c := range wgConfigs {
		if len(cpu[c]) == 0 {
			continue
		}
		var parts []string
		for _, name := range []string{"wireguard-go client", "wireguard-go server", "engarde-client", "engarde-server", "iperf3 (both ends)"} {
			if xs, ok := cpu[c][name]; ok && (c != wgAlone || !strings.HasPrefix(name, "engarde")) {
				m := report.Median(xs)
				busy[c] += m
				parts = append(parts, fmt.Sprintf("%s %.0f%%", name, m))
			}
		}
		r.Notes = append(r.Notes, fmt.Sprintf("%s: %s of one core; together %.0f%% of the machine's %.0f%% (averaged over the run, start-up included).", what[c], strings.Join(parts, ", "), busy[c], machine))
	}
	r.Notes = append(r.Notes, "Over engarde, every WireGuard packet crosses both links, and engarde passes only the first copy of each data message on to wireguard-go (engine.dedup): without that filter wireguard-go would decrypt both copies before its replay check dropped the second (device/receive.go: Open in RoutineDecryption, ValidateCounter in RoutineSequentialReceiver). What engarde costs here is its own two processes on the same two cores as wireguard-go, and TCP's reaction to segments lost or reordered in the tunnel (each copy races over its own link; the first to arrive goes on).")
	r.Notes = append(r.Notes, "One link: "+wgDownLink+"'s client end is set down (ip link set down) before the run and up after it, each time once engarde-client has logged the link down or up; the server end loses carrier meanwhile. Each round runs alone, both links, one link, in that order.")
	for _, c := range wgConfigs {
		if _, ok := gbps[c]; ok {
			r.Notes = append(r.Notes, limitNote(what[c], busy[c], machine, report.Median(retr[c]), float64(r.AloneRetransmits)))
		}
	}
}

// limitNote says what limits a path's TCP throughput, from the CPU the
// processes used (busy, of machine percent) and the TCP retransmissions
// (retr, and alone's for comparison).
func limitNote(what string, busy, machine, retr, alone float64) string {
	switch {
	case math.IsNaN(busy) || busy == 0:
		return what + ": not measured."
	case busy >= 0.85*machine:
		return fmt.Sprintf("%s is CPU-bound: its processes keep both cores busy (%.0f%% of %.0f%%).", what, busy, machine)
	case retr > 2*alone+10:
		return fmt.Sprintf("%s is not CPU-bound (%.0f%% of %.0f%%): TCP retransmitted %.0f segments per run (alone: %.0f), so packets lost in the tunnel make TCP back off, and that limits it more than the CPU.", what, busy, machine, retr, alone)
	}
	return fmt.Sprintf("%s leaves CPU idle (%.0f%% of %.0f%%) with few retransmissions (%.0f): neither explains the limit; the wake-ups between processes (about 17 µs each across CPUs here, see DESIGN.md) are the likely pace-setter.", what, busy, machine, retr)
}

// wireguardTable tabulates the WireGuard scenario.
func wireguardTable(r *WireGuardResult) *report.Table {
	t := &report.Table{
		Title:   "Real WireGuard: iperf3 TCP through wireguard-go",
		Columns: []string{"path", "round", "Gbit/s", "retransmits", "CPU % (wg client, wg server, engarde client, server)"},
	}
	for _, run := range r.Runs {
		if run.Error != "" {
			t.Add(run.Path, fmt.Sprint(run.Round+1), "failed: "+firstLine(run.Error, 160))
			continue
		}
		c := run.CPU
		cpu := fmt.Sprintf("%.0f, %.0f", c["wireguard-go client"], c["wireguard-go server"])
		if run.config() != wgAlone {
			cpu += fmt.Sprintf(", %.0f, %.0f", c["engarde-client"], c["engarde-server"])
		}
		t.Add(run.Path, fmt.Sprint(run.Round+1), report.F(run.Gbps, 3), fmt.Sprint(run.Retransmits), cpu)
	}
	t.Add("median: WireGuard alone", "", report.F(float64(r.AloneGbps), 3), report.F(float64(r.AloneRetransmits), 0), "")
	t.Add("median: over engarde, both links", "", report.F(float64(r.EngardeGbps), 3), report.F(float64(r.EngardeRetransmits), 0), "")
	t.Add("median: over engarde, "+wgDownLink+" down", "", report.F(float64(r.OneLinkGbps), 3), report.F(float64(r.OneLinkRetransmits), 0), "")
	t.Add("both links / alone", "", report.Pct(float64(r.Ratio)), "", "")
	t.Add("both links / one link", "", pct1(r.BothOverOne), "", "")
	t.Notes = r.Notes
	return t
}

// errSuffix is " (err)", shortened, when err is not empty.
func errSuffix(err string) string {
	if err == "" {
		return ""
	}
	return " (" + firstLine(err, 160) + ")"
}

// firstLine is the first line of s, cut to at most n bytes (at a rune
// boundary) with an ellipsis: an error that quotes a process's log stays
// readable in a table.
func firstLine(s string, n int) string {
	line, _, more := strings.Cut(s, "\n")
	if len(line) > n {
		i := n
		for i > 0 && !utf8.RuneStart(line[i]) {
			i--
		}
		line, more = line[:i], true
	}
	if more {
		line += "…"
	}
	return line
}
