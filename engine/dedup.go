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
	// windowSize is how many counters the window holds: 8192, the size of
	// WireGuard's own (more than any link's lead over another, at any
	// rate this machine reaches).
	windowSize = 8192
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

// window is the counters seen of one receiver index. Each counter's slot
// holds which window-sized block it belongs to (16 bits) and a fingerprint
// of the message (15 bits of its authentication tag, and a bit that makes
// the slot non-zero), so that one compare-and-swap records a counter and
// no goroutine ever sees a new block with an old block's fingerprint.
//
// The fingerprint is what keeps the filter from being poisoned by someone
// who sees a link: the copies of one WireGuard message are the same bytes
// on every link, and a forgery with the right index and counter, whatever
// its source, has another tag (forging the tag is forging WireGuard). A
// message whose counter was recorded with another fingerprint is not
// judged: one of the two is a forgery, and WireGuard tells which.
type window struct {
	index   uint32
	highest atomic.Uint64 // the highest counter recorded
	slots   atomic.Pointer[[windowSize]atomic.Uint32]
	samples [sampleSlots]atomic.Uint64
	paths   *paths
}

// Verdicts of window.seen.
const (
	verdictPass  = iota // not judged: WireGuard decides
	verdictFirst        // the first copy: recorded
	verdictCopy         // a copy of a message seen
)

// seen records the message with counter and fingerprint fp, delivered by
// path (-1: unknown) at now (nanotime), and reports whether it is a copy
// of one seen before.
func (w *window) seen(counter uint64, fp uint16, path int, now int64) bool {
	v := w.judge(counter, fp)
	if v != verdictPass && counter%sampleEvery == 0 && w.paths != nil {
		w.sample(counter, path, now)
	}
	return v == verdictCopy
}

func (w *window) judge(counter uint64, fp uint16) int {
	for {
		// Differences, not sums: nothing here can wrap around.
		h := w.highest.Load()
		if counter > h && counter-h > maxAhead {
			return verdictPass // too far ahead to judge
		}
		if counter < h && h-counter >= windowSize {
			return verdictPass // older than the window
		}
		if counter <= h || w.highest.CompareAndSwap(h, counter) {
			break
		}
	}
	slots := w.slots.Load()
	if slots == nil {
		// The index's first message: its window is made now, once
		// (every index that carries traffic needs one; those that never
		// do, cost nothing).
		w.slots.CompareAndSwap(nil, new([windowSize]atomic.Uint32))
		slots = w.slots.Load()
	}
	tag := uint16(counter / windowSize)
	want := uint32(tag)<<16 | uint32(fp) | 1
	slot := &slots[counter%windowSize]
	for {
		old := slot.Load()
		otag := uint16(old >> 16)
		switch {
		case old != 0 && otag == tag:
			if old == want {
				return verdictCopy
			}
			return verdictPass // the same counter, another message
		case old != 0 && int16(tag-otag) < 0:
			// The slot holds a newer counter: this one is older than
			// the window.
			return verdictPass
		}
		// Empty, or an older block's: it now holds this counter. (Within
		// the window of the highest, blocks compare as a 16-bit
		// difference.)
		if slot.CompareAndSwap(old, want) {
			return verdictFirst
		}
	}
}

// fingerprint returns the bits of a transport message that tell its
// copies from forgeries with its counter: the end of its authentication
// tag (the last 16 bytes).
func fingerprint(b []byte) uint16 {
	return uint16(b[len(b)-1])<<8 | uint16(b[len(b)-2])
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
		return w != nil && w.seen(ctr, fingerprint(m.Buf[:m.N]), path, now)
	}
	all := true
	var w *window
	for off := 0; off < m.N; off += m.Seg {
		seg := m.Buf[off:min(off+m.Seg, m.N)]
		idx, ctr, ok := wgTransport(seg)
		if ok && (w == nil || w.index != idx) {
			w = ws.find(idx)
		}
		if !ok || w == nil || !w.seen(ctr, fingerprint(seg), path, now) {
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
				w.judgeSample(uint8(old >> 32))
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

// judgeSample counts a sample that leaves the window, delivered by the
// paths in mask: for every live path, a sample, and a loss if it did not
// deliver.
func (w *window) judgeSample(mask uint8) {
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
