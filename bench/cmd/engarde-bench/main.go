// Command engarde-bench measures engarde against the direct path on this
// machine and writes a report: `make bench` (about 5 minutes) and
// `make bench-quick` (under a minute).
//
// As root it runs the real binaries (from -bin) in two network namespaces
// joined by two veth links (bench/topo), named egb<pid>-*, and measures,
// for the direct path (the generator straight to a sink over one link) and
// for engarde with each backend:
//   - throughput as RFC 2544 defines it (the highest rate with loss at or
//     below 0.1%, by a bounded search), for 1400- and 64-byte payloads, with
//     the CPU time of engarde-client and engarde-server per packet;
//   - round-trip latency at 2 000, 10 000 and 100 000 packets/s;
//   - failover: link A down and up, then link B down, mid-stream;
//   - end-to-end loss with 5% random loss on each link;
//   - a slow link: link A rate-limited while more is offered;
//   - order: first copies out of sequence order at 50 000 packets/s, with
//     links of equal delay and with link B 5 ms slower (a relay);
//   - scaling: the throughput with GOMAXPROCS=1 for both daemons against
//     the default;
//   - iperf3 through wireguard-go: alone over link A, over engarde with
//     both links, and over engarde with link B down.
//
// Without root it runs a loopback subset in this process and says why.
// Tables are printed as each scenario completes, then the targets; the
// report (Markdown, JSON, SVG charts) goes to -out/latest and to a
// directory named after the date. SIGINT or SIGTERM stops the run, tears
// the namespaces down and still writes what was measured.
//
// Usage:
//
//	engarde-bench [-quick] [-backends mmsg,std] [-scenarios LIST] [-pairs N] [-bin DIR] [-out DIR] [-prefix P] [-loopback]
//	engarde-bench relay -listen ADDR -upstream ADDR -bind ADDR -delay D   (the order scenario's delay relay)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// bench is one run.
type bench struct {
	ctx  context.Context
	plan Plan
	out  io.Writer
	res  *Results
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		if err := relayMain(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "engarde-bench relay: %v\n", err)
			os.Exit(1)
		}
		return
	}
	bin := flag.String("bin", "bin", "`directory` with engarde-client, engarde-server, engarde-loadgen and wireguard-go")
	out := flag.String("out", "bench/results", "`directory` for the reports (latest/ and one per run)")
	quick := flag.Bool("quick", false, "the quick plan: one backend, one pair, short trials, no WireGuard (under a minute)")
	backends := flag.String("backends", "", "comma-separated engarde `backends` to measure, the first with full repetitions (default "+strings.Join(defaultBackends, ",")+"; quick: the first)")
	scenarios := flag.String("scenarios", "", "comma-separated `scenarios` to run, of "+strings.Join(allScenarios, ","))
	pairs := flag.Int("pairs", 0, "paired repetitions of the headline measurements (default 3; quick: 1)")
	loopback := flag.Bool("loopback", false, "run the loopback subset even as root")
	prefix := flag.String("prefix", "", "`prefix` of the network namespaces' names (default egb<pid>-)")
	flag.Parse()

	plan := fullPlan()
	if *quick {
		plan = quickPlan()
	}
	var err error
	if *backends != "" {
		if plan.Backends, err = parseList(*backends, nil); err != nil {
			usage("-backends: %v", err)
		}
	}
	if *scenarios != "" {
		if plan.Scenarios, err = parseList(*scenarios, allScenarios); err != nil {
			usage("-scenarios: %v", err)
		}
	}
	if *pairs > 0 {
		plan.Pairs = *pairs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{ctx: ctx, plan: plan, out: os.Stdout, res: &Results{Env: environment(*bin), Plan: plan}}
	start := time.Now()
	why := topo.Usable()
	if why == nil && *loopback {
		why = fmt.Errorf("-loopback was given")
	}
	fmt.Fprintf(b.out, "engarde-bench: plan %s, backends %s, scenarios %s\n", plan.Name, strings.Join(plan.Backends, ","), strings.Join(plan.Scenarios, ","))
	if b.res.Env.busy() {
		note := fmt.Sprintf("The machine was busy when the run started (load average %s): other work competes for the CPUs, and the figures move with it.", b.res.Env.LoadAvg)
		b.res.Notes = append(b.res.Notes, note)
		fmt.Fprintln(b.out, note)
	}
	if why != nil {
		b.res.Mode = "loopback"
		notes := append([]string{fmt.Sprintf("Not running in network namespaces (%v): running the loopback subset.", why)}, loopbackNotes...)
		b.res.Notes = append(b.res.Notes, notes...)
		b.res.Skipped = append(b.res.Skipped, loopbackSkips...)
		for _, n := range notes {
			fmt.Fprintln(b.out, n)
		}
		b.runLoopback()
	} else {
		b.res.Mode = "namespaces"
		b.runNamespaces(*bin, *prefix)
	}
	b.res.Plan = b.plan
	b.res.Elapsed = time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		b.res.Interrupted = true
		fmt.Fprintln(b.out, "\nInterrupted: namespaces deleted, processes stopped; writing what was measured.")
	}
	b.res.Targets = evaluate(b.res)
	b.print(targetTable(b.res.Targets))
	dir, err := b.res.writeFiles(*out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "engarde-bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(b.out, "Total %v. Report: %s/%s (charts %s, %s; raw numbers %s)\n", b.res.Elapsed.Round(100*time.Millisecond), dir, mdFile, failoverFile, latencyFile, jsonFile)
	if b.res.Interrupted {
		os.Exit(130)
	}
}

// step runs one step of the run, printing its name and wall time and
// recording the time in the results.
func (b *bench) step(name string, f func()) {
	if b.ctx.Err() != nil {
		return
	}
	fmt.Fprintf(b.out, "\n== %s\n", name)
	start := time.Now()
	f()
	d := time.Since(start)
	b.res.Timing = append(b.res.Timing, Timing{Step: name, Seconds: d.Seconds()})
	fmt.Fprintf(b.out, "   (%.1f s)\n", d.Seconds())
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "engarde-bench: "+format+"\n", args...)
	flag.Usage()
	os.Exit(2)
}
