package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// nameFlag collects -name NAME=ADDR flags.
type nameFlag map[string][]netip.Addr

func (n nameFlag) String() string { return fmt.Sprint(map[string][]netip.Addr(n)) }

func (n nameFlag) Set(s string) error {
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want NAME=ADDR", s)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return err
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	n[name] = append(n[name], a)
	return nil
}

// dnsMain is the "dns" subcommand, run in the client namespace: a DNS
// server for the -name names on -listen. SIGUSR1 stops its answers and
// SIGUSR2 resumes them; it logs each query on standard error.
func dnsMain(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:53", "`address` to answer on")
	names := nameFlag{}
	fs.Var(names, "name", "`NAME=ADDR` to answer (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	d := topo.NewDNS(pc, names)
	d.OnQuery = func(name string, qtype uint16, answered bool) {
		what := "answered"
		if !answered {
			what = "dropped"
		}
		fmt.Fprintf(os.Stderr, "dns: %s type %d %s\n", name, qtype, what)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	if dnsOff != nil {
		signal.Notify(sig, dnsOff, dnsOn)
	}
	go func() {
		for s := range sig {
			switch s {
			case dnsOff:
				d.SetAnswering(false)
				fmt.Fprintln(os.Stderr, "dns: not answering")
			case dnsOn:
				d.SetAnswering(true)
				fmt.Fprintln(os.Stderr, "dns: answering")
			default:
				d.Close()
				return
			}
		}
	}()
	fmt.Fprintf(os.Stderr, "dns: listening on %s\n", pc.LocalAddr())
	return d.Serve()
}

// relayMain is the "relay" subcommand, run in the server namespace: the
// delaying relay (topo.RelayMain), 100 ms each way unless -delay says
// otherwise.
func relayMain(args []string) error { return topo.RelayMain(args, 100*time.Millisecond) }
