package control

import (
	"net"
	"sync"
)

// maxConns bounds the connections the web manager holds at once. Each
// holds a file descriptor, which the engine's link sockets need too: a
// peer that opens connections and sends nothing must not starve them.
// Past the bound, new connections wait in the kernel's accept queue until
// one closes (ReadHeaderTimeout and IdleTimeout close idle ones).
const maxConns = 64

// limitListener accepts at most cap(sem) connections at a time.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{} // closed by Close, to end an Accept waiting for a slot
	once sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: sync.OnceFunc(func() { <-l.sem })}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when closed (net/http may close twice).
type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
