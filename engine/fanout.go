package engine

import (
	"net/netip"

	"github.com/engarde-project/engarde/engine/conn"
	"github.com/engarde-project/engarde/ring"
)

// fanout hands one received batch to several senders: the client's from
// WireGuard to every link, the server's from WireGuard to every address of
// its client. Each buffer gains one reference per sender, and no packet is
// copied. Senders whose backlog is empty and whose socket is connected are
// written at once, on the caller's goroutine; where the backend is a
// conn.BatchWriter, all of them in one call (io_uring: one io_uring_enter).
// The others queue behind their backlog or drop, each on its own, so a
// full or dead destination costs only itself.
//
// A fanout is used by one goroutine: its scratch space is its own.
type fanout struct {
	bw conn.BatchWriter // nil: one TryWriteBatch per sender
	ws []conn.BatchWrite
	to []*sender
}

func newFanout(be conn.Backend) *fanout {
	f := &fanout{}
	f.bw, _ = be.(conn.BatchWriter)
	return f
}

// send sends bufs (received into msgs, which it uses as scratch) to every
// sender in to, and reports whether there was any.
func (f *fanout) send(bufs []*ring.Packet, msgs []conn.Message, to []*sender) bool {
	if len(to) == 0 {
		return false
	}
	for _, b := range bufs {
		b.Ref(len(to))
	}
	// A connected socket ignores the address: one set of messages serves
	// every direct sender. An unconnected sender fills in its own address
	// (the same buffers), which the connected ones then ignore.
	msgs = fill(msgs, bufs, netip.AddrPort{})
	ws, direct := f.ws[:0], f.to[:0]
	for _, s := range to {
		if !s.direct() {
			s.send(bufs, msgs) // it queues behind its backlog, or drops
			continue
		}
		ws = append(ws, conn.BatchWrite{Conn: s.conn, Msgs: msgs})
		direct = append(direct, s)
	}
	if f.bw != nil && len(ws) > 1 {
		f.bw.TryWriteBatches(ws)
	} else {
		for i := range ws {
			ws[i].N, ws[i].Err = ws[i].Conn.TryWriteBatch(msgs)
		}
	}
	for i, w := range ws {
		direct[i].finish(bufs, msgs, w.N, w.Err)
	}
	clear(ws) // no references to senders that may close
	clear(direct)
	f.ws, f.to = ws, direct // keep the grown scratch
	return true
}
