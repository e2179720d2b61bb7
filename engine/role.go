package engine

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// role is what the client and the server share: their data-path options,
// the buffer pool every socket of the role receives into, the write timeout
// of every sender, and the constructors of the pipeline's stages.
type role struct {
	opts     *Options
	log      *Logger
	pool     *ring.Pool
	started  time.Time
	wtimeout atomic.Int64 // write timeout of every sender, ns (0: none); reloadable
	// keepBufs is how many buffers a receive loop keeps while it waits
	// (pump.keep); keepBudget, when set, bounds them all together.
	keepBufs   int
	keepBudget *atomic.Int64

	// Duplicates counts copies of WireGuard messages (the same message
	// over another link) not handed to WireGuard.
	Duplicates atomic.Uint64

	events eventLog // the last changes of state (health.go)
}

// init applies o's defaults and makes the pool, sized for sockets sockets
// to begin with.
func (r *role) init(o *Options, sockets int) error {
	if err := o.setDefaults(); err != nil {
		return err
	}
	pool, err := o.newPool(sockets)
	if err != nil {
		return err
	}
	r.opts, r.log, r.pool, r.started = o, o.Log, pool, time.Now()
	r.wtimeout.Store(o.timeout())
	return nil
}

// setWriteTimeout takes a reloaded write timeout (0: the default).
func (r *role) setWriteTimeout(o Options) {
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaults.WriteTimeout
	}
	r.wtimeout.Store(o.timeout())
}

// Started returns when the role was created.
func (r *role) Started() time.Time { return r.started }

// Backend returns the name of the socket backend in use.
func (r *role) Backend() string { return r.opts.Backend.Name() }

// senderConfig says where a sender sends.
type senderConfig struct {
	name string // for logs: "link eth0", "client 198.51.100.7:4000"
	conn conn.Conn
	// own makes the sender close conn when it closes.
	own bool
	// dst is the destination of an unconnected conn, nil for a connected
	// one; a nil *dst means "not known yet", and packets are dropped.
	dst   *atomic.Pointer[netip.AddrPort]
	stats *Stats
}

func (r *role) newSender(c senderConfig) *sender {
	return newSender(c, r.opts.QueueLength, r.opts.BatchSize, &r.wtimeout, r.log)
}

// newPump starts a receive loop on c that hands batches to handle.
func (r *role) newPump(name string, c conn.Conn, stats *Stats, handle func([]*ring.Packet, []conn.Message)) *pump {
	p := newPump(name, c, r.pool, r.opts.BatchSize, stats, r.log, handle)
	p.keep, p.budget = r.keepBufs, r.keepBudget
	p.looper, _ = r.opts.Backend.(conn.Looper)
	return p
}

// shutdown ends a role's Run: it closes every destination's sockets with
// closeAll (under mu, which guards them against a concurrent scan or
// learn), then the WireGuard side's receive loop rx and sender tx, and the
// pool last, once nothing can hold one of its buffers.
func (r *role) shutdown(mu *sync.Mutex, closeAll func(), rx *pump, tx *sender) error {
	mu.Lock()
	closeAll()
	mu.Unlock()
	rx.stop()
	tx.close()
	return r.pool.Close()
}

// toWireGuard hands datagrams that crossed the link numbered path to tx,
// WireGuard's sender, less the copies the duplicate filter win recognises.
func (r *role) toWireGuard(tx *sender, win *windows, path int, bufs []*ring.Packet, msgs []conn.Message) {
	if !r.opts.DisableDedup {
		n := win.filter(bufs, msgs, path, &r.Duplicates)
		bufs, msgs = bufs[:n], msgs[:n]
	}
	for _, b := range bufs {
		b.Ref(1)
	}
	tx.send(bufs, msgs)
}

// keep moves message i of a batch, and its buffer, to place k (k <= i),
// where the messages to send gather.
func keep(bufs []*ring.Packet, msgs []conn.Message, i, k int) {
	if i != k {
		bufs[i], bufs[k] = bufs[k], bufs[i]
		msgs[i], msgs[k] = msgs[k], msgs[i]
	}
}

// sendKept hands bufs to tx, with the reference tx takes of each.
func sendKept(tx *sender, bufs []*ring.Packet, msgs []conn.Message) {
	if len(bufs) == 0 {
		return
	}
	for _, b := range bufs {
		b.Ref(1)
	}
	tx.send(bufs, msgs)
}
