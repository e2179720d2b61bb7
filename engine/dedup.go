package engine

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// The duplicate filter drops the copies of a WireGuard transport message
// after the first, before they cost WireGuard a decryption each (it would
// drop them too, as replays), and measures the links on the way: which one
// delivered a message first, how late the others' copies came, and which
// never delivered one that another did.
//
// It is fed only what belongs to a session: on the server, datagrams from
// the session's member addresses, and only messages whose receiver index
// WireGuard itself handed out (learn). An index it does not know is not
// judged; so an attacker who is not a member, or who does not know the
// index, cannot mark a counter as seen.
//
// Its errors are in the safe direction only: a datagram it cannot judge
// (not WireGuard's, an unknown index, a counter older than the window or
// too far ahead of it) passes, and WireGuard judges it; a first copy is
// never dropped.

const (
	// windowSlots × 32 counters is the window: 8192 counters, the size of
	// WireGuard's own (more than any link's lead over another, at any
	// rate this machine reaches).
	windowSlots = 256
	windowSize  = windowSlots * 32
	// maxAhead is how far ahead of the highest counter seen a counter is
	// still recorded. Further ahead, the message passes unrecorded: a
	// forged counter far ahead must not push the window past the real
	// flow. Real counters advance one by one.
	maxAhead = windowSize
	// indexesPerSession is how many receiver indexes a session's filter
	// knows at once: a WireGuard peer has at most three key pairs (the
	// current, the previous and the next), each with its own index.
	indexesPerSession = 3
)

// window is the counters seen of one receiver index. Each slot packs a
// 32-counter block number (its low 32 bits) in its high half and that
// block's seen-bitmap in its low half, so that a slot moves to a newer
// block and records a counter in one compare-and-swap: no goroutine can
// ever see a new block with an old block's bits (which would drop a first
// copy).
type window struct {
	index   uint32
	highest atomic.Uint64 // the highest counter recorded
	slots   [windowSlots]atomic.Uint64
	samples [sampleSlots]atomic.Uint64
	paths   *paths
}

// seen records counter, delivered by path (-1: unknown) at now (nanotime),
// and reports whether it was recorded before, so this is a copy.
func (w *window) seen(counter uint64, path int, now int64) bool {
	for {
		// Differences, not sums: nothing here can wrap around.
		h := w.highest.Load()
		if counter > h && counter-h > maxAhead {
			return false // too far ahead to judge: WireGuard decides
		}
		if counter < h && h-counter >= windowSize {
			return false // older than the window: WireGuard decides
		}
		if counter <= h || w.highest.CompareAndSwap(h, counter) {
			break
		}
	}
	if counter%sampleEvery == 0 && w.paths != nil {
		w.sample(counter, path, now)
	}
	blk := counter >> 5
	tag := uint32(blk)
	bit := uint64(1) << (counter & 31)
	slot := &w.slots[blk%windowSlots]
	for {
		old := slot.Load()
		switch otag := uint32(old >> 32); {
		case otag == tag && old != 0:
			if old&bit != 0 {
				return true
			}
			if slot.CompareAndSwap(old, old|bit) {
				return false
			}
		case old == 0 || int32(tag-otag) > 0:
			// The slot is empty or holds an older block: it now holds
			// ours, with only this counter seen. (The counter is within
			// the window of the highest, so a slot's block can be
			// compared as a 32-bit difference: blocks 2^31 apart are
			// never both in it.)
			if slot.CompareAndSwap(old, uint64(tag)<<32|bit) {
				return false
			}
		default:
			// The slot holds a newer block: this counter is older than
			// the window. Let WireGuard decide.
			return false
		}
	}
}

// windows is the duplicate filter of one session (the client has one): a
// window for each of the receiver indexes WireGuard uses now.
type windows struct {
	w     [indexesPerSession]atomic.Pointer[window]
	paths paths

	mu   sync.Mutex // serialises learn
	next int        // the slot learn replaces next
}

// learn makes the filter judge transport messages for index, forgetting the
// oldest index it knew (slow path: once per WireGuard handshake).
func (ws *windows) learn(index uint32) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for i := range ws.w {
		if w := ws.w[i].Load(); w != nil && w.index == index {
			return
		}
	}
	// A fresh window, never a reused one: a goroutine still recording
	// into the old one must not mark counters of the new index.
	ws.w[ws.next].Store(&window{index: index, paths: &ws.paths})
	ws.next = (ws.next + 1) % len(ws.w)
}

// knows reports whether the filter judges index.
func (ws *windows) knows(index uint32) bool { return ws.find(index) != nil }

func (ws *windows) find(index uint32) *window {
	for i := range ws.w {
		if w := ws.w[i].Load(); w != nil && w.index == index {
			return w
		}
	}
	return nil
}

// indexes returns the indexes judged now, newest first.
func (ws *windows) indexes() []uint32 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var out []uint32
	for i := range ws.w {
		if w := ws.w[(ws.next+len(ws.w)-1-i)%len(ws.w)].Load(); w != nil {
			out = append(out, w.index)
		}
	}
	return out
}

// copy reports whether every datagram in m is a copy of one seen before.
// A train (from GRO) is a copy only if all of its datagrams are: a train
// mixing first copies and copies goes on whole, and WireGuard drops the
// copies in it.
func (ws *windows) copy(m *conn.Message, path int, now int64) bool {
	if m.Seg <= 0 || m.Seg >= m.N {
		idx, ctr, ok := wgTransport(m.Buf[:m.N])
		if !ok {
			return false
		}
		w := ws.find(idx)
		return w != nil && w.seen(ctr, path, now)
	}
	all := true
	var w *window
	for off := 0; off < m.N; off += m.Seg {
		idx, ctr, ok := wgTransport(m.Buf[off:min(off+m.Seg, m.N)])
		if ok && (w == nil || w.index != idx) {
			w = ws.find(idx)
		}
		if !ok || w == nil || !w.seen(ctr, path, now) {
			all = false // keep recording the others: this train carries them
		}
	}
	return all
}

// filter moves the messages of bufs that carry a first copy to the front,
// with their buffers, and returns how many there are; the copies stay
// behind them (still owned by the caller) and are counted in dups. path is
// the link or client address they came by, for the quality figures.
func (ws *windows) filter(bufs []*ring.Packet, msgs []conn.Message, path int, dups *atomic.Uint64) int {
	k := 0
	var dropped uint64
	for i := range msgs {
		if ws.copy(&msgs[i], path, bufs[i].Stamp) {
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

// Link quality is measured on a sample of the counters: one in
// sampleEvery. Each sample slot packs the sample's tag (its counter over
// sampleEvery·sampleSlots, 24 bits), which paths delivered it (8 bits) and
// when the first copy came (32 bits of microseconds), so that one
// compare-and-swap records a copy. A sample is judged when a newer one
// takes its slot, sampleSlots samples (4096 counters) later: a path that
// was live then and had not delivered it lost it.
const (
	sampleEvery = 16
	sampleSlots = 256
	maxPaths    = 8
)

// paths are the links (client) or member addresses (server) of a session,
// as the duplicate filter counts them: each has a number below maxPaths.
type paths struct {
	q    [maxPaths]atomic.Pointer[pathQuality]
	live atomic.Uint32 // bit i: path i is live and expected to deliver
}

func (w *window) sample(counter uint64, path int, now int64) {
	pos := counter / sampleEvery
	tag := uint32(pos/sampleSlots) & 0xffffff
	slot := &w.samples[pos%sampleSlots]
	us := uint32(now / 1e3)
	var bit uint64
	if path >= 0 && path < maxPaths {
		bit = 1 << (32 + path)
	}
	for {
		old := slot.Load()
		if old != 0 && uint32(old>>40) == tag {
			if old&bit != 0 || bit == 0 {
				return // the same path twice, or an unknown path
			}
			if slot.CompareAndSwap(old, old|bit) {
				if q := w.paths.q[path].Load(); q != nil {
					q.copyLate(time.Duration(us-uint32(old)) * time.Microsecond)
				}
				return
			}
			continue
		}
		if old != 0 && int32(tag<<8-uint32(old>>40)<<8) < 0 {
			return // the slot holds a newer sample
		}
		if slot.CompareAndSwap(old, uint64(tag)<<40|bit|uint64(us)) {
			if old != 0 {
				w.judge(uint8(old >> 32))
			}
			if q := w.pathQ(path); q != nil {
				q.first.Add(1)
			}
			return
		}
	}
}

func (w *window) pathQ(path int) *pathQuality {
	if path < 0 || path >= maxPaths {
		return nil
	}
	return w.paths.q[path].Load()
}

// judge counts a sample that leaves the window, delivered by the paths in
// mask: for every live path, a sample, and a loss if it did not deliver.
func (w *window) judge(mask uint8) {
	live := uint8(w.paths.live.Load())
	for m := live | mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros8(m)
		q := w.paths.q[i].Load()
		if q == nil {
			continue
		}
		q.samples.Add(1)
		if mask&(1<<i) == 0 {
			q.lost.Add(1)
		}
	}
}

// pathQuality is what one path's copies did, counted on samples.
type pathQuality struct {
	samples atomic.Uint64 // judged samples of its session while it was live or delivered
	first   atomic.Uint64 // samples it delivered first
	lost    atomic.Uint64 // samples it never delivered (another path did)
	copies  atomic.Uint64 // samples it delivered after another path
	late    [lateBuckets]atomic.Uint64
}

// Lateness histogram: four buckets per power of two of microseconds, up to
// 2^31 µs.
const lateBuckets = 4 * 32

func lateBucket(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < 4 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1))
	m := (us >> (e - 2)) & 3
	return min(lateBuckets-1, 4*(e-1)+int(m))
}

// lateBucketTop returns the largest lateness bucket b holds.
func lateBucketTop(b int) time.Duration {
	if b < 4 {
		return time.Duration(b) * time.Microsecond
	}
	e := b/4 + 1
	m := uint64(b % 4)
	top := (uint64(4)+m+1)<<(e-2) - 1
	return time.Duration(top) * time.Microsecond
}

func (q *pathQuality) copyLate(d time.Duration) {
	q.copies.Add(1)
	q.late[lateBucket(d)].Add(1)
}

// Quality is how one link (client) or client address (server) delivers
// its session's WireGuard transport messages, measured on one message in
// 16 and counted since the link or address appeared.
type Quality struct {
	// Samples is how many sampled messages of the session were judged
	// while the link was live (or that it delivered).
	Samples uint64
	// First is how many of them it delivered before any other link;
	// Lost how many it never delivered although another link did.
	First, Lost uint64
	// Copies is how many it delivered after another link; LateP50 and
	// LateP99 are how far behind the first those copies came (zero when
	// there were none).
	Copies           uint64
	LateP50, LateP99 time.Duration
}

// FirstShare is the share of the sampled messages this link delivered
// first, from 0 to 1 (0 with no samples).
func (q Quality) FirstShare() float64 {
	if q.Samples == 0 {
		return 0
	}
	return min(1, float64(q.First)/float64(q.Samples))
}

// LossRate is the share of the sampled messages this link never
// delivered, from 0 to 1.
func (q Quality) LossRate() float64 {
	if q.Samples == 0 {
		return 0
	}
	return min(1, float64(q.Lost)/float64(q.Samples))
}

func (q *pathQuality) read() Quality {
	if q == nil {
		return Quality{}
	}
	out := Quality{Samples: q.samples.Load(), First: q.first.Load(), Lost: q.lost.Load(), Copies: q.copies.Load()}
	var hist [lateBuckets]uint64
	var total uint64
	for i := range hist {
		hist[i] = q.late[i].Load()
		total += hist[i]
	}
	if total == 0 {
		return out
	}
	out.LateP50 = percentile(hist[:], total, 0.50)
	out.LateP99 = percentile(hist[:], total, 0.99)
	return out
}

func percentile(hist []uint64, total uint64, p float64) time.Duration {
	rank := uint64(p*float64(total-1)) + 1
	var sum uint64
	for i, n := range hist {
		sum += n
		if sum >= rank {
			return lateBucketTop(i)
		}
	}
	return lateBucketTop(len(hist) - 1)
}
