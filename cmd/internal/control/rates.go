package control

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// Keys of the sockets whose rates the sampler keeps.
const (
	keyWireGuard = "wireguard"
	keyListen    = "listen"
	keyUpstream  = "upstream"
	keyLink      = "link/"
	keyPeer      = "peer/"
	keySession   = "session/"
)

func sessionKey(id uint64) string { return keySession + strconv.FormatUint(id, 10) }

// sampleEvery is the sampling period, and so the window rates are
// averaged over.
const sampleEvery = time.Second

// sampler turns successive counter reads into rates. It runs in the control
// plane on its own clock, never in the data path; the handlers read the
// last rates it computed.
type sampler struct {
	mu    sync.Mutex // guards prev and rates
	prev  map[string]reading
	rates map[string]Rates
}

type reading struct {
	at                 time.Time
	rxp, txp, rxb, txb uint64
}

func newSampler() *sampler {
	return &sampler{prev: map[string]reading{}, rates: map[string]Rates{}}
}

// get returns the last rates of a socket (zero before two samples).
func (s *sampler) get(key string) Rates {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rates[key]
}

// observe takes one sample of every socket in cur, taken at now, and
// forgets the sockets that are gone.
func (s *sampler) observe(now time.Time, cur map[string]*engine.Counters) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, c := range cur {
		r := reading{at: now, rxp: c.RxPackets, txp: c.TxPackets, rxb: c.RxBytes, txb: c.TxBytes}
		p, ok := s.prev[key]
		s.prev[key] = r
		dt := now.Sub(p.at).Seconds()
		if !ok || dt <= 0 {
			continue
		}
		s.rates[key] = Rates{
			RxPackets: rate(p.rxp, r.rxp, dt),
			TxPackets: rate(p.txp, r.txp, dt),
			RxBits:    8 * rate(p.rxb, r.rxb, dt),
			TxBits:    8 * rate(p.txb, r.txb, dt),
		}
	}
	for key := range s.prev {
		if _, ok := cur[key]; !ok {
			delete(s.prev, key)
			delete(s.rates, key)
		}
	}
}

// rate is the growth per second from a to b, to a thousandth; a counter
// that went back (a socket rebuilt from zero) counts from zero.
func rate(a, b uint64, dt float64) float64 {
	if b < a {
		a = 0
	}
	return math.Round(float64(b-a)/dt*1000) / 1000
}

// sample reads the role's state once, feeds the rate sampler, then the
// history with the list that state makes (rates included).
func (s *Server) sample(now time.Time) {
	cur := map[string]*engine.Counters{}
	if c := s.role.Client; c != nil {
		st := c.ClientStatus()
		cur[keyWireGuard] = &st.WireGuard
		for _, l := range st.Links {
			if l.Counters != nil {
				cur[keyLink+l.Name] = l.Counters
			}
		}
		s.rates.observe(now, cur)
		l := s.clientListOf(now, st)
		s.history.record(now, clientPoints(&l))
		return
	}
	st := s.role.Server.ServerStatus()
	cur[keyListen] = &st.Listen
	cur[keyUpstream] = &st.Upstream
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		cur[sessionKey(ss.ID)] = &ss.Counters
		for j := range ss.Addrs {
			cur[keyPeer+ss.Addrs[j].Addr.String()] = &ss.Addrs[j].Counters
		}
	}
	s.rates.observe(now, cur)
	l := s.serverListOf(now, st)
	s.history.record(now, serverPoints(&l))
}
