package loadgen

import (
	"encoding/binary"
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
	// ModeCount echoes no data and only counts; it still answers
	// handshakes.
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

// maxSinkRuns is how many sessions a Sink tracks at once. To make room for
// a new one it forgets the least recently seen of those that never carried
// data (handshakes a generator retried, or a flood of initiations), or
// else the least recently seen of all.
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

// Sink answers load generator handshakes, receives their data, counts it per
// run and echoes it to its source according to its Mode.
//
// It plays the responder's part of WireGuard's handshake, shapes only: to
// each initiation it answers with a response carrying a fresh random index
// of its own (S) and the initiation's (G); a copy of an initiation it
// already answered (the tunnel's redundant links deliver several) gets the
// same response again, one per copy received. A run is the data whose
// receiver index is S; its echoes carry G instead, as WireGuard's
// messages towards the initiator do. Data with an unknown index, and
// anything that is neither data nor an initiation, is counted as foreign
// and dropped. Statistics may be read while it runs.
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
	initiations, handshakes, responses      atomic.Uint64

	errMu    sync.Mutex
	firstErr string // the first echo error; guarded by errMu

	// Owned by Serve.
	runs    map[uint32]*sinkRun // by the sink's index S
	cur     *sinkRun            // the run of the last datagram, a shortcut past the map
	curID   uint32
	clock   uint64         // batches read
	replies []conn.Message // the handshake responses due, filled by handle
}

// sinkRun is a session: a handshake answered, and the run of data that
// follows it.
type sinkRun struct {
	t    *Tracker
	last uint64 // Sink.clock when last seen
	// peer is the generator's index G, which the echoes carry.
	peer uint32
	// addr is where the initiation came from and the response went.
	addr netip.AddrPort
	// data is set by the first data datagram; the session then counts
	// in Runs.
	data bool
	// init is the initiation, to recognise its copies; resp is the
	// response, sent again for each.
	init [initiationLen]byte
	resp [responseLen]byte
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
	c, err := be.Listen(laddr, conn.SocketOptions{BatchSize: batch, GSO: o.GSO})
	if err != nil {
		return nil, fmt.Errorf("listening on %v: %w", laddr, err)
	}
	return &Sink{
		conn:    c,
		mode:    o.Mode,
		batch:   batch,
		bufSize: bufSize,
		start:   time.Now(),
		runs:    make(map[uint32]*sinkRun),
		replies: make([]conn.Message, 0, batch),
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
	runs, initiations, handshakes           uint64
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
		// Responses first: they are older than any data in the batch.
		if err := s.send(s.replies, &s.responses); err != nil {
			return nil // closed while sending
		}
		if err := s.send(out, &s.echoed); err != nil {
			return nil // closed while sending
		}
	}
}

// handle counts a batch of received datagrams, appends the echoes due to
// out and sets s.replies to the handshake responses due; both point at the
// received buffers, an echo rewritten in place to carry the generator's
// index and a response written over its initiation.
func (s *Sink) handle(msgs, out []conn.Message) []conn.Message {
	s.clock++
	if s.cur != nil {
		s.cur.last = s.clock
	}
	s.replies = s.replies[:0]
	var c sinkCounts
	for i := range msgs {
		m := &msgs[i]
		if m.Truncated {
			c.truncated++
			continue
		}
		h, err := Decode(m.Buf[:m.N])
		if err != nil {
			if g, ok := parseInitiation(m.Buf[:m.N]); ok {
				s.answer(m, g, &c)
			} else {
				c.foreign++
			}
			continue
		}
		if s.cur == nil || h.Index != s.curID {
			r := s.runs[h.Index]
			if r == nil {
				c.foreign++ // no such session
				continue
			}
			r.last = s.clock
			s.cur, s.curID = r, h.Index
		}
		c.received++
		if !s.cur.data {
			s.cur.data = true
			c.runs++
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
			// Towards the initiator, the receiver's index is its own.
			binary.LittleEndian.PutUint32(m.Buf[4:8], s.cur.peer)
			out = append(out, conn.Message{Buf: m.Buf, N: m.N, Addr: m.Addr})
		}
	}
	s.add(&c)
	return out
}

// answer appends to s.replies the response to the initiation in m, from
// the generator's index g, writing it over the initiation. A copy of an
// initiation already answered gets the same response; a new one opens a
// session, making room for it.
func (s *Sink) answer(m *conn.Message, g uint32, c *sinkCounts) {
	c.initiations++
	in := [initiationLen]byte(m.Buf[:initiationLen])
	var r *sinkRun
	for _, x := range s.runs {
		if x.peer == g && x.init == in {
			r = x
			break
		}
	}
	if r == nil {
		c.handshakes++
		if len(s.runs) >= maxSinkRuns {
			s.evict()
		}
		id := newIndex(func(i uint32) bool { return s.runs[i] != nil })
		r = &sinkRun{t: NewTracker(0), peer: g, addr: m.Addr, init: in}
		putResponse(r.resp[:], id, g)
		s.runs[id] = r
	}
	r.last = s.clock
	n := copy(m.Buf, r.resp[:])
	s.replies = append(s.replies, conn.Message{Buf: m.Buf, N: n, Addr: m.Addr})
}

// evict forgets a session: the least recently seen of those without data,
// or else of all.
func (s *Sink) evict() {
	var id uint32
	var old *sinkRun
	for i, x := range s.runs {
		if old == nil || (old.data && !x.data) || (old.data == x.data && x.last < old.last) {
			id, old = i, x
		}
	}
	delete(s.runs, id)
	if old == s.cur {
		s.cur = nil
	}
}

func (s *Sink) add(c *sinkCounts) {
	s.received.Add(c.received)
	s.unique.Add(c.unique)
	s.duplicates.Add(c.duplicates)
	s.reordered.Add(c.reordered)
	s.foreign.Add(c.foreign)
	s.truncated.Add(c.truncated)
	s.outOfRange.Add(c.outOfRange)
	s.runCount.Add(c.runs)
	s.initiations.Add(c.initiations)
	s.handshakes.Add(c.handshakes)
}

// send sends out, counting in sent the datagrams sent and skipping those
// that cannot be. It returns net.ErrClosed once the socket is closed.
func (s *Sink) send(out []conn.Message, sent *atomic.Uint64) error {
	for len(out) > 0 {
		k, err := s.conn.WriteBatch(out)
		sent.Add(uint64(k))
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
	// Received counts the data datagrams of known sessions, copies
	// included.
	Received uint64 `json:"received"`
	// Unique counts distinct (session, sequence number) pairs.
	Unique uint64 `json:"unique"`
	// Duplicates counts copies of a pair already received.
	Duplicates uint64 `json:"duplicates"`
	// Reordered counts pairs that arrived after a higher sequence number
	// of the same run.
	Reordered uint64 `json:"reordered"`
	// Echoed counts data datagrams sent back.
	Echoed uint64 `json:"echoed"`
	// EchoErrors counts datagrams, data or responses, that could not be
	// sent back.
	EchoErrors uint64 `json:"echo_errors"`
	// FirstError describes the first echo error.
	FirstError string `json:"first_error,omitempty"`
	// Initiations counts handshake initiations received, copies included;
	// each is answered by one response.
	Initiations uint64 `json:"initiations"`
	// Handshakes counts distinct initiations answered: sessions opened.
	Handshakes uint64 `json:"handshakes"`
	// Responses counts handshake responses sent.
	Responses uint64 `json:"responses"`
	// Foreign counts datagrams that are neither initiations nor data
	// (without the magic, say) and data of unknown sessions; they are
	// dropped.
	Foreign uint64 `json:"foreign"`
	// Truncated counts datagrams longer than the receive buffer; they are
	// dropped.
	Truncated uint64 `json:"truncated"`
	// OutOfRange counts datagrams whose sequence number was implausibly
	// far ahead (see MaxJump); they are dropped.
	OutOfRange uint64 `json:"out_of_range"`
	// Runs counts the generator runs seen: the sessions that carried
	// data.
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

		Initiations: s.initiations.Load(),
		Handshakes:  s.handshakes.Load(),
		Responses:   s.responses.Load(),
	}
	s.errMu.Lock()
	st.FirstError = s.firstErr
	s.errMu.Unlock()
	return st
}
