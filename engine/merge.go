package engine

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// merge keeps the packets that several receive loops hand one destination
// in one order: the client's links all feed WireGuard, a session's client
// addresses all feed its socket to WireGuard.
//
// Each link delivers a session's messages in counter order, and the first
// copies of a merge of in-order streams are themselves in order, provided
// the duplicate filter judges the batches in the order they are written
// out. Two loops filtering and writing at the same time break that: they
// split a run of counters between them (each wins some of the
// compare-and-swaps) and their two writes interleave, which TCP inside
// the tunnel takes for loss. So a merge lets one loop at a time run the
// handlers (filter and write), and never makes another wait for it: a
// loop that finds the merge busy queues its batch, with a reference to
// each buffer, and the busy one runs it before it leaves. Every batch a
// loop hands over is handled before that loop's next one, so each link's
// order is kept; what changes hands is a few pointers, not a wake-up.
//
// Out of order then comes only from loss: a message lost on the fastest
// link and delivered by a slower one arrives after the later ones did.
type merge struct {
	busy atomic.Bool // some loop is running handlers
	// q holds the batches handed over; it, and the scratch the loop that
	// empties it uses, exist from the first time two loops meet (a
	// server's sessions with one address never need one).
	once  sync.Once
	q     atomic.Pointer[ring.MPMC[mergeItem]]
	batch int            // the role's batch size: set before the first run
	bufs  []*ring.Packet // scratch of whoever holds busy
	msgs  []conn.Message

	// Handed counts the batches a loop queued for another to run.
	Handed atomic.Uint64
}

// mergeInput is one receive loop's way into a merge: its handler, which
// is what the merge runs for its batches.
type mergeInput struct {
	handle func([]*ring.Packet, []conn.Message)
}

type mergeItem struct {
	b  *ring.Packet
	m  conn.Message
	in *mergeInput
}

// mergeQueueBatches is how many batches a merge's queue holds.
const mergeQueueBatches = 4

// run hands one batch from in to the merge: it runs in.handle now, or
// queues the batch for the loop that is running handlers. Either way the
// batch has been or will be handled before any later batch of any input,
// and the caller keeps its references (a queued buffer holds one more
// until it is handled).
func (mg *merge) run(in *mergeInput, bufs []*ring.Packet, msgs []conn.Message) {
	if mg.busy.CompareAndSwap(false, true) {
		mg.drain() // what others queued came first
		if q := mg.q.Load(); q == nil || q.Len() == 0 {
			in.handle(bufs, msgs)
			mg.leave()
			return
		}
		// A push is still between its claim and its publish: this
		// loop's own earlier batch may be behind it, so this one
		// queues too, and the pusher runs them all.
		mg.busy.Store(false)
	}
	q := mg.queue()
	mg.Handed.Add(1)
	for i := range bufs {
		bufs[i].Ref(1)
		it := mergeItem{b: bufs[i], m: msgs[i], in: in}
		for !q.Push(it) {
			// A whole queue behind: help, or let the busy loop run.
			if mg.busy.CompareAndSwap(false, true) {
				mg.drain()
				mg.leave()
				continue
			}
			runtime.Gosched()
		}
	}
	// The busy loop may have left before the last push: then nobody
	// else would run the batch.
	if mg.busy.CompareAndSwap(false, true) {
		mg.drain()
		mg.leave()
	}
}

// queue returns the queue, making it the first time.
func (mg *merge) queue() *ring.MPMC[mergeItem] {
	mg.once.Do(func() {
		mg.bufs = make([]*ring.Packet, mg.batch)
		mg.msgs = make([]conn.Message, mg.batch)
		mg.q.Store(ring.NewMPMC[mergeItem](mergeQueueBatches * mg.batch))
	})
	return mg.q.Load()
}

// leave gives busy up, taking it back while batches are queued: a loop
// may have queued one after the last drain, and seen busy still held. A
// drain that runs nothing is stuck behind a push between its claim and
// its publish, and that pusher tries busy once it has published.
func (mg *merge) leave() {
	for {
		mg.busy.Store(false)
		q := mg.q.Load()
		if q == nil || q.Len() == 0 || !mg.busy.CompareAndSwap(false, true) {
			return
		}
		if !mg.drain() {
			mg.busy.Store(false)
			return
		}
	}
}

// drain runs the queued batches, in the order they were queued, each
// input's consecutive datagrams as one batch, and reports whether it ran
// any. Only the holder of busy calls it.
func (mg *merge) drain() bool {
	q := mg.q.Load()
	if q == nil {
		return false
	}
	ran := false
	n := 0
	var cur *mergeInput
	for {
		it, ok := q.Pop()
		if !ok {
			break
		}
		ran = true
		if n > 0 && (it.in != cur || n == len(mg.bufs)) {
			mg.handle(cur, n)
			n = 0
		}
		cur = it.in
		mg.bufs[n], mg.msgs[n] = it.b, it.m
		n++
	}
	if n > 0 {
		mg.handle(cur, n)
	}
	return ran
}

// handle runs in's handler on the first n scratch slots, then drops the
// queue's reference of each buffer.
func (mg *merge) handle(in *mergeInput, n int) {
	in.handle(mg.bufs[:n], mg.msgs[:n])
	for i := range n {
		mg.bufs[i].Release()
	}
	clear(mg.bufs[:n])
	clear(mg.msgs[:n])
}
