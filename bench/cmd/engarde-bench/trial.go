package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/report"
	"github.com/engarde-project/engarde/bench/topo"
)

// Path names.
const directPath = "direct"

// enginePath names engarde with a backend: "engarde/mmsg".
func enginePath(backend string) string { return "engarde/" + backend }

// genFunc runs the load generator once over a path: rate packets per
// second (0 flat out) of size bytes for dur, then waits wait for late
// echoes; series asks for a time series per 100 ms.
type genFunc func(ctx context.Context, rate int, dur, wait time.Duration, size int, series bool) (*loadgen.Report, error)

// path is one way from the generator to a sink and back: the direct path
// (one link, no tunnel) or engarde with one backend.
type path struct {
	name string
	gen  genFunc
	// cpu are the processes whose processor time a trial counts
	// (engarde-client and engarde-server); none for the direct path and
	// in loopback mode, where everything shares one process.
	cpu []*topo.Proc
}

// tunnelGen returns the genFunc of a generator in t's client namespace
// aimed at target.
func tunnelGen(t *topo.Tunnel, target string) genFunc {
	return func(ctx context.Context, rate int, dur, wait time.Duration, size int, series bool) (*loadgen.Report, error) {
		extra := []string{"-wait", wait.String()}
		if series {
			// The JSON report carries the series; the CSV is not needed.
			extra = append(extra, "-series", "/dev/null")
		}
		return t.GenContext(ctx, target, rate, dur, size, extra...)
	}
}

// Trial is one generator run over a path.
type Trial struct {
	// Path names the path.
	Path string `json:"path"`
	// Rate is the requested rate in packets per second, 0 flat out.
	Rate int `json:"rate"`
	// Size is the payload of each packet in bytes.
	Size int `json:"size"`
	// Report is the generator's report; nil when the trial failed.
	Report *loadgen.Report `json:"report,omitempty"`
	// ClientCPU and ServerCPU are the processor time engarde-client and
	// engarde-server used during the trial (utime + stime, to 10 ms), in
	// microseconds; missing for the direct path and in loopback mode.
	ClientCPU report.Value `json:"client_cpu_us"`
	ServerCPU report.Value `json:"server_cpu_us"`
	// CPUPerPacket is (ClientCPU + ServerCPU) per packet delivered (a
	// round trip: one datagram each way through both), in microseconds.
	CPUPerPacket report.Value `json:"cpu_us_per_packet"`
	// Error says why the trial failed.
	Error string `json:"error,omitempty"`
}

// ok reports whether the trial produced a report.
func (t *Trial) ok() bool { return t.Report != nil && t.Error == "" }

// metric returns f of the report, NaN when the trial failed.
func (t *Trial) metric(f func(r *loadgen.Report) float64) float64 {
	if !t.ok() {
		return math.NaN()
	}
	return f(t.Report)
}

// medianOf is the median of f over the trials that produced a report.
func medianOf(ts []Trial, f func(*loadgen.Report) float64) report.Value {
	xs := make([]float64, len(ts))
	for i := range ts {
		xs[i] = ts[i].metric(f)
	}
	return report.Value(report.Median(xs))
}

// medianCPU is the median CPU per packet of the trials that measured it.
func medianCPU(ts []Trial) report.Value {
	xs := make([]float64, len(ts))
	for i, t := range ts {
		xs[i] = float64(t.CPUPerPacket)
	}
	return report.Value(report.Median(xs))
}

// trial runs the generator once over p, sampling the CPU time of p's
// processes around it. A failed trial is printed and returned with its
// error; the run goes on.
func (b *bench) trial(p *path, rate, size int, dur time.Duration, series bool) Trial {
	t := Trial{Path: p.name, Rate: rate, Size: size, ClientCPU: report.NA, ServerCPU: report.NA, CPUPerPacket: report.NA}
	if err := b.ctx.Err(); err != nil {
		t.Error = "interrupted"
		return t
	}
	before := cpuTimes(p.cpu)
	r, err := p.gen(b.ctx, rate, dur, b.plan.Wait, size, series)
	after := cpuTimes(p.cpu)
	if err != nil {
		t.Error = err.Error()
		if b.ctx.Err() != nil {
			t.Error = "interrupted"
		} else {
			fmt.Fprintf(b.out, "  trial failed (%s, %d pkt/s, %d B): %v\n", p.name, rate, size, err)
		}
		return t
	}
	t.Report = r
	if len(before) == 2 && len(after) == 2 && before[0] >= 0 && before[1] >= 0 && after[0] >= 0 && after[1] >= 0 {
		t.ClientCPU = report.Value(float64(after[0]-before[0]) / 1e3)
		t.ServerCPU = report.Value(float64(after[1]-before[1]) / 1e3)
		if r.Received > 0 {
			t.CPUPerPacket = (t.ClientCPU + t.ServerCPU) / report.Value(r.Received)
		}
	}
	return t
}

// cpuTimes reads the CPU time of each process, -1 where it cannot.
func cpuTimes(procs []*topo.Proc) []time.Duration {
	out := make([]time.Duration, len(procs))
	for i, p := range procs {
		d, err := p.CPU()
		if err != nil {
			d = -1
		}
		out[i] = d
	}
	return out
}
