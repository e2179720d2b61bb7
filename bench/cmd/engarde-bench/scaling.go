package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
	"github.com/engarde-project/engarde/bench/topo"
)

// ScalingRun is one throughput search of the scaling scenario.
type ScalingRun struct {
	// GOMAXPROCS is the daemons' setting: a number, or "" for their own
	// choice (the variable unset), which Procs says.
	GOMAXPROCS string  `json:"gomaxprocs"`
	Procs      int     `json:"procs"`
	Search     *Search `json:"search"`
}

// ScalingResult is the scaling scenario: engarde's RFC 2544 throughput
// with both daemons set to another number of Go processors, against
// their own choice.
type ScalingResult struct {
	Backend string `json:"backend"`
	Size    int    `json:"size"`
	// CPUs is the number of CPUs here: the default GOMAXPROCS.
	CPUs int          `json:"cpus"`
	Runs []ScalingRun `json:"runs"`
	// Ratio is the other setting's rate over the daemons' own.
	Ratio report.Value `json:"ratio"`
	Error string       `json:"error,omitempty"`
}

// scaling runs the scaling scenario for backend: a search on a tunnel of
// its own (namespaces named after prefix) whose daemons run with
// GOMAXPROCS=ScalingProcs, then one on the main tunnel's engarde path (e),
// whose daemons run with the variable unset and choose for themselves.
func (b *bench) scaling(bin, prefix, backend string, e *path) {
	size, procs := b.plan.Sizes[0], fmt.Sprint(b.plan.scalingProcs())
	res := &ScalingResult{Backend: backend, Size: size, CPUs: numCPU(), Ratio: report.NA}
	b.res.Scaling = res
	tun, err := topo.StartTunnel(prefix, topo.TunnelConfig{Bin: bin, Backend: backend, Env: []string{"GOMAXPROCS=" + procs}})
	if err != nil {
		res.Error = err.Error()
		fmt.Fprintf(b.out, "  GOMAXPROCS=%s tunnel: %v\n", procs, err)
		return
	}
	for _, d := range []*topo.Proc{tun.Client, tun.Server} {
		if v, err := environ(d, "GOMAXPROCS"); err != nil || v != procs {
			res.Error = fmt.Sprintf("%s runs with GOMAXPROCS=%q, want %s (%v)", d.Name, v, procs, err)
		}
	}
	if res.Error != "" {
		tun.Close()
		fmt.Fprintf(b.out, "  %s\n", res.Error)
		return
	}
	p := &path{name: e.name + ", GOMAXPROCS=" + procs, gen: tunnelGen(tun, topo.ClientListen), cpu: []*topo.Proc{tun.Client, tun.Server}}
	limited := b.searchPath(p, size, 0, false)
	// The limited tunnel goes before the default search: nothing of it
	// is left to compete for the CPUs.
	tun.Close()
	res.Runs = append(res.Runs, ScalingRun{GOMAXPROCS: procs, Search: limited})
	if b.ctx.Err() != nil {
		return
	}
	def := b.searchPath(e, size, 0, false)
	res.Runs = append(res.Runs, ScalingRun{Search: def, Procs: ownProcs(e)})
	res.Ratio = ratio(limited.PPS, def.PPS)
	b.print(scalingTable(res))
}

// scalingTable tabulates the scaling scenario.
func scalingTable(r *ScalingResult) *report.Table {
	t := &report.Table{
		Title:   fmt.Sprintf("Scaling: engarde/%s's RFC 2544 throughput by GOMAXPROCS, %d B", r.Backend, r.Size),
		Columns: []string{"GOMAXPROCS (both daemons)", "pkt/s", "Gbit/s", "vs the daemons' own", "CPU µs/pkt", "flat-out pkt/s"},
	}
	if r.Error != "" {
		t.Add("failed: " + r.Error)
	}
	for _, run := range r.Runs {
		name, vs := run.GOMAXPROCS, report.Pct(float64(r.Ratio))
		if name == "" {
			name, vs = "the daemons' own", "100%"
			if run.Procs > 0 {
				name = fmt.Sprintf("the daemons' own (%d)", run.Procs)
			}
		}
		s := run.Search
		t.Add(name, report.F(float64(s.PPS), 0), report.F(float64(s.Gbps), 3), vs, report.F(float64(s.CPUPerPacket), 1),
			report.F(s.FlatOut.metric(func(x *loadgen.Report) float64 { return x.DeliveredPPS }), 0))
	}
	note := "One search each, the set one first (its daemons' GOMAXPROCS checked in /proc/PID/environ) on a tunnel of its own (stopped before the other runs on the main tunnel). GOMAXPROCS is set in the environment of engarde-client and engarde-server only (the Go runtime reads it); the generator and the sink are unchanged. Unset, the daemons choose: one on a host of two CPUs or fewer, the Go runtime's default (every CPU) otherwise; each logs its choice when it starts (gomaxprocs=), which the table reads. CPU is client plus server per round trip, as in the throughput table."
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		note += fmt.Sprintf(" This run's own environment had GOMAXPROCS=%s, which the main tunnel's daemons inherited.", v)
	}
	t.Notes = append(t.Notes, note)
	return t
}

// environ returns the value of the variable key in p's environment, as
// the kernel holds it (/proc/PID/environ): `ip netns exec` executes the
// program in place, so the PID is the program's own.
func environ(p *topo.Proc, key string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.Cmd.Process.Pid))
	if err != nil {
		return "", err
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, x, ok := strings.Cut(kv, "="); ok && k == key {
			return x, nil // the first, as the Go runtime's getenv reads it (os/exec left one)
		}
	}
	return "", nil
}

// scalingProcs is the scaling scenario's GOMAXPROCS: ScalingProcs, or
// every CPU.
func (p *Plan) scalingProcs() int {
	if p.ScalingProcs > 0 {
		return p.ScalingProcs
	}
	return numCPU()
}

// gomaxprocsRE finds the setting in a daemon's start-up line.
var gomaxprocsRE = regexp.MustCompile(`gomaxprocs[=":]+(\d+)`)

// ownProcs is the GOMAXPROCS e's daemons chose, as the client logged it
// (0 when it did not say).
func ownProcs(e *path) int {
	for _, p := range e.cpu {
		if m := gomaxprocsRE.FindStringSubmatch(p.Stderr.String()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}
