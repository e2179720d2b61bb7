package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// relayMain is `engarde-bench relay`: the delay relay (topo.Relay) as a
// process, which the order scenario runs in the server namespace in front
// of link B (topo.Tunnel.DelayLink). It logs topo.RelayReady when it
// listens and topo.RelayDone with its counters in JSON when SIGTERM stops
// it.
func relayMain(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "", "`address` clients send to")
	upstream := fs.String("upstream", "", "`address` to relay to")
	bind := fs.String("bind", "", "`address` to send to the upstream from")
	delay := fs.Duration("delay", 5*time.Millisecond, "delay in each direction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ap [3]netip.AddrPort
	for i, s := range []string{*listen, *upstream, *bind} {
		var err error
		if ap[i], err = netip.ParseAddrPort(s); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, err := topo.Relay(ctx, ap[0], ap[1], ap[2], *delay, func() {
		fmt.Fprintf(os.Stderr, "%s on %v, to %v, %v each way\n", topo.RelayReady, ap[0], ap[1], *delay)
	})
	b, _ := json.Marshal(st)
	fmt.Fprintf(os.Stderr, "%s%s\n", topo.RelayDone, b)
	return err
}
