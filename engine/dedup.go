package engine

import (
	"sync/atomic"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// dedup drops the copies of a WireGuard transport message after the first,
// before they cost WireGuard a decryption each (it would drop them too, as
// replays). It keeps, per session index, a window of the counters seen
// recently, like WireGuard's own replay window (RFC 6479's layout). It is
// safe for concurrent use without locks: every link's receive loop checks
// the same sessions.
//
// Its errors are in the safe direction only: a datagram it cannot judge
// (not WireGuard's, a counter older than the window, a session it had to
// forget) passes, and WireGuard judges it; a first copy is never dropped.
type dedup struct {
	sessions [dedupSessions]atomic.Pointer[dedupSession]
}

const (
	// dedupSessions is how many session indexes are tracked at once: a
	// WireGuard peer has at most three sessions (current, previous, next),
	// and the server sees one peer per engarde client.
	dedupSessions = 32
	// dedupSlots × 32 counters is the window: 8192 counters, the size of
	// WireGuard's own (more than any link's lead over another, at any
	// rate this machine reaches).
	dedupSlots = 256
)

// dedupSession is the window of one session index. Each slot packs a
// 32-counter block number in its high half and that block's seen-bitmap in
// its low half, so that a slot moves to a newer block and records a
// counter in one compare-and-swap: no goroutine can ever see a new block
// with an old block's bits (which would drop a first copy).
type dedupSession struct {
	index uint32
	slots [dedupSlots]atomic.Uint64
}

// seen records a transport message's counter and reports whether it was
// recorded before (so this one is a copy).
func (d *dedup) seen(index uint32, counter uint64) bool {
	s := d.session(index)
	blk := uint32(counter >> 5) // block numbers wrap after 2^37 messages: compared as a difference
	bit := uint64(1) << (counter & 31)
	slot := &s.slots[blk%dedupSlots]
	for {
		w := slot.Load()
		switch tag := uint32(w >> 32); {
		case tag == blk && w != 0:
			if w&bit != 0 {
				return true
			}
			if slot.CompareAndSwap(w, w|bit) {
				return false
			}
		case w == 0 || int32(blk-tag) > 0:
			// The slot is empty or holds an older block: it now holds
			// ours, with only this counter seen.
			if slot.CompareAndSwap(w, uint64(blk)<<32|bit) {
				return false
			}
		default:
			// The slot holds a newer block: this counter is older than
			// the window. Let WireGuard decide.
			return false
		}
	}
}

// session finds or creates the window of a session index. The table is
// open-addressed from the index's hash: every goroutine looking for an
// index probes the same slots in the same order and installs a new window
// with a compare-and-swap into the first empty one, so two links that see
// a new session at the same moment end up sharing one window. New sessions
// are rare (a handshake every two minutes per peer): they allocate.
func (d *dedup) session(index uint32) *dedupSession {
	h := (index * 2654435761) >> 27 // Fibonacci hashing to 0..31
	for i := range uint32(dedupSessions) {
		slot := &d.sessions[(h+i)%dedupSessions]
		s := slot.Load()
		if s == nil {
			s = &dedupSession{index: index}
			if slot.CompareAndSwap(nil, s) {
				return s
			}
			s = slot.Load() // another goroutine filled it first
		}
		if s.index == index {
			return s
		}
	}
	// Full of other sessions: the one in this index's home slot makes
	// way (copies may pass while two goroutines race to replace it).
	s := &dedupSession{index: index}
	d.sessions[h].Store(s)
	return s
}

// copy reports whether every datagram in m is a copy of one seen before.
// A train (from GRO) is a copy only if all of its datagrams are: a train
// mixing first copies and copies goes on whole, and WireGuard drops the
// copies in it.
func (d *dedup) copy(m *conn.Message) bool {
	if m.Seg <= 0 || m.Seg >= m.N {
		idx, ctr, ok := wgTransport(m.Buf[:m.N])
		return ok && d.seen(idx, ctr)
	}
	all := true
	for off := 0; off < m.N; off += m.Seg {
		idx, ctr, ok := wgTransport(m.Buf[off:min(off+m.Seg, m.N)])
		if !ok || !d.seen(idx, ctr) {
			all = false // keep recording the others: this train carries them
		}
	}
	return all
}

// filter moves the messages that carry a first copy to the front, with
// their buffers, and returns how many there are; the copies stay behind
// them (still owned by the caller) and are counted in dups.
func (d *dedup) filter(bufs []*ring.Packet, msgs []conn.Message, dups *atomic.Uint64) int {
	k := 0
	var dropped uint64
	for i := range msgs {
		if d.copy(&msgs[i]) {
			dropped += uint64(msgs[i].Count())
			continue
		}
		if i != k {
			bufs[i], bufs[k] = bufs[k], bufs[i]
			msgs[i], msgs[k] = msgs[k], msgs[i]
		}
		k++
	}
	if dropped > 0 {
		dups.Add(dropped)
	}
	return k
}
