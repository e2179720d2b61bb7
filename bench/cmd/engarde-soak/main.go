// Command engarde-soak runs engarde for a long time under a steady stream
// while its links flap, and fails if the client or the server leaks
// memory, goroutines or file descriptors, or if a packet is lost while a
// link was up: `make soak` (10 minutes; `SOAK=60s` in CI).
//
// As root it builds the namespace tunnel of bench/topo (engarde-client and
// engarde-server from -bin, two veth links, engarde-loadgen's sink standing
// in for WireGuard) in namespaces named egk<pid>-c and egk<pid>-s, sends a
// numbered, echoed stream through it, and takes one link down for 2 s
// every 10 s, alternating links, so that one link is always up. Every
// second it samples both processes: resident memory (VmRSS of
// /proc/PID/status), open file descriptors (/proc/PID/fd), goroutines and
// heap in use (go_goroutines and go_memstats_heap_inuse_bytes on each
// web manager's /metrics, on its namespace's loopback). After the warm-up
// no measure may rise above its highest during the warm-up by more than
// its bound, and the stream must lose nothing. It prints the curves
// (start, warm-up highest, end, highest) and, with -json, writes every
// sample. Without root it says so and exits 0.
//
// Usage:
//
//	engarde-soak [-duration 10m] [-rate 2000] [-bin DIR] [-json FILE]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// The flap schedule: link a, then b, then a, ... goes down for flapDown
// every flapEvery, so one link is always up.
var (
	flapEvery = 10 * time.Second
	flapDown  = 2 * time.Second
)

// webAddr is where each role's web manager listens, on its namespace's
// loopback.
const webAddr = "127.0.0.1:9001"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "probe" {
		if err := runProbe(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "engarde-soak probe:", err)
			os.Exit(1)
		}
		return
	}
	bin := flag.String("bin", "bin", "`directory` with engarde-client, engarde-server and engarde-loadgen")
	duration := flag.Duration("duration", 10*time.Minute, "how long the stream runs")
	rate := flag.Int("rate", 2000, "packets per second")
	size := flag.Int("size", 1000, "payload `bytes` per packet")
	warmup := flag.Duration("warmup", 0, "how long the curves may settle (default: a fifth of -duration, at least 15s)")
	backend := flag.String("backend", "", "engine.backend of both roles (default: engarde's)")
	jsonOut := flag.String("json", "", "write the result, every sample included, as JSON to `file`")
	var b Bounds
	var rssMiB uint64
	flag.Uint64Var(&rssMiB, "rss-mib", 16, "resident memory may grow this many `MiB` after the warm-up (or -rss-percent, whichever is more)")
	flag.Float64Var(&b.RSSPercent, "rss-percent", 20, "resident memory may grow this `percent` after the warm-up (or -rss-mib)")
	flag.IntVar(&b.Goroutines, "goroutines", 2, "goroutines may grow by this many after the warm-up")
	flag.IntVar(&b.FDs, "fds", 2, "open file descriptors may grow by this many after the warm-up")
	flag.DurationVar(&flapEvery, "flap-every", flapEvery, "how often a link goes down")
	flag.DurationVar(&flapDown, "flap-down", flapDown, "how long it stays down")
	flag.Parse()
	b.RSSBytes = rssMiB << 20
	if *warmup == 0 {
		*warmup = max(15*time.Second, *duration/5)
	}
	if flapDown >= flapEvery {
		fatalf("-flap-down %v must be shorter than -flap-every %v, so that one link is always up", flapDown, flapEvery)
	}

	if err := topo.Usable(); err != nil {
		fmt.Printf("engarde-soak: skipped: %v (run make soak as root)\n", err)
		return
	}
	for _, name := range []string{"engarde-client", "engarde-server", "engarde-loadgen"} {
		if _, err := os.Stat(filepath.Join(*bin, name)); err != nil {
			fatalf("%v (make build first)", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &Result{Duration: *duration, Warmup: *warmup, Rate: *rate, Bounds: b}
	err := soak(ctx, r, *bin, *backend, *size)
	if err != nil {
		r.Failures = append(r.Failures, err.Error())
	}
	r.print(os.Stdout)
	if *jsonOut != "" {
		out, err := json.MarshalIndent(r, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(out, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "engarde-soak:", err)
		}
	}
	if len(r.Failures) > 0 {
		fmt.Println("\nFAIL:")
		for _, f := range r.Failures {
			fmt.Println("  " + f)
		}
		os.Exit(1)
	}
	fmt.Println("\nPASS")
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "engarde-soak: "+format+"\n", args...)
	os.Exit(2)
}

// soak runs the tunnel, the stream, the flaps and the sampling, and fills
// r; it returns an error if the run could not be made or was cut short.
func soak(ctx context.Context, r *Result, bin, backend string, size int) error {
	web := "  webManager:\n    listenAddr: \"" + webAddr + "\"\n"
	tun, err := topo.StartTunnel(fmt.Sprintf("egk%d-", os.Getpid()%100000), topo.TunnelConfig{
		Bin: bin, Backend: backend, ClientExtra: web, ServerExtra: web,
	})
	if err != nil {
		return err
	}
	defer tun.Close()
	failed := true
	defer func() {
		if failed {
			for _, p := range []*topo.Proc{tun.Client, tun.Server} {
				fmt.Fprintf(os.Stderr, "--- %s stderr (last 4 KiB):\n%s\n", filepath.Base(p.Name), tail(p.Stderr.String(), 4096))
			}
		}
	}()

	var probes [2]*probe
	for i, ns := range []string{tun.Topo.Client, tun.Topo.Server} {
		if probes[i], err = startProbe(ns, "http://"+webAddr+"/metrics"); err != nil {
			return err
		}
		defer probes[i].stop()
	}
	for _, p := range []*topo.Proc{tun.Client, tun.Server} {
		if err := checkExe(p); err != nil {
			return err
		}
	}
	// The web managers start with the roles; wait until both answer.
	for i, p := range probes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := p.scrape()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("web manager in %s: %w", []string{"client", "server"}[i], err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	streamDone := make(chan error, 1)
	go func() {
		// The time series lets a loss be placed in time.
		rep, err := tun.GenContext(ctx, topo.ClientListen, r.Rate, r.Duration, size, "-series", "/dev/null")
		r.Stream = rep
		streamDone <- err
	}()
	flapsDone := make(chan error, 1)
	go func() { flapsDone <- flap(ctx, tun, start, r) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var sampleErr error
	streamErr := func() error {
		for {
			select {
			case err := <-streamDone:
				return err
			case <-tun.Client.Done():
				sampleErr = errors.New("engarde-client exited during the soak")
			case <-tun.Server.Done():
				sampleErr = errors.New("engarde-server exited during the soak")
			case <-tick.C:
				s, err := sample(tun, probes, time.Since(start))
				if err != nil {
					sampleErr = err
				} else {
					r.Samples = append(r.Samples, s)
				}
			}
			if sampleErr != nil {
				cancel() // the stream and the flaps stop
				<-streamDone
				return nil
			}
		}
	}()
	flapErr := <-flapsDone
	r.Curves = curves(r.Samples, r.Warmup, r.Bounds)
	if err := errors.Join(sampleErr, streamErr, flapErr, ctx.Err()); err != nil {
		return err
	}
	r.judge()
	// Every flap must have been seen and recovered from by the client.
	for _, l := range []string{"eth-a", "eth-b"} {
		want := 0
		for _, f := range r.Flaps {
			if f.Link == l {
				want++
			}
		}
		got := recoveries(tun.Client.Stderr.String(), l)
		if got < want {
			r.Failures = append(r.Failures, fmt.Sprintf("the client logged link %s down -> active %d times for %d flaps", l, got, want))
		}
	}
	failed = len(r.Failures) > 0
	return nil
}

// recoveries counts the changes of state of link from down to active in a
// JSON log: the structured fields every change of state carries.
func recoveries(log, link string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		var e struct{ Link, From, To string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Link == link && e.From == "down" && e.To == "active" {
			n++
		}
	}
	return n
}

// flap takes the links down and up in turn until the stream's end is
// near, recording each flap in r.Flaps.
func flap(ctx context.Context, tun *topo.Tunnel, start time.Time, r *Result) error {
	links := []string{"eth-a", "eth-b"}
	for k := 1; ; k++ {
		at := time.Duration(k) * flapEvery
		// The last link back up at least 2 s before the stream ends,
		// so that its recovery is part of the run.
		if at+flapDown > r.Duration-2*time.Second {
			return nil
		}
		if !sleepUntil(ctx, start.Add(at)) {
			return nil
		}
		l := links[(k-1)%len(links)]
		f := Flap{Link: l, Down: time.Since(start)}
		if err := tun.SetUp(l, false); err != nil {
			return err
		}
		sleepUntil(ctx, start.Add(at+flapDown))
		// Up again even when cancelled, so that the teardown finds
		// what it built.
		if err := tun.SetUp(l, true); err != nil {
			return err
		}
		f.Up = time.Since(start)
		r.Flaps = append(r.Flaps, f)
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

// sample reads both processes.
func sample(tun *topo.Tunnel, probes [2]*probe, at time.Duration) (Sample, error) {
	s := Sample{At: at}
	for i, p := range []*topo.Proc{tun.Client, tun.Server} {
		u, err := procUsage(p.Cmd.Process.Pid)
		if err != nil {
			return s, fmt.Errorf("%s: %w", filepath.Base(p.Name), err)
		}
		a, err := probes[i].scrape()
		if err != nil {
			return s, fmt.Errorf("%s metrics: %w", filepath.Base(p.Name), err)
		}
		u.Goroutines, u.HeapInuse = int(a.Goroutines), uint64(a.HeapInuse)
		if i == 0 {
			s.Client = u
		} else {
			s.Server = u
		}
	}
	return s, nil
}

// checkExe makes sure p's PID is the engarde binary itself: ip netns exec
// runs its command in place (iproute2's cmd_exec without fork), and the
// sampling reads /proc of that PID.
func checkExe(p *topo.Proc) error {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Cmd.Process.Pid))
	if err != nil {
		return err
	}
	if filepath.Base(exe) != filepath.Base(p.Name) {
		return fmt.Errorf("PID %d runs %s, not %s", p.Cmd.Process.Pid, exe, p.Name)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
