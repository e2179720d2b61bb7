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

// relayQueue bounds each direction's delay line, in datagrams: 200 ms of
// 20 000 datagrams a second.
const relayQueue = 4096

// Relay receives datagrams on listen and sends each, delay later, to
// upstream from a socket of its own per source address, bound to bind's
// address (port 0 picks one); what upstream answers on that socket goes
// back to the source, delay later, from listen. The upstream therefore sees
// the relay's socket as the client. It runs until ctx is done, then sends
// what it still holds and returns its counters.
func Relay(ctx context.Context, listen, upstream, bind netip.AddrPort, delay time.Duration, ready func()) (RelayStats, error) {
	l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		return RelayStats{}, err
	}
	defer l.Close()
	var st relayCounters
	fwd, back := newDelayQueue(delay, &st), newDelayQueue(delay, &st)
	// A deadline rather than Close ends the read: the socket still sends
	// what the back line holds.
	stop := context.AfterFunc(ctx, func() { _ = l.SetReadDeadline(time.Now()) })
	defer stop()
	if ready != nil {
		ready()
	}

	ups := map[netip.AddrPort]*net.UDPConn{}
	var readers sync.WaitGroup
	buf := make([]byte, 65535)
	var readErr error
	for {
		n, src, err := l.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() == nil {
				readErr = err
			}
			break
		}
		u := ups[src]
		if u == nil {
			if u, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(bind), net.UDPAddrFromAddrPort(upstream)); err != nil {
				readErr = err
				break
			}
			ups[src] = u
			readers.Add(1)
			go func(u *net.UDPConn, src netip.AddrPort) {
				defer readers.Done()
				b := make([]byte, 65535)
				for {
					n, err := u.Read(b)
					if errors.Is(err, net.ErrClosed) {
						return
					}
					if err != nil {
						continue // ECONNREFUSED while the upstream restarts
					}
					back.put(b[:n], func(p []byte) error {
						_, err := l.WriteToUDPAddrPort(p, src)
						return err
					}, &st.back)
				}
			}(u, src)
		}
		fwd.put(buf[:n], func(p []byte) error {
			_, err := u.Write(p)
			return err
		}, &st.forward)
	}
	fwd.close()
	for _, u := range ups {
		u.Close()
	}
	readers.Wait()
	back.close()
	return RelayStats{Sources: len(ups), Forward: st.forward.Load(), Back: st.back.Load(),
		Errors: st.errors.Load(), Dropped: st.dropped.Load()}, readErr
}

type relayCounters struct {
	forward, back, errors, dropped atomic.Uint64
}

// delayQueue sends datagrams in the order they were put, each delay after
// it was put: with one delay for all, first in is first due.
type delayQueue struct {
	delay time.Duration
	st    *relayCounters
	ch    chan heldDatagram
	done  chan struct{}
}

type heldDatagram struct {
	due  time.Time
	b    []byte
	send func([]byte) error
	sent *atomic.Uint64
}

func newDelayQueue(delay time.Duration, st *relayCounters) *delayQueue {
	q := &delayQueue{delay: delay, st: st, ch: make(chan heldDatagram, relayQueue), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for h := range q.ch {
			if d := time.Until(h.due); d > 0 {
				time.Sleep(d)
			}
			if err := h.send(h.b); err != nil {
				q.st.errors.Add(1)
			} else {
				h.sent.Add(1)
			}
		}
	}()
	return q
}

// put queues a copy of b, to be sent with send; a full line drops it.
func (q *delayQueue) put(b []byte, send func([]byte) error, sent *atomic.Uint64) {
	h := heldDatagram{due: time.Now().Add(q.delay), b: append([]byte(nil), b...), send: send, sent: sent}
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
