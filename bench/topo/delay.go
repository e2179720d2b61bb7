package topo

// This file holds a delaying UDP relay, for a slow link where netem is not
// available: the client is pointed at the relay, which holds each datagram
// for a fixed time before passing it on, in both directions.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engarde-project/engarde/engine/conn"
)

// RelayStats is what a relay passed on.
type RelayStats struct {
	// Sources counts the client addresses seen, each with a socket of its
	// own towards the upstream.
	Sources int `json:"sources"`
	// Forward and Back count the datagrams passed on towards the upstream
	// and back to the clients; Errors the sends that failed and Dropped
	// those that found the delay line full.
	Forward uint64 `json:"forward"`
	Back    uint64 `json:"back"`
	Errors  uint64 `json:"errors"`
	Dropped uint64 `json:"dropped"`
}

const (
	// relayQueue bounds each direction's delay line, in datagrams: 200 ms
	// of 80 000 datagrams a second.
	relayQueue = 16384
	// relayBatch is the most datagrams a relay socket receives or sends
	// in one system call (recvmmsg, sendmmsg): at tens of thousands a
	// second, one call per datagram would cost the relay a core.
	relayBatch = 64
	// relayBuffer is each relay socket's receive and send buffer: bursts
	// arrive while the reader passes the previous ones on.
	relayBuffer = 4 << 20
	// relayMTU is the largest datagram relayed whole.
	relayMTU = 65535
	// relaySlack is how late a delay line may send a datagram to send
	// it with others.
	relaySlack = 100 * time.Microsecond
)

// relayBackend is the socket backend of relays: recvmmsg and sendmmsg
// where there are, the portable one elsewhere.
func relayBackend() conn.Backend {
	if be, err := conn.Open("mmsg", nil); err == nil {
		return be
	}
	return conn.Default(nil)
}

// Relay receives datagrams on listen and sends each, delay later, to
// upstream from a socket of its own per source address, bound to bind's
// address (port 0 picks one); what upstream answers on that socket goes
// back to the source, delay later, from listen (up to relaySlack later
// still). The upstream therefore sees the relay's socket as the client.
// Datagrams move in batches of up to
// relayBatch per system call, in the order they came, each direction's
// delay line holding up to relayQueue of them (beyond, they are dropped
// and counted). It runs until ctx is done, then sends what it still holds
// and returns its counters.
func Relay(ctx context.Context, listen, upstream, bind netip.AddrPort, delay time.Duration, ready func()) (RelayStats, error) {
	be := relayBackend()
	opts := conn.SocketOptions{BatchSize: relayBatch, RecvBuffer: relayBuffer, SendBuffer: relayBuffer}
	l, err := be.Listen(listen, opts)
	if err != nil {
		return RelayStats{}, err
	}
	var st relayCounters
	fwd, back := newDelayQueue(delay, &st, &st.forward), newDelayQueue(delay, &st, &st.back)
	// The listening socket must stay open to send what the back line
	// holds, so a datagram to itself, not Close, wakes the reader when
	// ctx is done; Close a second later in case that datagram is lost.
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		wake(l.LocalAddr())
		time.AfterFunc(time.Second, func() { _ = l.Close() })
	})
	defer stop()
	if ready != nil {
		ready()
	}

	ups := map[netip.AddrPort]conn.Conn{}
	var readers sync.WaitGroup
	msgs := relayBuffers()
	var readErr error
	for !stopping.Load() {
		n, err := l.ReadBatch(msgs)
		if err != nil {
			if !stopping.Load() {
				readErr = err
			}
			break
		}
		if stopping.Load() {
			break
		}
		for i := range msgs[:n] {
			m := &msgs[i]
			if m.Truncated {
				st.errors.Add(1)
				continue
			}
			u := ups[m.Addr]
			if u == nil {
				if u, err = be.Dial(bind, upstream, opts); err != nil {
					readErr = err
					break
				}
				ups[m.Addr] = u
				readers.Add(1)
				go func(u conn.Conn, src netip.AddrPort) {
					defer readers.Done()
					in := relayBuffers()
					for {
						n, err := u.ReadBatch(in)
						if errors.Is(err, net.ErrClosed) {
							return
						}
						if err != nil {
							continue // ECONNREFUSED while the upstream restarts
						}
						for i := range in[:n] {
							if !in[i].Truncated {
								back.put(in[i].Buf[:in[i].N], l, src)
							}
						}
					}
				}(u, m.Addr)
			}
			fwd.put(m.Buf[:m.N], u, netip.AddrPort{})
		}
		if readErr != nil {
			break
		}
	}
	fwd.close()
	for _, u := range ups {
		u.Close()
	}
	readers.Wait()
	back.close()
	l.Close()
	return RelayStats{Sources: len(ups), Forward: st.forward.Load(), Back: st.back.Load(),
		Errors: st.errors.Load(), Dropped: st.dropped.Load()}, readErr
}

// relayBuffers returns a batch of receive buffers.
func relayBuffers() []conn.Message {
	msgs := make([]conn.Message, relayBatch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, relayMTU)
	}
	return msgs
}

// wake sends an empty datagram to a relay's own address (its loopback
// address when it listens on every address), to end a receive.
func wake(to netip.AddrPort) {
	a := to.Addr()
	switch {
	case a.IsUnspecified() && a.Is4():
		a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case a.IsUnspecified():
		a = netip.IPv6Loopback()
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, to.Port())))
	if err != nil {
		return
	}
	_, _ = c.Write(nil)
	c.Close()
}

type relayCounters struct {
	forward, back, errors, dropped atomic.Uint64
}

// delayQueue sends datagrams in the order they were put, each delay after
// it was put: with one delay for all, first in is first due. What is due
// together goes out in batches, one system call per run of datagrams for
// the same socket.
type delayQueue struct {
	delay time.Duration
	st    *relayCounters
	sent  *atomic.Uint64
	ch    chan heldDatagram
	done  chan struct{}
}

type heldDatagram struct {
	due time.Time
	b   []byte
	// c sends it, to addr unless c is connected.
	c    conn.Conn
	addr netip.AddrPort
}

func newDelayQueue(delay time.Duration, st *relayCounters, sent *atomic.Uint64) *delayQueue {
	q := &delayQueue{delay: delay, st: st, sent: sent, ch: make(chan heldDatagram, relayQueue), done: make(chan struct{})}
	go q.run()
	return q
}

// run sends the datagrams as they fall due, until close.
func (q *delayQueue) run() {
	defer close(q.done)
	held := make([]heldDatagram, 0, relayBatch)
	msgs := make([]conn.Message, 0, relayBatch)
	var next heldDatagram
	have, closed := false, false
	for !closed {
		if !have {
			h, ok := <-q.ch
			if !ok {
				return
			}
			next = h
		}
		if d := time.Until(next.due); d > 0 {
			// A little past the due time, so that one wake-up sends
			// what falls due meanwhile: at tens of thousands of
			// datagrams a second, one per datagram would cost the
			// relay most of a core.
			time.Sleep(d + relaySlack)
		}
		held, have = append(held[:0], next), false
		// Whatever else is due by now goes in the same batch.
		now := time.Now()
	collect:
		for len(held) < relayBatch {
			select {
			case h, ok := <-q.ch:
				switch {
				case !ok:
					closed = true
					break collect
				case h.due.After(now):
					next, have = h, true
					break collect
				}
				held = append(held, h)
			default:
				break collect
			}
		}
		for i := 0; i < len(held); {
			j := i
			msgs = msgs[:0]
			for ; j < len(held) && held[j].c == held[i].c; j++ {
				msgs = append(msgs, conn.Message{Buf: held[j].b, N: len(held[j].b), Addr: held[j].addr})
			}
			q.send(held[i].c, msgs)
			i = j
		}
	}
	if have {
		q.send(next.c, []conn.Message{{Buf: next.b, N: len(next.b), Addr: next.addr}})
	}
}

// send sends msgs on c, skipping (and counting) those that fail.
func (q *delayQueue) send(c conn.Conn, msgs []conn.Message) {
	for len(msgs) > 0 {
		n, err := c.WriteBatch(msgs)
		q.sent.Add(uint64(n))
		if err == nil {
			return
		}
		q.st.errors.Add(1)
		if errors.Is(err, net.ErrClosed) {
			q.st.errors.Add(uint64(len(msgs) - n - 1))
			return
		}
		msgs = msgs[n+1:]
	}
}

// put queues a copy of b, to be sent with c (to addr unless c is
// connected); a full line drops it.
func (q *delayQueue) put(b []byte, c conn.Conn, addr netip.AddrPort) {
	h := heldDatagram{due: time.Now().Add(q.delay), b: append([]byte(nil), b...), c: c, addr: addr}
	select {
	case q.ch <- h:
	default:
		q.st.dropped.Add(1)
	}
}

// close sends what the line holds and returns; put must not be called
// after it.
func (q *delayQueue) close() {
	close(q.ch)
	<-q.done
}
