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

// IperfRun is one iperf3 TCP run through WireGuard.
type IperfRun struct {
	// Path is "wireguard" (over link A alone) or "wireguard over
	// engarde/BACKEND".
	Path  string `json:"path"`
	Round int    `json:"round"`
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

// WireGuardResult is the WireGuard scenario.
type WireGuardResult struct {
	Backend string     `json:"backend"`
	Runs    []IperfRun `json:"runs"`
	// Medians over the rounds.
	AloneGbps          report.Value `json:"alone_gbps"`
	EngardeGbps        report.Value `json:"engarde_gbps"`
	Ratio              report.Value `json:"ratio"`
	AloneRetransmits   report.Value `json:"alone_retransmits"`
	EngardeRetransmits report.Value `json:"engarde_retransmits"`
	// Notes say what limits the throughput, from the CPU figures.
	Notes []string `json:"notes"`
}

// wireguard runs iperf3 over wireguard-go, alternating between WireGuard
// straight over link A and WireGuard over engarde (with backend), on a
// topology of its own.
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
	paths := []struct{ name, endpoint string }{
		{"wireguard", fmt.Sprintf("%s:%d", topo.Plan(1).ServerAddr, wgServerPort)},
		{"wireguard over " + enginePath(backend), topo.ClientListen},
	}
	procs := map[string]*topo.Proc{"wireguard-go client": wc.Proc, "wireguard-go server": ws.Proc,
		"engarde-client": tun.Client, "engarde-server": tun.Server}
	for round := range b.plan.WGRounds {
		for _, p := range paths {
			if b.ctx.Err() != nil {
				break
			}
			run := IperfRun{Path: p.name, Round: round}
			// A new path starts with a new handshake, as a WireGuard
			// brought up over engarde does: engarde-server answers only
			// sessions whose handshake it saw, and a session kept from
			// the other path would wait for WireGuard's next one.
			err := wc.RemovePeer(ws.PublicKey)
			if err == nil {
				err = wc.SetPeer(ws.PublicKey, p.endpoint, wgServerIP+"/32")
			}
			if err != nil {
				run.Error = err.Error()
			} else {
				run = b.iperf(tun, run, procs)
			}
			res.Runs = append(res.Runs, run)
			fmt.Fprintf(b.out, "  %-28s round %d: %s Gbit/s, %d retransmits%s\n", p.name, round+1, report.F(run.Gbps, 3), run.Retransmits, errSuffix(run.Error))
		}
	}
	res.summarize()
	b.print(wireguardTable(res))
	return nil
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
	var alone, eng, aloneRetr, engRetr []float64
	cpu := map[bool]map[string][]float64{false: {}, true: {}}
	for _, run := range r.Runs {
		if run.Error != "" {
			continue
		}
		over := run.Path != "wireguard"
		if over {
			eng, engRetr = append(eng, run.Gbps), append(engRetr, float64(run.Retransmits))
		} else {
			alone, aloneRetr = append(alone, run.Gbps), append(aloneRetr, float64(run.Retransmits))
		}
		for name, pc := range run.CPU {
			cpu[over][name] = append(cpu[over][name], pc)
		}
		cpu[over]["iperf3 (both ends)"] = append(cpu[over]["iperf3 (both ends)"], run.IperfHostCPU+run.IperfRemoteCPU)
	}
	r.AloneGbps, r.EngardeGbps = report.Value(report.Median(alone)), report.Value(report.Median(eng))
	r.AloneRetransmits, r.EngardeRetransmits = report.Value(report.Median(aloneRetr)), report.Value(report.Median(engRetr))
	r.Ratio = ratio(r.EngardeGbps, r.AloneGbps)
	r.Notes = nil
	machine := 100 * float64(numCPU())
	busy := map[bool]float64{}
	for _, over := range []bool{false, true} {
		if len(cpu[over]) == 0 {
			continue
		}
		var parts []string
		for _, name := range []string{"wireguard-go client", "wireguard-go server", "engarde-client", "engarde-server", "iperf3 (both ends)"} {
			if xs, ok := cpu[over][name]; ok && (over || !strings.HasPrefix(name, "engarde")) {
				m := report.Median(xs)
				busy[over] += m
				parts = append(parts, fmt.Sprintf("%s %.0f%%", name, m))
			}
		}
		what := "WireGuard alone"
		if over {
			what = "WireGuard over engarde"
		}
		r.Notes = append(r.Notes, fmt.Sprintf("%s: %s of one core; together %.0f%% of the machine's %.0f%% (averaged over the run, start-up included).", what, strings.Join(parts, ", "), busy[over], machine))
	}
	r.Notes = append(r.Notes, "Over engarde, every WireGuard packet crosses both links, and engarde passes only the first copy of each data message on to wireguard-go (engine.dedup): without that filter wireguard-go would decrypt both copies before its replay check dropped the second (device/receive.go: Open in RoutineDecryption, ValidateCounter in RoutineSequentialReceiver). What engarde costs here is its own two processes on the same two cores as wireguard-go, and TCP's reaction to segments lost or reordered in the tunnel (each copy races over its own link; the first to arrive goes on).")
	r.Notes = append(r.Notes, limitNote("WireGuard alone", busy[false], machine, float64(r.AloneRetransmits), float64(r.AloneRetransmits)),
		limitNote("WireGuard over engarde", busy[true], machine, float64(r.EngardeRetransmits), float64(r.AloneRetransmits)))
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
			t.Add(run.Path, fmt.Sprint(run.Round+1), "failed: "+run.Error)
			continue
		}
		c := run.CPU
		cpu := fmt.Sprintf("%.0f, %.0f", c["wireguard-go client"], c["wireguard-go server"])
		if run.Path != "wireguard" {
			cpu += fmt.Sprintf(", %.0f, %.0f", c["engarde-client"], c["engarde-server"])
		}
		t.Add(run.Path, fmt.Sprint(run.Round+1), report.F(run.Gbps, 3), fmt.Sprint(run.Retransmits), cpu)
	}
	t.Add("median: over engarde / alone", "", report.Pct(float64(r.Ratio)), "", "")
	t.Notes = r.Notes
	return t
}

// errSuffix is ": err" when err is not empty.
func errSuffix(err string) string {
	if err == "" {
		return ""
	}
	return " (" + err + ")"
}
