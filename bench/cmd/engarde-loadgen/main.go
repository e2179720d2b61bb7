// Command engarde-loadgen generates UDP load through an engarde tunnel and
// measures throughput, loss, duplicates, reordering and round-trip time.
//
// Usage:
//
//	engarde-loadgen sink [-listen ADDR] [-mode first|all|count] [flags]
//	engarde-loadgen gen -target ADDR [-rate PPS] [-size B] [-duration D] [-count N] [flags]
//
// The sink echoes what it receives back to the sender; the generator sends
// numbered, timestamped datagrams to the target and receives the echoes on
// the same socket. Before any data the two exchange a handshake shaped like
// WireGuard's (an initiation, answered by a response), so that engarde
// learns the session as it learns a WireGuard one. Run the sink behind
// engarde's server and the generator in front of its client (or both on
// one host over loopback as a baseline).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/engine/conn"
)

const usage = `usage: engarde-loadgen <command> [flags]

commands:
  sink   listen, echo and count until interrupted
  gen    send load to a target and report what came back

Run "engarde-loadgen <command> -h" for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "sink":
		err = sink(args)
	case "gen":
		err = gen(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "engarde-loadgen: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "engarde-loadgen %s: %v\n", os.Args[1], err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "engarde-loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// usageError is a bad command line.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Synopses printed above the flags of each command.
var synopsis = map[string]string{
	"sink": "usage: engarde-loadgen sink [-listen ADDR] [-mode first|all|count] [flags]\n\nListen, echo datagrams to their source and count them; print a summary on SIGINT or SIGTERM.\n\nflags:\n",
	"gen":  "usage: engarde-loadgen gen -target ADDR [-rate PPS] [-size BYTES] [-duration D] [-count N] [flags]\n\nSend load to the target, receive the echoes on the same socket and report throughput, loss,\nduplicates, reordering and round-trip times. SIGINT stops sending early and still reports.\n\nflags:\n",
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), synopsis[fs.Name()])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	return nil
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", ":9999", "`address` to listen on (host:port; an empty host is every address)")
	mode := fs.String("mode", "first", "what to echo: first (the first copy of each packet, as WireGuard does), all (every copy) or count (nothing)")
	batch := fs.Int("batch", 64, "datagrams per system call")
	backend := fs.String("backend", "", "socket backend: mmsg or std (default mmsg on Linux)")
	gso := fs.Bool("gso", false, "send echoes with UDP GSO")
	jsonOut := fs.String("json", "", "write the summary as JSON to `file` (- for stdout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := loadgen.ParseMode(*mode)
	if err != nil {
		return usageError{err}
	}
	laddr, err := conn.ResolveListen(*listen)
	if err != nil {
		return usagef("-listen: %w", err)
	}
	be, err := loadgen.NewBackend(*backend)
	if err != nil {
		return usagef("-backend: %w", err)
	}
	s, err := loadgen.NewSink(laddr, loadgen.SinkOptions{Mode: m, Backend: be, Batch: *batch, GSO: *gso})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sink listening on %v (mode %s, backend %s); interrupt to stop\n", s.Addr(), m, be.Name())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	select {
	case <-ctx.Done():
		s.Close()
		err = <-done
	case err = <-done:
		s.Close()
	}
	stop()
	st := s.Stats()
	if werr := output(*jsonOut, st, st.WriteTable); werr != nil {
		return werr
	}
	return err
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	target := fs.String("target", "", "`address` to send to (host:port), required")
	local := fs.String("local", "", "`address` to send from (default: any, a free port)")
	rate := fs.Float64("rate", 0, "packets per second (0: as fast as possible)")
	size := fs.Int("size", loadgen.DefaultSize, fmt.Sprintf("payload `bytes` per datagram (%d to %d)", loadgen.HeaderLen, loadgen.MaxSize))
	duration := fs.Duration("duration", 5*time.Second, "how long to send (0: until -count)")
	count := fs.Uint64("count", 0, "packets to send (0: until -duration; when set alone, no time limit)")
	batch := fs.Int("batch", 64, "largest number of datagrams per system call")
	copies := fs.Int("copies", 1, "send every packet this many times (simulates the tunnel's duplicates)")
	wait := fs.Duration("wait", loadgen.DefaultWait, "how long to wait for late replies after sending stops")
	handshake := fs.Duration("handshake", loadgen.DefaultHandshake, fmt.Sprintf("how long to wait for the sink's handshake response (an initiation every %v)", loadgen.HandshakeRetry))
	backend := fs.String("backend", "", "socket backend: mmsg or std (default mmsg on Linux)")
	gso := fs.Bool("gso", false, "send with UDP GSO")
	jsonOut := fs.String("json", "", "write the report as JSON to `file` (- for stdout)")
	seriesOut := fs.String("series", "", "write a time series per 100 ms as CSV to `file` (- for stdout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *target == "" {
		return usagef("-target is required")
	}
	o := loadgen.Options{
		Rate:     *rate,
		Size:     *size,
		Duration: *duration,
		Count:    *count,
		Batch:    *batch,
		Copies:   *copies,
		Wait:     *wait,
		GSO:      *gso,

		Handshake: *handshake,
	}
	if *count > 0 && !isSet(fs, "duration") {
		o.Duration = 0 // -count alone: no time limit
	}
	if *wait == 0 {
		o.Wait = -1 // -wait 0 means no wait
	}
	if *handshake <= 0 {
		return usagef("-handshake %v: must be positive", *handshake)
	}
	if *seriesOut != "" {
		o.SeriesInterval = loadgen.DefaultSeriesInterval
	}
	var err error
	if o.Target, err = conn.ResolveListen(*target); err != nil {
		return usagef("-target: %w", err)
	}
	if !o.Target.Addr().IsValid() || o.Target.Addr().IsUnspecified() || o.Target.Port() == 0 {
		return usagef("-target %q: need a host and a port", *target)
	}
	if *local != "" {
		if o.Local, err = conn.ResolveListen(*local); err != nil {
			return usagef("-local: %w", err)
		}
	}
	if o.Backend, err = loadgen.NewBackend(*backend); err != nil {
		return usagef("-backend: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := loadgen.Run(ctx, o)
	stop()
	if r == nil {
		return err
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "engarde-loadgen gen: %v\n", err)
	}
	if werr := output(*jsonOut, r, r.WriteTable); werr != nil {
		return werr
	}
	if *seriesOut != "" {
		if werr := writeTo(*seriesOut, r.WriteSeriesCSV); werr != nil {
			return werr
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil // interrupted: the report covers what was sent
	}
	return err
}

// output writes v as JSON to the file named jsonOut, if any, and the table
// to stdout unless the JSON went there, in which case the table goes to
// stderr when that is a terminal.
func output(jsonOut string, v any, table func(io.Writer) error) error {
	if jsonOut != "" {
		err := writeTo(jsonOut, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		})
		if err != nil {
			return err
		}
	}
	switch {
	case jsonOut != "-":
		return table(os.Stdout)
	case isTerminal(os.Stderr):
		return table(os.Stderr)
	}
	return nil
}

// writeTo calls write with the file called name, or stdout for "-".
func writeTo(name string, write func(io.Writer) error) error {
	if name == "-" {
		return write(os.Stdout)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return f.Close()
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// isTerminal reports whether f is a character device, as a terminal is.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
