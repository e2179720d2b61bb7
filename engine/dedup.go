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
		keep(bufs, msgs, i, k)
		k++
	}
	if dropped > 0 {
		dups.Add(dropped)
	}
	return k
}

// Link quality is measured on a sample of the counters: one in
// sampleEvery. Each sample slot packs, so that one compare-and-swap
// records a copy:
//
//	bits 63-42  the sample's tag: its counter over sampleEvery·sampleSlots (22 bits)
//	bit  41     judged: counted already; later copies are ignored
//	bits 40-38  the path that delivered it first
//	bits 37-30  the paths that delivered it
//	bits 29-0   when the first copy came, in microseconds (wraps every 17 minutes)
//
// A sample is judged, and its figures counted for every path at once, when
// a newer sample takes its slot (sampleSlots samples later) or when the
// once-a-second sweep finds it older than sampleAge: a path that was live
// then and had not delivered it lost it; one that delivered it after
// another was late by the time it took.
const (
	sampleEvery = 16
	sampleSlots = 256
	maxPaths    = 8
	// sampleAge is how long a sample waits for its copies before the
	// sweep judges it: far more than any link's lag behind another.
	sampleAge = time.Second

	sampleJudged = 1 << 41
	usMask       = 1<<30 - 1
)

// paths are the links (client) or member addresses (server) of a session,
// as the duplicate filter counts them: each has a number below maxPaths.
type paths struct {
	q    [maxPaths]atomic.Pointer[pathQuality]
	live atomic.Uint32 // bit i: path i is live and expected to deliver
}

func sampleTag(e uint64) uint32 { return uint32(e >> 42) }
func sampleMask(e uint64) uint8 { return uint8(e >> 30) }

func (w *window) sample(counter uint64, path int, now int64) {
	if path < 0 || path >= maxPaths {
		return
	}
	pos := counter / sampleEvery
	tag := uint32(pos/sampleSlots) & (1<<22 - 1)
	slot := &w.samples[pos%sampleSlots]
	us := uint64(now/1e3) & usMask
	bit := uint64(1) << (30 + path)
	for {
		old := slot.Load()
		if old != 0 && sampleTag(old) == tag {
			if old&(bit|sampleJudged) != 0 {
				return // the same path twice, or judged already
			}
			if slot.CompareAndSwap(old, old|bit) {
				if q := w.paths.q[path].Load(); q != nil {
					// Receive loops stamp their batches on their own
					// goroutines: a copy can carry an earlier stamp than
					// the first one recorded. It was not late.
					late := (us - old&usMask) & usMask
					if late > usMask/2 {
						late = 0
					}
					q.late[lateBucket(time.Duration(late)*time.Microsecond)].Add(1)
				}
				return
			}
			continue
		}
		if old != 0 && int32((tag-sampleTag(old))<<10) < 0 {
			return // the slot holds a newer sample
		}
		if slot.CompareAndSwap(old, uint64(tag)<<42|uint64(path)<<38|bit|us) {
			if old != 0 && old&sampleJudged == 0 {
				w.judgeSample(old, now)
			}
			return
		}
	}
}

// sweep judges the samples older than sampleAge, so that the figures keep
// up at low rates and once traffic stops.
func (w *window) sweep(now int64) {
	us := uint64(now/1e3) & usMask
	for i := range w.samples {
		slot := &w.samples[i]
		old := slot.Load()
		if old == 0 || old&sampleJudged != 0 || (us-old&usMask)&usMask < uint64(sampleAge/time.Microsecond) {
			continue
		}
		if slot.CompareAndSwap(old, old|sampleJudged) {
			w.judgeSample(old, now)
		}
	}
}

// judgeSample counts sample e, judged at now, for every path that was
// live or delivered it: a sample each, and a first, a late copy or a
// loss. A path that appeared after the sample's first copy is left out:
// it could not have delivered it.
func (w *window) judgeSample(e uint64, now int64) {
	mask := sampleMask(e)
	first := int(e>>38) & 7
	live := uint8(w.paths.live.Load())
	age := int64((uint64(now/1e3)-e&usMask)&usMask) * 1e3
	at := now - age // when its first copy came (samples are judged well within the 17 minutes the stamp wraps in)
	for m := live | mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros8(m)
		q := w.paths.q[i].Load()
		if q == nil || (mask&(1<<i) == 0 && q.since.Load() > at) {
			continue
		}
		q.samples.Add(1)
		switch {
		case mask&(1<<i) == 0:
			q.lost.Add(1)
		case i == first:
			q.first.Add(1)
		default:
			q.copies.Add(1)
		}
	}
}

// sweep judges the old samples of every index (the owner's tick calls it).
func (ws *windows) sweep(now int64) {
	for i := range ws.w {
		if w := ws.w[i].Load(); w != nil {
			w.sweep(now)
		}
	}
}

// pathQuality is what one path's copies did, counted on samples.
type pathQuality struct {
	since   atomic.Int64  // nanotime the path appeared
	samples atomic.Uint64 // judged samples of its session while it was live or delivered
	first   atomic.Uint64 // samples it delivered first
	lost    atomic.Uint64 // samples it never delivered (another path did)
	copies  atomic.Uint64 // samples it delivered after another path
	late    [lateBuckets]atomic.Uint64
}

// Lateness histogram: lateSub buckets per power of two of microseconds,
// up to 2^31 µs; a figure read from it is its bucket's middle, within 6%
// of the truth.
const (
	lateSub     = 8
	lateShift   = 3 // log2(lateSub)
	lateBuckets = lateSub * 32
)

func lateBucket(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < lateSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1)), e >= lateShift
	m := (us >> (e - lateShift)) & (lateSub - 1)
	return min(lateBuckets-1, lateSub*(e-lateShift+1)+int(m))
}

// lateBucketRange returns the smallest and largest lateness bucket b holds.
func lateBucketRange(b int) (lo, hi time.Duration) {
	if b < lateSub {
		return time.Duration(b) * time.Microsecond, time.Duration(b) * time.Microsecond
	}
	e := b/lateSub + lateShift - 1
	m := uint64(b % lateSub)
	low := (lateSub + m) << (e - lateShift)
	high := (lateSub+m+1)<<(e-lateShift) - 1
	return time.Duration(low) * time.Microsecond, time.Duration(high) * time.Microsecond
}

// lateBucketMid is the figure a bucket stands for: its middle.
func lateBucketMid(b int) time.Duration {
	lo, hi := lateBucketRange(b)
	return (lo + hi) / 2
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
			return lateBucketMid(i)
		}
	}
	return lateBucketMid(len(hist) - 1)
}
