package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Name resolution timing for the client's destination names.
const (
	// lookupTimeout bounds one DNS lookup.
	lookupTimeout = 2 * time.Second
	// refreshEvery is how often a name that resolves is looked up again.
	refreshEvery = 60 * time.Second
	// retryMin and retryMax bound the wait before a failed lookup is
	// tried again: it doubles from retryMin with each failure in a row.
	retryMin = time.Second
	retryMax = 10 * time.Second
)

// resolver resolves destination addresses synchronously, each name once:
// the server's dstAddr at start, and `list-interfaces`. The client's link
// scan uses names instead, which never waits for DNS.
type resolver struct {
	cache map[string]resolved
}

type resolved struct {
	addrs []netip.AddrPort
	err   error
}

func (r *resolver) resolve(s string) ([]netip.AddrPort, error) {
	if ap, ok := literal(s); ok {
		return []netip.AddrPort{ap}, nil
	}
	if e, ok := r.cache[s]; ok {
		return e.addrs, e.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	addrs, err := resolveName(ctx, s)
	if r.cache == nil {
		r.cache = map[string]resolved{}
	}
	r.cache[s] = resolved{addrs, err}
	return addrs, err
}

// literal parses s when it is an address and port rather than a name.
func literal(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

func resolveName(ctx context.Context, s string) ([]netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	// IPv4 first: the original was IPv4-only, and its users' paths are.
	slices.SortStableFunc(ips, func(a, b netip.Addr) int {
		return boolCmp(b.Unmap().Is4(), a.Unmap().Is4())
	})
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip.Unmap(), uint16(pn))
	}
	return out, nil
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// NameStatus is the resolution state of one destination name.
type NameStatus struct {
	// Name is the destination as configured (host:port).
	Name string
	// Addrs is the answer links use: the last good one, kept while DNS
	// fails. Empty when the name has never resolved.
	Addrs []netip.AddrPort
	// Resolved is when Addrs was last confirmed by DNS; zero: never.
	Resolved time.Time
	// Err is the last lookup's error, empty once a lookup succeeds
	// again; ErrAt is when it happened.
	Err   string
	ErrAt time.Time
}

// errNotResolved is a name's state before its first lookup ends.
var errNotResolved = errors.New("not resolved yet")

// names keeps the client's destination names resolved in the background,
// one goroutine per name, so that a scan, which runs under the client's
// mutex, only reads the current answer and never waits for DNS: with a
// failing DNS, a lookup per interface per scan made each scan wait 2 s per
// interface, blocking new links and the status meanwhile. A good answer
// is refreshed every refreshEvery and kept while lookups fail; a failing
// name is retried after retryMin, backing off to retryMax, and at once
// when an interface comes up (retry). A changed answer triggers a rescan
// (changed).
type names struct {
	// lookup resolves host:port; tests replace it before Run.
	lookup  func(ctx context.Context, hostport string) ([]netip.AddrPort, error)
	refresh time.Duration // refreshEvery; tests shorten it
	changed func()
	log     *Logger

	mu  sync.Mutex // guards m, ctx and the state in each name
	m   map[string]*name
	ctx context.Context // nil until start
	wg  sync.WaitGroup
}

// name is one destination name and its goroutine's state.
type name struct {
	s     string
	wake  chan struct{} // retry now
	quit  chan struct{} // closed when the name is no longer configured
	first chan struct{} // closed when the first lookup has ended
	// The state, guarded by names.mu.
	addrs   []netip.AddrPort
	okAt    time.Time
	err     error
	errAt   time.Time
	fails   int           // lookups failed in a row
	delay   time.Duration // before the next lookup after a failure
	running bool
}

func (r *names) init(log *Logger, changed func()) {
	r.lookup = resolveName
	r.refresh = refreshEvery
	r.log = log
	r.changed = changed
	r.m = map[string]*name{}
}

// get returns the current answer for s (host:port): s itself when it is
// an address, the last good answer for a name, or an error when the name
// has none. It never waits for DNS; a name it has not seen yet starts
// resolving.
func (r *names) get(s string) ([]netip.AddrPort, error) {
	if ap, ok := literal(s); ok {
		return []netip.AddrPort{ap}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.addLocked(s)
	switch {
	case len(n.addrs) > 0:
		return n.addrs, nil
	case n.err != nil:
		return nil, n.err
	}
	return nil, errNotResolved
}

// addLocked returns the state of name s, starting its goroutine if the
// names run already.
func (r *names) addLocked(s string) *name {
	if n := r.m[s]; n != nil {
		return n
	}
	n := &name{s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), first: make(chan struct{})}
	r.m[s] = n
	r.runLocked(n)
	return n
}

func (r *names) runLocked(n *name) {
	if r.ctx == nil || n.running || r.ctx.Err() != nil {
		return
	}
	n.running = true
	r.wg.Add(1)
	go r.run(r.ctx, n)
}

// start resolves every name seen so far, and each new one, until ctx
// ends; stop waits for the goroutines after that.
func (r *names) start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx = ctx
	for _, n := range r.m {
		r.runLocked(n)
	}
}

// stop waits until every goroutine has seen the end of start's context.
func (r *names) stop() { r.wg.Wait() }

// retain forgets the names that are not in keep (a reload dropped them)
// and starts resolving those of keep not seen yet.
func (r *names) retain(keep []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s, n := range r.m {
		if !slices.Contains(keep, s) {
			close(n.quit)
			delete(r.m, s)
		}
	}
	for _, s := range keep {
		if _, ok := literal(s); !ok {
			r.addLocked(s)
		}
	}
}

// await waits, up to d, until each of ss that is a name has been looked up
// once. Reconfigure uses it so that a reload to a new name does not take
// the links down while the name is first resolved.
func (r *names) await(ss []string, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, s := range ss {
		r.mu.Lock()
		n := r.m[s]
		running := n != nil && n.running
		r.mu.Unlock()
		if !running {
			continue
		}
		select {
		case <-n.first:
		case <-t.C:
			return
		}
	}
}

// retry makes every name without a current good answer look up again now
// (an interface came up: DNS may be reachable through it).
func (r *names) retry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.m {
		if n.err != nil || len(n.addrs) == 0 {
			select {
			case n.wake <- struct{}{}:
			default:
			}
		}
	}
}

// status returns the state of name s, or nil when s is an address.
func (r *names) status(s string) *NameStatus {
	if _, ok := literal(s); ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.m[s]
	if n == nil {
		return nil
	}
	st := &NameStatus{Name: s, Addrs: slices.Clone(n.addrs), Resolved: n.okAt, ErrAt: n.errAt}
	if n.err != nil {
		st.Err = n.err.Error()
	}
	return st
}

// run is a name's goroutine: it looks the name up, then again after the
// refresh period or the retry delay, or when woken.
func (r *names) run(ctx context.Context, n *name) {
	defer r.wg.Done()
	woken := false
	for {
		select {
		case <-n.wake: // this lookup answers the wake-up
		default:
		}
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		addrs, err := r.lookup(lctx, n.s)
		cancel()
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(r.note(n, addrs, err, woken))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.quit:
			t.Stop()
			return
		case <-n.wake:
			t.Stop()
			woken = true
		case <-t.C:
			woken = false
		}
	}
}

// note records a lookup's outcome, logs what changed (once per failing
// streak, not per lookup), and returns how long to wait before the next:
// after a failure, retryMin, doubled by each failure of a lookup the
// timer started (one that an interface event woke early does not count),
// up to retryMax.
func (r *names) note(n *name, addrs []netip.AddrPort, err error, woken bool) time.Duration {
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	now := time.Now()
	r.mu.Lock()
	select {
	case <-n.first:
	default:
		close(n.first)
	}
	select {
	case <-n.quit:
		r.mu.Unlock()
		return retryMax // forgotten; run sees quit
	default:
	}
	if err != nil {
		n.err, n.errAt = err, now
		n.fails++
		switch {
		case n.delay == 0:
			n.delay = retryMin
		case !woken:
			n.delay = min(2*n.delay, retryMax)
		}
		delay := n.delay
		first, had, age := n.fails == 1, len(n.addrs) > 0, now.Sub(n.okAt)
		r.mu.Unlock()
		switch {
		case first && had:
			r.log.warnf("resolving %s failed: %v; keeping its last answer, from %v ago (retrying)", n.s, err, age.Round(time.Second))
		case first:
			r.log.warnf("cannot resolve %s: %v; no link to it until it resolves (retrying)", n.s, err)
		}
		return delay
	}
	old, failed := n.addrs, n.fails > 0
	n.addrs, n.okAt, n.err, n.fails, n.delay = addrs, now, nil, 0, 0
	r.mu.Unlock()
	same := slices.Equal(old, addrs)
	switch {
	case len(old) == 0:
		r.log.infof("%s resolves to %v", n.s, addrs)
	case !same:
		r.log.infof("%s now resolves to %v (was %v)", n.s, addrs, old)
	case failed:
		r.log.infof("%s resolves again", n.s)
	}
	if !same {
		r.changed()
	}
	return r.refresh
}

// configuredNames returns the destinations cfg names: dstAddr and the
// overrides.
func configuredNames(cfg ClientConfig) []string {
	out := []string{cfg.DstAddr}
	for _, d := range cfg.DstOverrides {
		out = append(out, d)
	}
	return out
}

// String describes st for logs and the status command: the answer and its
// age, and the last error.
func (st *NameStatus) String() string {
	s := st.Name + ": "
	if len(st.Addrs) == 0 {
		s += "unresolved"
	} else {
		s += fmt.Sprintf("%v, resolved %v ago", st.Addrs, time.Since(st.Resolved).Round(time.Second))
	}
	if st.Err != "" {
		s += fmt.Sprintf("; last lookup failed %v ago: %s", time.Since(st.ErrAt).Round(time.Second), st.Err)
	}
	return s
}
