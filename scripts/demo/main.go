// Command demo shows engarde at work in under 30 seconds: a client and a
// server joined by two links, a stream of numbered packets through the
// tunnel, one link taken down and brought back mid-stream, and what
// happened to every packet.
//
// As root it runs the real binaries (from -bin) in two network namespaces
// joined by two veth links (see bench/topo), and cleans up after itself.
// Otherwise it runs client and server in this process on loopback, with
// two simulated interfaces, and says so.
//
//	go run ./scripts/demo -bin bin
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/topo"
)

const (
	rate     = 10000
	size     = 1200
	duration = 8 * time.Second
	downAt   = 2500 * time.Millisecond
	upAt     = 5 * time.Second
)

// row is one socket's final counters.
type row struct {
	name                     string
	tx, rx, drops, sendError float64
}

func main() {
	bin := flag.String("bin", "bin", "directory with engarde-client, engarde-server and engarde-loadgen")
	flag.Parse()
	var err error
	if why := topo.Usable(); why != nil {
		fmt.Printf("Not running in network namespaces (%v).\nRunning client and server on loopback instead, with two simulated interfaces.\n\n", why)
		err = loopback()
	} else {
		err = namespaces(*bin)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func namespaces(bin string) error {
	fmt.Println("Creating two network namespaces joined by two veth links (eth-a: 198.18.1.0/24, eth-b: 198.18.2.0/24)...")
	t, err := topo.StartTunnel(fmt.Sprintf("egdemo%d-", os.Getpid()%10000), topo.TunnelConfig{Bin: bin})
	if err != nil {
		return err
	}
	defer func() {
		t.Close()
		fmt.Println("\nNamespaces deleted, processes stopped.")
	}()
	fmt.Printf("engarde-client in %s listens on %s; engarde-server in %s on :%d, with a UDP echo behind it.\n",
		t.Topo.Client, topo.ClientListen, t.Topo.Server, topo.ServerPort)
	series, err := os.CreateTemp("", "engarde-demo-*.csv")
	if err != nil {
		return err
	}
	series.Close()
	defer os.Remove(series.Name())

	events := schedule(func(up bool) error { return t.SetUp("eth-a", up) })
	fmt.Printf("Streaming %d packets/s of %d bytes for %v; eth-a goes down at %v and comes back at %v.\n\n", rate, size, duration, downAt, upAt)
	r, err := t.Gen(rate, duration, size, "-series", series.Name())
	if err != nil {
		return err
	}
	<-events
	r.Series, err = readSeries(series.Name())
	if err != nil {
		return err
	}
	client, server, err := t.Stop()
	if err != nil {
		return err
	}
	report(r, rows(client), rows(server))
	return nil
}

func rows(t topo.Totals) []row {
	var out []row
	for name, m := range t {
		out = append(out, row{name, m["tx"], m["rx"], m["drops"], m["sendErrors"]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// schedule takes eth-a down at downAt and up at upAt, printing when; the
// channel closes when both are done.
func schedule(set func(up bool) error) <-chan struct{} {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		time.Sleep(downAt)
		fmt.Printf("  %5.2fs  eth-a down\n", time.Since(start).Seconds())
		if err := set(false); err != nil {
			fmt.Println("  ", err)
		}
		time.Sleep(upAt - downAt)
		fmt.Printf("  %5.2fs  eth-a up\n", time.Since(start).Seconds())
		if err := set(true); err != nil {
			fmt.Println("  ", err)
		}
	}()
	return done
}

func readSeries(path string) ([]loadgen.Interval, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []loadgen.Interval
	var header string
	if _, err := fmt.Fscanln(f, &header); err != nil {
		return nil, err
	}
	for {
		var t float64
		var iv loadgen.Interval
		_, err := fmt.Fscanf(f, "%f,%d,%d,%d,%f,%f\n", &t, &iv.Sent, &iv.Received, &iv.Lost, &iv.RTTMax, &iv.RTTMean)
		if err != nil {
			break
		}
		iv.Start = time.Duration(t * float64(time.Second))
		out = append(out, iv)
	}
	return out, nil
}

func report(r *loadgen.Report, client, server []row) {
	fmt.Println("\nEvery half second (packets sent, echoes received, packets never answered, worst round trip):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "time\tsent\treceived\tlost\tmax rtt\t")
	var acc loadgen.Interval
	for i, iv := range r.Series {
		acc.Sent += iv.Sent
		acc.Received += iv.Received
		acc.Lost += iv.Lost
		acc.RTTMax = max(acc.RTTMax, iv.RTTMax)
		if i%5 == 4 || i == len(r.Series)-1 {
			fmt.Fprintf(tw, "%.1fs\t%d\t%d\t%d\t%.1fms\t\n", iv.Start.Seconds()+0.1, acc.Sent, acc.Received, acc.Lost, acc.RTTMax/1000)
			acc = loadgen.Interval{}
		}
	}
	tw.Flush()
	fmt.Printf("\nSent %d, received %d, lost %d (%.3f%%). Every packet crossed both links; engarde passed on the first copy\n"+
		"of each (%d extra copies still reached the generator, inside trains that mixed first copies and copies).\n",
		r.Sent, r.Received, r.Lost, r.LossPercent, r.Duplicates)
	fmt.Printf("Round trip: p50 %.2f ms, p99 %.2f ms, max %.2f ms.\n", r.RTTP50/1000, r.RTTP99/1000, r.RTTMax/1000)
	table := func(title string, rows []row) {
		fmt.Printf("\n%s\n", title)
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tsent\treceived\tdropped\tsend errors\t")
		for _, x := range rows {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t\n", x.name, x.tx, x.rx, x.drops, x.sendError)
		}
		tw.Flush()
	}
	table("engarde-client, per link:", client)
	table("engarde-server, per client address:", server)
	if r.Lost == 0 {
		fmt.Println("\nNothing was lost: while eth-a was down, eth-b carried every packet.")
	} else {
		fmt.Printf("\n%d packets were lost. On a busy machine the generator or the echo can fall behind; run it again.\n", r.Lost)
	}
}

// loopback runs the same demo in this process: client and server on
// 127.0.0.1, the client's two "interfaces" being 127.0.0.2 and 127.0.0.3.
func loopback() error {
	lb, err := topo.StartLoopback(nil)
	if err != nil {
		return err
	}
	defer lb.Close()
	cl, srv := lb.Client, lb.Server
	fmt.Printf("engarde-client listens on %v, engarde-server on %v, with a UDP echo behind it.\n", cl.ListenAddr(), srv.ListenAddr())
	fmt.Printf("Streaming %d packets/s of %d bytes for %v; eth-a goes down at %v and comes back at %v.\n\n", rate, size, duration, downAt, upAt)
	events := schedule(func(up bool) error { lb.SetUp("eth-a", up); return nil })
	r, err := loadgen.Run(context.Background(), loadgen.Options{Target: cl.ListenAddr(), Rate: rate, Size: size, Duration: duration, Wait: time.Second, SeriesInterval: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	<-events
	var client, server []row
	for _, l := range cl.Links() {
		if s := l.Stats; s != nil {
			client = append(client, row{l.Name, float64(s.TxPackets.Load()), float64(s.RxPackets.Load()), float64(s.Drops()), float64(s.SendErrors.Load())})
		}
	}
	for _, p := range srv.Peers() {
		s := p.Stats
		server = append(server, row{p.Addr.String(), float64(s.TxPackets.Load()), float64(s.RxPackets.Load()), float64(s.Drops()), float64(s.SendErrors.Load())})
	}
	report(r, client, server)
	return nil
}
