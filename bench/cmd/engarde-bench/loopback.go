package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/engine/conn"
)

// loopbackNotes explain the loopback mode in the report.
var loopbackNotes = []string{
	"Loopback mode: client, server, sink and generator run in this process on 127.0.0.1, the client's two links being simulated interfaces on 127.0.0.2 and 127.0.0.3 (bench/topo.Loopback). It measures the engine, not the kernel's forwarding between namespaces, and the numbers are not comparable with a namespace run.",
}

// loopbackSkips are the scenarios the loopback mode cannot run.
var loopbackSkips = []Skip{
	{scThroughput + " search", "only the flat-out rate is measured on loopback"},
	{"CPU per packet", "client, server and generator share one process"},
	{scFailover + ", " + scLoss + ", " + scSlow, "need links to take down, drop on or rate-limit: network namespaces, which need root"},
	{scWireGuard, "wireguard-go needs /dev/net/tun and namespaces: root"},
}

// runLoopback runs the subset that needs no privileges: flat-out
// throughput and latency at the paired rates, engarde against the direct
// loopback path (generator straight to the sink).
func (b *bench) runLoopback() {
	b.plan.LatencyRates = b.plan.PairedRates
	for i, backend := range b.plan.Backends {
		if b.ctx.Err() != nil {
			return
		}
		if err := b.loopbackBackend(backend, i == 0); err != nil {
			fmt.Fprintf(b.out, "engarde/%s: %v\n", backend, err)
			b.res.Skipped = append(b.res.Skipped, Skip{Scenario: enginePath(backend), Reason: err.Error()})
		}
	}
}

func (b *bench) loopbackBackend(backend string, primary bool) error {
	be, err := conn.Open(backend, nil)
	if err != nil {
		return err
	}
	var lb *topo.Loopback
	b.step("start loopback tunnel, engarde/"+backend, func() { lb, err = topo.StartLoopback(be) })
	if err != nil {
		return err
	}
	defer lb.Close()
	e := &path{name: enginePath(backend), gen: loopbackGen(lb.Client.ListenAddr())}
	var d *path
	if primary {
		d = &path{name: directPath, gen: loopbackGen(lb.Sink.Addr())}
	}
	size := b.plan.Sizes[0]
	n := b.plan.pairsFor(backend, true)
	if b.plan.has(scThroughput) {
		b.step(fmt.Sprintf("flat-out throughput %d B, %s", size, pathsOf(e, d)), func() { b.throughput(e, d, size, n, true) })
	}
	if b.plan.has(scLatency) {
		b.step("latency, "+pathsOf(e, d), func() { b.latency(e, d, n) })
	}
	return nil
}

// loopbackGen runs the generator in this process, aimed at target, on
// loadgen's default backend whichever engarde's is.
func loopbackGen(target netip.AddrPort) genFunc {
	return func(ctx context.Context, rate int, dur, wait time.Duration, size int, series bool) (*loadgen.Report, error) {
		o := loadgen.Options{Target: target, Rate: float64(rate), Size: size, Duration: dur, Wait: wait}
		if series {
			o.SeriesInterval = loadgen.DefaultSeriesInterval
		}
		return loadgen.Run(ctx, o)
	}
}
