package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/engine/conn"
)

// Trace is one stream's packets: when each sequence number was sent and
// how long its echo took.
type Trace struct {
	// T0 is when sequence number 0 was sent, in Unix nanoseconds (the
	// wall clock, which every process of the machine shares).
	T0 int64 `json:"t0_unix_ns"`
	// Sent[i] is when sequence number i was sent, in nanoseconds after T0.
	Sent []int64 `json:"sent_ns"`
	// RTT[i] is the round trip of its first echo, in nanoseconds; 0 when
	// none came back.
	RTT []int64 `json:"rtt_ns"`
	// Report is the generator's own summary.
	Report *loadgen.Report `json:"report"`
}

// progressEvery is how often the stream tells the parent what it received.
const progressEvery = 20 * time.Millisecond

// streamMain is the "stream" subcommand, run in the client namespace: a
// fixed-rate stream through WireGuard to the sink that records every
// packet. It prints "rx COUNT LAST" lines (datagrams received, the Unix
// nanoseconds of the last) while it runs and, when -duration ends or
// SIGINT comes, one line "trace JSON".
func streamMain(args []string) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	target := fs.String("target", "", "sink `address` (host:port)")
	rate := fs.Float64("rate", 1000, "packets per second")
	size := fs.Int("size", 200, "payload bytes")
	dur := fs.Duration("duration", 10*time.Second, "longest time to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dst, err := netip.ParseAddrPort(*target)
	if err != nil {
		return fmt.Errorf("-target: %w", err)
	}
	c, err := conn.Default(nil).Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), 0), conn.SocketOptions{BatchSize: 64})
	if err != nil {
		return err
	}
	rec := newRecorder(c, int(*rate*dur.Seconds()*1.1)+1024)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex // guards out
	tick := time.NewTicker(progressEvery)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-tick.C:
			case <-done:
				return
			}
			mu.Lock()
			fmt.Fprintf(out, "rx %d %d\n", rec.rx.Load(), rec.last.Load())
			out.Flush()
			mu.Unlock()
		}
	}()
	r, err := loadgen.Run(ctx, loadgen.Options{Target: dst, Conn: rec, Rate: *rate, Size: *size, Duration: *dur,
		Wait: time.Second, Handshake: 10 * time.Second, Batch: 64})
	tick.Stop()
	close(done)
	if r == nil {
		return err
	}
	tr := rec.trace(r)
	b, jerr := json.Marshal(tr)
	if jerr != nil {
		return jerr
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(out, "trace %s\n", b)
	if ferr := out.Flush(); ferr != nil {
		return ferr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// recorder is the generator's socket, noting the send time of each data
// datagram and the round trip of each first echo. The generator's sender
// goroutine owns sent, its receiver rtt.
type recorder struct {
	conn.Conn
	mono, wall int64 // loadgen.Now() and the Unix nanoseconds at the same moment

	sent []int64 // loadgen.Now() of each sequence number's send, 0 until sent
	rtt  []int64

	rx   atomic.Uint64 // first echoes received
	last atomic.Int64  // Unix nanoseconds of the last
}

func newRecorder(c conn.Conn, hint int) *recorder {
	return &recorder{Conn: c, mono: loadgen.Now(), wall: time.Now().UnixNano(),
		sent: make([]int64, 0, hint), rtt: make([]int64, 0, hint)}
}

// maxSeq bounds the sequence numbers recorded: a corrupt header must not
// make a slice of gigabytes (an hour at 10 000 packets a second).
const maxSeq = 36_000_000

func (r *recorder) WriteBatch(msgs []conn.Message) (int, error) {
	r.noteSent(msgs)
	return r.Conn.WriteBatch(msgs)
}

func (r *recorder) TryWriteBatch(msgs []conn.Message) (int, error) {
	r.noteSent(msgs)
	return r.Conn.TryWriteBatch(msgs)
}

func (r *recorder) noteSent(msgs []conn.Message) {
	for i := range msgs {
		h, err := loadgen.Decode(msgs[i].Buf[:msgs[i].N])
		if err != nil || h.Seq >= maxSeq {
			continue // a handshake initiation
		}
		for uint64(len(r.sent)) <= h.Seq {
			r.sent = append(r.sent, 0)
		}
		r.sent[h.Seq] = h.Sent
	}
}

func (r *recorder) ReadBatch(msgs []conn.Message) (int, error) {
	n, err := r.Conn.ReadBatch(msgs)
	now := loadgen.Now()
	for i := range msgs[:n] {
		m := &msgs[i]
		if m.Truncated {
			continue
		}
		h, derr := loadgen.Decode(m.Buf[:m.N])
		if derr != nil || h.Seq >= maxSeq {
			continue // the handshake response
		}
		for uint64(len(r.rtt)) <= h.Seq {
			r.rtt = append(r.rtt, 0)
		}
		if r.rtt[h.Seq] == 0 {
			r.rtt[h.Seq] = max(now-h.Sent, 1)
			r.rx.Add(1)
			r.last.Store(r.wall + now - r.mono)
		}
	}
	return n, err
}

// trace builds the Trace once the run is over, with the generator's
// report; the sequence numbers beyond what it counts as sent are dropped.
func (r *recorder) trace(rep *loadgen.Report) *Trace {
	n := min(int(rep.Sent), len(r.sent))
	tr := &Trace{Sent: make([]int64, n), RTT: make([]int64, n), Report: rep}
	if n == 0 {
		return tr
	}
	first := r.sent[0]
	tr.T0 = r.wall + first - r.mono
	for i := range n {
		tr.Sent[i] = r.sent[i] - first
		if i < len(r.rtt) {
			tr.RTT[i] = r.rtt[i]
		}
	}
	return tr
}

// stream is a running stream child, seen from the parent.
type stream struct {
	cmd    *exec.Cmd
	rx     atomic.Uint64
	last   atomic.Int64 // Unix nanoseconds of the last echo
	stderr bytes.Buffer
	done   chan struct{}
	trace  *Trace
	err    error
}

// startStream starts the stream in namespace ns for at most d and returns
// once echoes come back (within 10 s).
func startStream(exe, ns, target string, rate, size int, d time.Duration) (*stream, error) {
	s := &stream{done: make(chan struct{})}
	s.cmd = exec.Command("ip", "netns", "exec", ns, exe, "stream", "-target", target,
		"-rate", fmt.Sprint(rate), "-size", fmt.Sprint(size), "-duration", d.String())
	s.cmd.Stderr = &s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<30)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "rx "):
				f := strings.Fields(line)
				if len(f) == 3 {
					n, _ := strconv.ParseUint(f[1], 10, 64)
					last, _ := strconv.ParseInt(f[2], 10, 64)
					s.rx.Store(n)
					s.last.Store(last)
				}
			case strings.HasPrefix(line, "trace "):
				var tr Trace
				if err := json.Unmarshal([]byte(line[len("trace "):]), &tr); err != nil {
					s.err = fmt.Errorf("stream trace: %w", err)
				} else {
					s.trace = &tr
				}
			}
		}
		if err := s.cmd.Wait(); err != nil && s.err == nil {
			s.err = fmt.Errorf("stream: %w: %s", err, bytes.TrimSpace(s.stderr.Bytes()))
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); s.rx.Load() == 0; time.Sleep(10 * time.Millisecond) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("stream ended before any echo: %v", s.err)
		default:
		}
		if time.Now().After(deadline) {
			_, _ = s.stop()
			return nil, errors.New("stream: no echo within 10 s")
		}
	}
	return s, nil
}

// stop interrupts the stream (it still waits a second for late echoes)
// and returns its trace.
func (s *stream) stop() (*Trace, error) {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.trace == nil && s.err == nil {
		s.err = errors.New("stream: no trace")
	}
	return s.trace, s.err
}

// echoedSince reports whether an echo arrived after t (Unix nanoseconds).
func (s *stream) echoedSince(t int64) bool { return s.last.Load() > t }
