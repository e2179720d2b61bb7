package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Notifier reports the daemon's state to systemd, as sd_notify(3) does: a
// datagram of newline-separated VAR=value assignments sent to the unix
// socket in $NOTIFY_SOCKET (a path, or an abstract address written with a
// leading '@'), which systemd sets for Type=notify services. It is a few
// lines of the protocol rather than a dependency on libsystemd or a Go
// binding. A nil *Notifier (no $NOTIFY_SOCKET) does nothing.
type Notifier struct {
	addr *net.UnixAddr
	// watchdog is the interval of the pings systemd expects
	// ($WATCHDOG_USEC), 0 for none.
	watchdog time.Duration
	pings    atomic.Uint64 // WATCHDOG=1 sent, for tests
	// pending is the health call answer waits for; only Run's goroutine
	// uses it.
	pending chan string
}

// NewNotifier returns the notifier the environment asks for, nil when
// systemd did not start the daemon with Type=notify, or an error for a
// $NOTIFY_SOCKET it cannot use.
func NewNotifier() (*Notifier, error) {
	return notifierFrom(os.Getenv("NOTIFY_SOCKET"), os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

// notifierFrom is NewNotifier's parsing: socket is $NOTIFY_SOCKET, usec
// $WATCHDOG_USEC and wdPID $WATCHDOG_PID, which names the process the
// watchdog is for (another one, a child's parent say, is not this one).
func notifierFrom(socket, usec, wdPID string, pid int) (*Notifier, error) {
	if socket == "" {
		return nil, nil
	}
	if !strings.HasPrefix(socket, "/") && !strings.HasPrefix(socket, "@") {
		// systemd also passes vsock: addresses to virtual machines.
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: only unix socket paths and abstract addresses (@name) are supported", socket)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}
	if usec != "" && (wdPID == "" || wdPID == strconv.Itoa(pid)) {
		us, err := strconv.ParseUint(usec, 10, 63)
		if err != nil || us == 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC=%q: not a positive number of microseconds", usec)
		}
		n.watchdog = time.Duration(us) * time.Microsecond
	}
	return n, nil
}

// Notify sends state ("READY=1", or several assignments separated by
// newlines) to systemd. Each call opens its own socket, as sd_notify does,
// so that a systemd that re-executed itself since still hears.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notifying systemd at %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying systemd at %s: %w", n.addr.Name, err)
	}
	return nil
}

// Run reports the daemon's life until ctx ends: READY=1 once ready
// returns (nil: at once) and health answers, with health's text as STATUS=;
// then, if systemd keeps a watchdog, WATCHDOG=1 every half of its
// interval, each time only after health has answered within that half: an
// engine stuck on a lock gets no ping, and systemd restarts it.
// Errors, of which systemd would hear nothing anyway, go to logf once
// (nil: nowhere).
func (n *Notifier) Run(ctx context.Context, ready func(context.Context), health func() string, logf func(string, ...any)) {
	if n == nil {
		return
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if ready != nil {
		ready(ctx)
	}
	if ctx.Err() != nil {
		return
	}
	every := n.watchdog / 2
	wait := every
	if wait == 0 {
		wait = time.Minute // the longest a first health call may take
	}
	status, ok := n.answer(ctx, health, wait)
	if !ok {
		if ctx.Err() == nil {
			logf("the engine did not answer within %s; systemd is not told it is ready", wait)
		}
		return
	}
	logged := false
	if err := n.Notify("READY=1\nSTATUS=" + status); err != nil {
		logf("%v", err)
		logged = true
	}
	if every == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		status, ok := n.answer(ctx, health, every)
		if !ok {
			if ctx.Err() == nil {
				logf("the engine did not answer within %s: no watchdog ping (systemd restarts the daemon after WatchdogSec)", every)
			}
			// The stuck call may return later; until it does, no new
			// one is started (answer waits for it first).
			continue
		}
		err := n.Notify("WATCHDOG=1\nSTATUS=" + status)
		switch {
		case err == nil:
			n.pings.Add(1)
			logged = false
		case !logged:
			logf("%v", err)
			logged = true
		}
	}
}

// answer calls health and returns its text, or false if it did not return
// within d (or ctx ended first). A call that has not returned is waited
// for again, not joined by a new one: a stuck engine holds one goroutine.
// Only Run calls it.
func (n *Notifier) answer(ctx context.Context, health func() string, d time.Duration) (string, bool) {
	if health == nil {
		return "running", true
	}
	if n.pending == nil {
		c := make(chan string, 1)
		n.pending = c
		go func() { c <- health() }()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case s := <-n.pending:
		n.pending = nil
		return s, true
	case <-t.C:
		return "", false
	case <-ctx.Done():
		return "", false
	}
}
