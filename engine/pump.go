package engine

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// pump is a receive loop: it reads batches from a Conn into pool buffers
// and hands each batch to a handler.
//
// The handler gets the filled buffers and their messages (N, Seg, Addr,
// Local; it may overwrite the messages as scratch space). It must add a
// reference (Buf.Ref) for every holder it hands a buffer to. The pump keeps
// its own reference and, after the handler returns, takes the buffer back
// when every holder is done with it already (the common case: the packet
// went out on the producer's goroutine) or a fresh one from the pool.
type pump struct {
	name   string
	conn   conn.Conn
	pool   *ring.Pool
	stats  *Stats
	log    *Logger
	handle func(bufs []*ring.Packet, msgs []conn.Message)

	// keep, on a conn.ReadWaiter, is how many buffers the loop holds on
	// to while it waits (0: none), so that a wake-up costs no trip to the
	// shared pool; budget, when set, is the role's allowance of such
	// buffers (a server has a socket or two per client, and most are
	// idle), and kept says that this loop holds keep of it.
	keep   int
	budget *atomic.Int64
	kept   bool

	// looper, when set, is asked to run the loop instead (start): the
	// uring backend receives on every socket of the role in one loop
	// and calls served.
	looper conn.Looper

	bufs   []*ring.Packet
	msgs   []conn.Message
	errLog rateLimit
	oomLog rateLimit
	quit   chan struct{}
	exited chan struct{}
}

func newPump(name string, c conn.Conn, pool *ring.Pool, batch int, stats *Stats, log *Logger, handle func([]*ring.Packet, []conn.Message)) *pump {
	return &pump{
		name:   name,
		conn:   c,
		pool:   pool,
		stats:  stats,
		log:    log,
		handle: handle,
		bufs:   make([]*ring.Packet, batch),
		msgs:   make([]conn.Message, batch),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
}

// start runs the loop: the backend's, where it has one that takes the
// Conn, else on a goroutine of its own.
func (p *pump) start() *pump {
	if p.looper != nil {
		err := p.looper.Serve(p.conn, p.pool, p.served)
		if err == nil {
			close(p.exited) // Close ends the backend's
			return p
		}
		p.log.debugf("%s: receiving on a goroutine of its own: %v", p.name, err)
	}
	go p.run()
	return p
}

// stop closes the Conn, which ends the loop, and waits for it.
func (p *pump) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.conn.Close()
	<-p.exited
}

// run loops until the Conn is closed, then returns every buffer it holds.
//
// On a conn.ReadWaiter it holds buffers only while the socket has
// something to read: idle, it waits with none, so that thousands of idle
// sockets (a server's client addresses and sessions) do not take the pool
// from the busy ones. Woken, it lends itself a few buffers (twice the last
// batch, at least minLend) and a full batch while batches keep coming full.
func (p *pump) run() {
	have := 0 // p.bufs[:have] hold buffers
	defer close(p.exited)
	defer func() {
		p.release(0, have)
		if p.kept {
			p.budget.Add(int64(p.keep))
		}
	}()
	rw, lazy := p.conn.(conn.ReadWaiter)
	want, last := len(p.bufs), len(p.bufs)
	wait := lazy // wait for the socket to be readable before reading
	for {
		if wait {
			if err := rw.WaitRead(); err != nil {
				if p.failed(err) {
					return
				}
				continue
			}
			wait = false
			want = min(len(p.bufs), max(minLend, 2*last))
		}
		for have < want {
			b := p.pool.Get()
			if b == nil {
				break
			}
			p.bufs[have] = b
			p.msgs[have].Buf = b.Data()
			have++
		}
		if have == 0 {
			// Every buffer is queued on some link; they come back as
			// links send or time out. Waiting here stalls this socket
			// only, and the socket buffer absorbs the gap.
			if p.oomLog.allow() {
				p.log.warnf("%s: packet buffer pool exhausted (%d buffers); receiving paused", p.name, p.pool.Allocated())
			}
			select {
			case <-p.quit:
				return
			case <-time.After(time.Millisecond):
			}
			continue
		}
		var n int
		var err error
		ask := have
		if lazy {
			// As many as the last batch suggests, even when it keeps more
			// buffers: each slot offered costs the read its setup.
			ask = min(have, want)
			n, err = rw.TryReadBatch(p.msgs[:ask])
		} else {
			n, err = p.conn.ReadBatch(p.msgs[:have])
		}
		if err != nil {
			if errors.Is(err, conn.ErrWouldBlock) {
				have = p.idle(have)
				wait = true
				continue
			}
			if p.failed(err) {
				return
			}
			continue
		}
		full := n == ask
		have = p.deliver(n, have)
		last = n
		if lazy && !full {
			// The read took less than it could: the queue is most
			// likely empty. Wait (with at most keep buffers) rather
			// than ask again.
			have = p.idle(have)
			wait = true
		} else {
			want = len(p.bufs)
		}
	}
}

// idle returns the buffers of slots [keep, have) to the pool before a
// wait, or all of them when the role's budget has no room for this loop's,
// and how many slots still hold one.
func (p *pump) idle(have int) int {
	if p.budget != nil && !p.kept && p.keep > 0 {
		if p.budget.Add(-int64(p.keep)) >= 0 {
			p.kept = true
		} else {
			p.budget.Add(int64(p.keep)) // full: maybe next time
		}
	}
	k := 0
	if p.kept || p.budget == nil {
		k = min(have, p.keep)
	}
	p.release(k, have)
	return k
}

// minLend is the fewest buffers a waking receive loop lends itself.
const minLend = 4

// failed handles a receive error: true when the Conn is closed and the
// loop must end.
func (p *pump) failed(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	p.stats.RxErrors.Add(1)
	if p.errLog.allow() {
		p.log.warnf("%s: receive failed: %v", p.name, err)
	}
	time.Sleep(time.Millisecond) // do not spin on a persistent error
	return false
}

// release returns the buffers of slots [from, to) to the pool.
func (p *pump) release(from, to int) {
	for i := from; i < to; i++ {
		p.bufs[i].Release()
		p.bufs[i] = nil
	}
}

// deliver hands the n messages just received (of the have slots holding
// buffers) to the handler, then takes the buffers back or replaces them. It
// returns how many slots hold buffers afterwards, packed at the front.
func (p *pump) deliver(n, have int) int {
	k := p.account(p.bufs[:n], p.msgs[:n])
	if k == 0 {
		return have
	}
	p.handle(p.bufs[:k], p.msgs[:k])
	// Take our buffers back, or replace those still in flight.
	short := false // the pool ran out: some slots below have are empty
	for i := range k {
		b := p.bufs[i]
		if !b.Reclaim() {
			if b = p.pool.Get(); b == nil {
				short = true
			}
			p.bufs[i] = b
		}
		if b != nil {
			p.msgs[i].Buf = b.Data() // the handler may have used it as scratch
		}
	}
	if !short {
		return have
	}
	j := 0
	for i := range have {
		if b := p.bufs[i]; b != nil {
			p.bufs[j] = b
			p.msgs[j].Buf = b.Data()
			j++
		}
	}
	clear(p.bufs[j:have])
	return j
}

// account counts a batch received into bufs, stamps the buffers, and moves
// the messages to hand on (all but truncated ones) to the front, returning
// how many there are.
func (p *pump) account(bufs []*ring.Packet, msgs []conn.Message) int {
	now := nanotime()
	k := 0
	var pkts, bytes uint64
	for i := range msgs {
		m := &msgs[i]
		if m.Truncated {
			p.stats.Oversize.Add(1)
			continue
		}
		b := bufs[i]
		b.N, b.Seg, b.Stamp = m.N, m.Seg, now
		pkts += uint64(m.Count())
		bytes += uint64(m.N)
		if i != k {
			bufs[i], bufs[k] = bufs[k], bufs[i]
			msgs[i], msgs[k] = msgs[k], msgs[i]
		}
		k++
	}
	p.stats.RxPackets.Add(pkts)
	p.stats.RxBytes.Add(bytes)
	p.stats.LastRx.Store(wallFromMono(now))
	return k
}

// served is the handler of a backend's loop (conn.Looper): the batch is
// counted and handed on as deliver does; the loop takes the buffers back.
func (p *pump) served(bufs []*ring.Packet, msgs []conn.Message) {
	if k := p.account(bufs, msgs); k > 0 {
		p.handle(bufs[:k], msgs[:k])
	}
}
