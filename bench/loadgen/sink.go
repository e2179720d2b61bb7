package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
)

// Mode says what a Sink sends back.
type Mode uint8

// Sink modes.
const (
	// ModeFirst echoes the first copy of each sequence number of a run and
	// drops the others, as WireGuard drops replayed packets. It is the
	// default.
	ModeFirst Mode = iota
	// ModeAll echoes every copy.
	ModeAll
	// ModeCount echoes nothing and only counts.
	ModeCount
)

var modeNames = [...]string{ModeFirst: "first", ModeAll: "all", ModeCount: "count"}

// String returns the mode's name: "first", "all" or "count".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// ParseMode returns the mode called s.
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if s == name {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("unknown sink mode %q (want first, all or count)", s)
}

// MarshalText encodes the mode as its name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText decodes a mode name.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err == nil {
		*m = v
	}
	return err
}

// DefaultSinkBufSize is the default receive buffer of a Sink, per datagram:
// the largest UDP payload, so that nothing is truncated.
const DefaultSinkBufSize = 65535

// maxSinkRuns is how many runs a Sink tracks at once; the least recently
// seen is forgotten to make room for a new one.
const maxSinkRuns = 16

// SinkOptions configures a Sink.
type SinkOptions struct {
	// Mode says what to echo; the zero value is ModeFirst.
	Mode Mode
	// Backend opens the socket; nil picks NewBackend("").
	Backend conn.Backend
	// Batch is the number of datagrams moved per system call; 0 means
	// defaults.BatchSize.
	Batch int
	// BufSize is the receive buffer per datagram; 0 means
	// DefaultSinkBufSize. Longer datagrams are counted as truncated and
	// dropped.
	BufSize int
	// GSO lets the socket send runs of equal-sized echoes to one peer as
	// UDP GSO trains.
	GSO bool
}

// Sink receives load generator datagrams, counts them per run and echoes
// them to their source according to its Mode. Datagrams without the magic
// are counted as foreign and dropped. Statistics may be read while it runs.
type Sink struct {
	conn    conn.Conn
	mode    Mode
	batch   int
	bufSize int
	start   time.Time
	closed  atomic.Bool

	// Counters, updated once per batch.
	received, unique, duplicates, reordered atomic.Uint64
	echoed, foreign, truncated, outOfRange  atomic.Uint64
	echoErrors, runCount                    atomic.Uint64

	errMu    sync.Mutex
	firstErr string // the first echo error; guarded by errMu

	// Owned by Serve.
	runs  map[uint32]*sinkRun
	cur   *sinkRun // the run of the last datagram, a shortcut past the map
	curID uint32
	clock uint64 // batches read
}

type sinkRun struct {
	t    *Tracker
	last uint64 // Sink.clock when last seen
}

// NewSink opens a socket bound to laddr (port 0 picks a free port) for a
// Sink. Call Serve to run it and Close to stop it.
func NewSink(laddr netip.AddrPort, o SinkOptions) (*Sink, error) {
	if o.Mode > ModeCount {
		return nil, fmt.Errorf("invalid sink mode %d", o.Mode)
	}
	be := o.Backend
	if be == nil {
		be = conn.Default(nil)
	}
	batch := o.Batch
	if batch <= 0 {
		batch = defaults.BatchSize
	}
	bufSize := o.BufSize
	if bufSize <= 0 {
		bufSize = DefaultSinkBufSize
	}
	conn, err := be.Listen(laddr, conn.SocketOptions{BatchSize: batch, GSO: o.GSO})
	if err != nil {
		return nil, fmt.Errorf("listening on %v: %w", laddr, err)
	}
	return &Sink{
		conn:    conn,
		mode:    o.Mode,
		batch:   batch,
		bufSize: bufSize,
		start:   time.Now(),
		runs:    make(map[uint32]*sinkRun),
	}, nil
}

// Addr returns the address the sink listens on.
func (s *Sink) Addr() netip.AddrPort { return s.conn.LocalAddr() }

// Close stops the sink: Serve returns nil.
func (s *Sink) Close() error {
	s.closed.Store(true)
	return s.conn.Close()
}

// sinkCounts are one batch's counts, added to the Sink's atomics at once.
type sinkCounts struct {
	received, unique, duplicates, reordered uint64
	foreign, truncated, outOfRange          uint64
}

// Serve receives and echoes until Close, then returns nil; it returns an
// error when receiving fails otherwise. Call it once.
func (s *Sink) Serve() error {
	msgs := make([]conn.Message, s.batch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, s.bufSize)
	}
	out := make([]conn.Message, 0, s.batch)
	for {
		n, err := s.conn.ReadBatch(msgs)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("receiving: %w", err)
		}
		out = s.handle(msgs[:n], out[:0])
		if err := s.echo(out); err != nil {
			return nil // closed while sending
		}
	}
}

// handle counts a batch of received datagrams and appends the echoes due to
// out, pointing at the received buffers.
func (s *Sink) handle(msgs, out []conn.Message) []conn.Message {
	s.clock++
	if s.cur != nil {
		s.cur.last = s.clock
	}
	var c sinkCounts
	for i := range msgs {
		m := &msgs[i]
		if m.Truncated {
			c.truncated++
			continue
		}
		h, err := Decode(m.Buf[:m.N])
		if err != nil {
			c.foreign++
			continue
		}
		c.received++
		if s.cur == nil || h.Run != s.curID {
			s.cur, s.curID = s.run(h.Run), h.Run
		}
		v := s.cur.t.Add(h.Seq)
		switch v {
		case InOrder:
			c.unique++
		case Reordered:
			c.unique++
			c.reordered++
		case Duplicate:
			c.duplicates++
		case OutOfRange:
			c.outOfRange++
			continue
		}
		if s.mode == ModeAll || (s.mode == ModeFirst && v != Duplicate) {
			out = append(out, conn.Message{Buf: m.Buf, N: m.N, Addr: m.Addr})
		}
	}
	s.add(&c)
	return out
}

// run returns the state of run id, making room for it if it is new.
func (s *Sink) run(id uint32) *sinkRun {
	r := s.runs[id]
	if r == nil {
		if len(s.runs) >= maxSinkRuns {
			var oldID uint32
			var oldest *sinkRun
			for rid, x := range s.runs {
				if oldest == nil || x.last < oldest.last {
					oldID, oldest = rid, x
				}
			}
			delete(s.runs, oldID)
		}
		r = &sinkRun{t: NewTracker(0)}
		s.runs[id] = r
		s.runCount.Add(1)
	}
	r.last = s.clock
	return r
}

func (s *Sink) add(c *sinkCounts) {
	s.received.Add(c.received)
	s.unique.Add(c.unique)
	s.duplicates.Add(c.duplicates)
	s.reordered.Add(c.reordered)
	s.foreign.Add(c.foreign)
	s.truncated.Add(c.truncated)
	s.outOfRange.Add(c.outOfRange)
}

// echo sends out, skipping datagrams that cannot be sent. It returns
// net.ErrClosed once the socket is closed.
func (s *Sink) echo(out []conn.Message) error {
	for len(out) > 0 {
		k, err := s.conn.WriteBatch(out)
		s.echoed.Add(uint64(k))
		if err == nil {
			return nil
		}
		if s.closed.Load() || errors.Is(err, net.ErrClosed) {
			return net.ErrClosed
		}
		if s.echoErrors.Add(1) == 1 {
			s.errMu.Lock()
			s.firstErr = fmt.Sprintf("echoing to %v: %v", out[k].Addr, err)
			s.errMu.Unlock()
		}
		out = out[k+1:]
	}
	return nil
}

// SinkStats is a snapshot of a Sink's counters.
type SinkStats struct {
	// Mode is the sink's mode.
	Mode Mode `json:"mode"`
	// Listen is the address the sink listens on.
	Listen string `json:"listen"`
	// Duration is the time since the sink opened its socket.
	Duration time.Duration `json:"duration_ns"`
	// Received counts load generator datagrams, copies included.
	Received uint64 `json:"received"`
	// Unique counts distinct (run, sequence number) pairs.
	Unique uint64 `json:"unique"`
	// Duplicates counts copies of a pair already received.
	Duplicates uint64 `json:"duplicates"`
	// Reordered counts pairs that arrived after a higher sequence number
	// of the same run.
	Reordered uint64 `json:"reordered"`
	// Echoed counts datagrams sent back.
	Echoed uint64 `json:"echoed"`
	// EchoErrors counts datagrams that could not be sent back.
	EchoErrors uint64 `json:"echo_errors"`
	// FirstError describes the first echo error.
	FirstError string `json:"first_error,omitempty"`
	// Foreign counts datagrams without the magic; they are dropped.
	Foreign uint64 `json:"foreign"`
	// Truncated counts datagrams longer than the receive buffer; they are
	// dropped.
	Truncated uint64 `json:"truncated"`
	// OutOfRange counts datagrams whose sequence number was implausibly
	// far ahead (see MaxJump); they are dropped.
	OutOfRange uint64 `json:"out_of_range"`
	// Runs counts the generator runs seen.
	Runs uint64 `json:"runs"`
}

// Stats returns the sink's counters. It may be called while Serve runs.
func (s *Sink) Stats() SinkStats {
	st := SinkStats{
		Mode:       s.mode,
		Listen:     s.Addr().String(),
		Duration:   time.Since(s.start),
		Received:   s.received.Load(),
		Unique:     s.unique.Load(),
		Duplicates: s.duplicates.Load(),
		Reordered:  s.reordered.Load(),
		Echoed:     s.echoed.Load(),
		EchoErrors: s.echoErrors.Load(),
		Foreign:    s.foreign.Load(),
		Truncated:  s.truncated.Load(),
		OutOfRange: s.outOfRange.Load(),
		Runs:       s.runCount.Load(),
	}
	s.errMu.Lock()
	st.FirstError = s.firstErr
	s.errMu.Unlock()
	return st
}
