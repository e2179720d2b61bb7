package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
)

// Defaults of Options.
const (
	DefaultSize           = 1400
	DefaultWait           = 500 * time.Millisecond
	DefaultSeriesInterval = 100 * time.Millisecond
	DefaultHandshake      = 5 * time.Second
)

// HandshakeRetry is how long the generator waits for a response before it
// sends a new initiation. WireGuard waits Rekey-Timeout, 5 s (whitepaper,
// section 6.4); a benchmark should not lose that long to one lost packet.
const HandshakeRetry = 250 * time.Millisecond

// MaxSize is the largest payload: the largest UDP payload over IPv4.
const MaxSize = 65507

// coarseSleep is the longest wait the sender spends in sleepPrecise, which
// cannot be interrupted; longer waits use a timer and watch the context.
const coarseSleep = 2 * time.Millisecond

// maxTrackerHint bounds the bitmap Run preallocates (2^28 sequence numbers,
// 32 MiB); longer runs grow it as they go.
const maxTrackerHint = 1 << 28

// Options configures a generator run.
type Options struct {
	// Target is the address datagrams are sent to and echoes come from:
	// a Sink, or engarde's client end.
	Target netip.AddrPort
	// Local is the address to send from; the zero value picks the
	// wildcard address of Target's family and a free port.
	Local netip.AddrPort
	// Backend opens the socket; nil picks NewBackend("").
	Backend conn.Backend
	// Conn, when set, is used instead of opening a socket: datagrams are
	// written to it addressed to Target. Run closes it, even when it fails.
	Conn conn.Conn
	// Rate is the sending rate in packets (sequence numbers) per second;
	// 0 sends as fast as the socket takes them.
	Rate float64
	// Size is the payload size in bytes, from HeaderLen to MaxSize; 0
	// means DefaultSize.
	Size int
	// Duration bounds the sending time, Count the number of packets; at
	// least one must be set, and sending stops at whichever comes first.
	Duration time.Duration
	Count    uint64
	// Batch is the largest number of datagrams per system call; 0 means
	// defaults.BatchSize. At a fixed rate a batch holds only the
	// packets that are due, often one.
	Batch int
	// Copies sends every packet this many times with the same sequence
	// number, as the tunnel's redundant links do; 0 means 1.
	Copies int
	// Wait is how long to keep receiving after sending stops; 0 means
	// DefaultWait and a negative value no wait.
	Wait time.Duration
	// SeriesInterval, when nonzero, makes the report carry a time series
	// with one entry per interval (DefaultSeriesInterval is 100 ms).
	SeriesInterval time.Duration
	// GSO lets the socket send runs of equal-sized datagrams as UDP GSO
	// trains.
	GSO bool
	// Handshake bounds the wait for a response to the handshake
	// initiations sent before any data, one every HandshakeRetry; 0
	// means DefaultHandshake.
	Handshake time.Duration
}

// gen is the state of one run. The sender owns the fields above the
// receiver's; the receiver's are read only after it has finished, except
// those it sets before closing ready, which the sender reads after.
type gen struct {
	o       Options
	conn    conn.Conn
	hsStart int64         // Now() when the first initiation was sent
	issued  atomic.Uint64 // sequence numbers handed to the socket so far

	hsMu     sync.Mutex
	attempts []uint32 // the index of each initiation sent; guarded by hsMu

	// set by the receiver when the handshake completes, before it closes
	// ready
	ready  chan struct{}
	local  uint32 // the generator's index G, which the echoes carry
	remote uint32 // the sink's index S, which the datagrams sent carry
	t0     int64  // Now() when the response arrived, the start of sending

	// sender
	datagrams, sendErrors uint64
	initiations           int
	firstErr              error
	starts                []uint64 // starts[k]: first sequence number sent in interval k

	// receiver
	established bool
	hist        Histogram
	tr          *Tracker
	foreign     uint64
	rx          []rxInterval
	recvErr     error
}

// rxInterval accumulates the arrivals of one series interval.
type rxInterval struct {
	received       uint64
	rttSum, rttMax int64
}

// Run sends load to o.Target, receives the echoes on the same socket and
// returns the measurements. It stops sending when o.Duration or o.Count is
// reached or ctx is done, waits o.Wait for late replies and closes the
// socket. When ctx ends the run early, Run returns the report of what was
// sent together with ctx.Err().
//
// Before any data it plays the initiator's part of WireGuard's handshake,
// shapes only: it sends an initiation from a random index G, and a new one
// from a fresh index every HandshakeRetry, until a response to any of them
// arrives; it then sends its data to the index S the response names, and
// accepts as echoes only data carrying G. When no response arrives within
// o.Handshake, Run returns an error and no report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.setDefaults(); err != nil {
		if o.Conn != nil {
			o.Conn.Close()
		}
		return nil, err
	}
	g := &gen{o: o, conn: o.Conn, ready: make(chan struct{})}
	if g.conn == nil {
		laddr := o.Local
		if !laddr.IsValid() {
			laddr = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
			if o.Target.Addr().Is6() {
				laddr = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
			}
		}
		var err error
		g.conn, err = o.Backend.Listen(laddr, conn.SocketOptions{BatchSize: o.Batch, GSO: o.GSO})
		if err != nil {
			return nil, fmt.Errorf("opening socket on %v: %w", laddr, err)
		}
	}
	g.tr = NewTracker(o.trackerHint())
	if o.SeriesInterval > 0 {
		n := 2
		if o.Duration > 0 {
			n += int((o.Duration + max(o.Wait, 0)) / o.SeriesInterval)
		}
		g.starts = make([]uint64, 0, n)
		g.rx = make([]rxInterval, 0, n)
	}

	g.hsStart = Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.receive()
	}()
	if err := g.handshake(ctx); err != nil {
		g.conn.Close()
		<-done
		if ctx.Err() != nil {
			return g.report(0, 0), err
		}
		return nil, err
	}
	sendErr := g.send(ctx)
	sent := g.issued.Load()
	sendEnd := Now()
	if sendErr == nil && o.Wait > 0 {
		time.Sleep(o.Wait)
	}
	g.conn.Close()
	<-done

	r := g.report(sent, time.Duration(sendEnd-g.t0))
	switch {
	case sendErr != nil:
		return r, sendErr
	case g.recvErr != nil:
		return r, fmt.Errorf("receiving: %w", g.recvErr)
	}
	return r, ctx.Err()
}

func (o *Options) setDefaults() error {
	if !o.Target.IsValid() {
		return errors.New("no target address")
	}
	if o.Backend == nil && o.Conn == nil {
		o.Backend = conn.Default(nil)
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Size < HeaderLen || o.Size > MaxSize {
		return fmt.Errorf("payload size %d out of range [%d, %d]", o.Size, HeaderLen, MaxSize)
	}
	if o.Duration <= 0 && o.Count == 0 {
		return errors.New("neither a duration nor a count")
	}
	if o.Rate < 0 {
		return fmt.Errorf("negative rate %v", o.Rate)
	}
	if o.Batch <= 0 {
		o.Batch = defaults.BatchSize
	}
	if o.Copies <= 0 {
		o.Copies = 1
	}
	if o.Wait == 0 {
		o.Wait = DefaultWait
	}
	if o.Handshake < 0 {
		return fmt.Errorf("negative handshake timeout %v", o.Handshake)
	}
	if o.Handshake == 0 {
		o.Handshake = DefaultHandshake
	}
	return nil
}

// trackerHint is the number of sequence numbers the run is expected to
// send.
func (o *Options) trackerHint() uint64 {
	var n uint64
	switch {
	case o.Count > 0:
		n = o.Count
	case o.Rate > 0:
		n = uint64(o.Rate*o.Duration.Seconds()*1.1) + 1024
	}
	return min(n, maxTrackerHint)
}

// handshake sends initiations until the receiver has accepted a response
// and closed g.ready, or o.Handshake has passed. It returns an error when
// it gives up, ctx is done or the socket is closed.
func (g *gen) handshake(ctx context.Context) error {
	o := &g.o
	deadline := time.NewTimer(o.Handshake)
	defer deadline.Stop()
	retry := time.NewTicker(HandshakeRetry)
	defer retry.Stop()
	b := make([]byte, initiationLen)
	msg := []conn.Message{{Buf: b, N: len(b), Addr: o.Target}}
	for {
		g.hsMu.Lock()
		idx := newIndex(func(i uint32) bool { return slices.Contains(g.attempts, i) })
		// Publish before sending: the response may come back before
		// WriteBatch returns.
		g.attempts = append(g.attempts, idx)
		g.hsMu.Unlock()
		putInitiation(b, idx)
		g.initiations++
		if _, err := g.conn.WriteBatch(msg); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("sending: %w", err)
			}
			if g.sendErrors++; g.firstErr == nil {
				g.firstErr = err
			}
		}
		select {
		case <-g.ready:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-retry.C:
		case <-deadline.C:
			select {
			case <-g.ready: // it came in just in time
				return nil
			default:
			}
			err := fmt.Errorf("no handshake response from %v within %v", o.Target, o.Handshake)
			if g.firstErr != nil {
				err = fmt.Errorf("%w (sending: %v)", err, g.firstErr)
			}
			return err
		}
	}
}

// send runs the sending loop. At a fixed rate it computes how many packets
// are due from the elapsed time, sends those (one at a time at low rates,
// batches when behind or at high rates) and sleeps until the next one is
// due. It returns an error only when the socket fails for good.
func (g *gen) send(ctx context.Context) error {
	o := &g.o
	perBatch := max(1, o.Batch/o.Copies)
	bufs := make([][]byte, perBatch)
	for i := range bufs {
		bufs[i] = make([]byte, o.Size)
	}
	msgs := make([]conn.Message, perBatch*o.Copies)
	end := int64(1<<63 - 1)
	if o.Duration > 0 {
		end = g.t0 + int64(o.Duration)
	}
	interval := int64(o.SeriesInterval)
	ctxDone := ctx.Done()
	var timer *time.Timer
	var seq uint64
	for {
		select {
		case <-ctxDone:
			return nil
		default:
		}
		now := Now()
		if now >= end || (o.Count > 0 && seq >= o.Count) {
			return nil
		}
		n := uint64(perBatch)
		if o.Count > 0 {
			n = min(n, o.Count-seq)
		}
		if o.Rate > 0 {
			// Packet i is due at t0 + i/Rate.
			due := uint64(float64(now-g.t0)*o.Rate/1e9) + 1
			if due <= seq {
				next := min(g.t0+int64(float64(seq)*1e9/o.Rate), end)
				d := time.Duration(next - now)
				if d <= coarseSleep {
					sleepPrecise(d)
					continue
				}
				// A Go timer can overshoot by a millisecond: wake
				// early and finish with sleepPrecise.
				d -= coarseSleep / 2
				if timer == nil {
					timer = time.NewTimer(d)
					defer timer.Stop()
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-ctxDone:
					return nil
				}
				continue
			}
			n = min(n, due-seq)
		}
		if interval > 0 {
			for k := (now - g.t0) / interval; int64(len(g.starts)) <= k; {
				g.starts = append(g.starts, seq)
			}
		}
		for i := range int(n) {
			b := bufs[i]
			Put(b, Header{Index: g.remote, Seq: seq + uint64(i), Sent: now})
			for c := range o.Copies {
				msgs[i*o.Copies+c] = conn.Message{Buf: b, N: len(b), Addr: o.Target}
			}
		}
		// Publish before sending: an echo may come back before
		// WriteBatch returns.
		seq += n
		g.issued.Store(seq)
		if err := g.write(msgs[:int(n)*o.Copies]); err != nil {
			return err
		}
	}
}

// write sends msgs, skipping datagrams the socket refuses. It returns an
// error only when the socket is closed.
func (g *gen) write(msgs []conn.Message) error {
	for len(msgs) > 0 {
		k, err := g.conn.WriteBatch(msgs)
		g.datagrams += uint64(k)
		if err == nil {
			return nil
		}
		if errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("sending: %w", err)
		}
		if g.sendErrors++; g.firstErr == nil {
			g.firstErr = err
		}
		msgs = msgs[k+1:]
	}
	return nil
}

// receive reads echoes until the socket is closed, recording the round-trip
// time of each first copy.
func (g *gen) receive() {
	o := &g.o
	msgs := make([]conn.Message, o.Batch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, max(o.Size, 2048))
	}
	for {
		n, err := g.conn.ReadBatch(msgs)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				g.recvErr = err
			}
			return
		}
		g.arrived(msgs[:n], Now())
	}
}

// arrived accounts for a batch of datagrams received at now.
func (g *gen) arrived(msgs []conn.Message, now int64) {
	if !g.established {
		// Nothing but the response can be ours: no data was sent.
		for i := range msgs {
			if m := &msgs[i]; m.Truncated || !g.response(m.Buf[:m.N], now) {
				g.foreign++
			}
		}
		return
	}
	issued := g.issued.Load()
	var iv *rxInterval
	if interval := int64(g.o.SeriesInterval); interval > 0 {
		k := int((now - g.t0) / interval)
		for len(g.rx) <= k {
			g.rx = append(g.rx, rxInterval{})
		}
		iv = &g.rx[k]
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Truncated {
			g.foreign++
			continue
		}
		h, err := Decode(m.Buf[:m.N])
		if err != nil {
			if !g.response(m.Buf[:m.N], now) {
				g.foreign++
			}
			continue
		}
		if h.Index != g.local || h.Seq >= issued {
			g.foreign++
			continue
		}
		switch g.tr.Add(h.Seq) {
		case Duplicate, OutOfRange:
			continue
		}
		rtt := now - h.Sent
		g.hist.Record(rtt)
		if iv != nil {
			iv.received++
			iv.rttSum += rtt
			iv.rttMax = max(iv.rttMax, rtt)
		}
	}
}

// response reports whether b is a handshake response to one of the
// initiations sent. The first completes the handshake; copies and answers
// to other attempts that follow it are ignored.
func (g *gen) response(b []byte, now int64) bool {
	s, r, ok := parseResponse(b)
	if !ok {
		return false
	}
	g.hsMu.Lock()
	ours := slices.Contains(g.attempts, r)
	g.hsMu.Unlock()
	if !ours {
		return false
	}
	if !g.established {
		g.established = true
		g.local, g.remote, g.t0 = r, s, now
		close(g.ready)
	}
	return true
}

// report builds the Report once both loops have finished.
func (g *gen) report(sent uint64, d time.Duration) *Report {
	o := &g.o
	r := &Report{
		RunID:      g.local,
		PeerIndex:  g.remote,
		Handshakes: g.initiations,
		Target:     o.Target.String(),
		Size:       o.Size,
		Copies:     o.Copies,
		Rate:       o.Rate,
		Sent:       sent,
		Datagrams:  g.datagrams,
		SendErrors: g.sendErrors,
		Received:   g.tr.Received,
		Duplicates: g.tr.Duplicates,
		Reordered:  g.tr.Reordered,
		Lost:       sent - g.tr.Count(0, sent),
		Foreign:    g.foreign,
		Duration:   d,
	}
	if o.Backend != nil {
		r.Backend = o.Backend.Name()
	}
	if g.firstErr != nil {
		r.FirstError = g.firstErr.Error()
	}
	if g.established {
		r.HandshakeTime = time.Duration(g.t0 - g.hsStart)
	}
	if sent > 0 {
		r.LossPercent = 100 * float64(r.Lost) / float64(sent)
	}
	if s := d.Seconds(); s > 0 {
		r.OfferedPPS = float64(sent) / s
		r.DeliveredPPS = float64(r.Received) / s
		r.DeliveredGbps = float64(r.Received) * float64(o.Size) * 8 / s / 1e9
	}
	h := &g.hist
	r.RTTP50 = us(h.Quantile(0.50))
	r.RTTP90 = us(h.Quantile(0.90))
	r.RTTP99 = us(h.Quantile(0.99))
	r.RTTP999 = us(h.Quantile(0.999))
	r.RTTMax = us(h.Max())
	r.RTTMin = us(h.Min())
	r.RTTMean = h.Mean() / 1e3
	if o.SeriesInterval > 0 {
		r.Series = g.series(sent)
	}
	return r
}

// series joins the sender's and the receiver's per-interval records.
func (g *gen) series(sent uint64) []Interval {
	n := max(len(g.starts), len(g.rx))
	out := make([]Interval, n)
	bound := func(k int) uint64 {
		if k < len(g.starts) {
			return g.starts[k]
		}
		return sent
	}
	for k := range out {
		lo, hi := bound(k), bound(k+1)
		iv := Interval{
			Start: time.Duration(k) * g.o.SeriesInterval,
			Sent:  hi - lo,
			Lost:  hi - lo - g.tr.Count(lo, hi),
		}
		if k < len(g.rx) && g.rx[k].received > 0 {
			x := g.rx[k]
			iv.Received = x.received
			iv.RTTMax = us(x.rttMax)
			iv.RTTMean = float64(x.rttSum) / float64(x.received) / 1e3
		}
		out[k] = iv
	}
	return out
}

// us converts nanoseconds to microseconds.
func us(ns int64) float64 { return float64(ns) / 1e3 }
