package control

import (
	"cmp"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The history the page draws: the last ten minutes of each link (client)
// or session slot (server) and of the tunnel, one sample per tick of the
// rate sampler, kept in memory in fixed-size rings. It is fed from the
// API's own view of each sample (ClientList, ServerList), so a state in
// the history is the word the list said at that second.

// historyLen is how many samples a series keeps: ten minutes at one
// sample a second.
const historyLen = int(10 * time.Minute / sampleEvery)

// maxSeries bounds the series kept, tunnel included: about 12 KiB each,
// 3 MiB in all, however many clients a server has. A series for a link or
// slot that is gone stays until its samples leave the window, or until a
// newcomer needs its place; while every place holds a series present in
// the last sample, newcomers are refused and counted.
const maxSeries = 256

// The values a sample holds besides the state.
const (
	valRTT    = iota // probes' round trip, median, in ms
	valLoss          // share of the probes' window unanswered
	valMissed        // share of sampled messages not delivered while another link did, over the tick
	valRx            // received, pkt/s
	valTx            // sent, pkt/s
	numVals
)

// stateNames are the states a series' codes stand for; code 0 is "no
// sample" (the link or slot did not exist at that second). The words are
// those of the list: link states, then the tunnel's own.
var stateNames = []string{"", "active", "stalled", "down", "excluded", "up", "degraded", "unknown"}

// stateCode is the code of a state word; a word not in stateNames is
// "unknown" rather than no sample.
func stateCode(s string) uint8 {
	if i := slices.Index(stateNames, s); i > 0 {
		return uint8(i)
	}
	return uint8(len(stateNames) - 1)
}

// series is one link's, slot's or the tunnel's ring of samples, aligned
// on the history's ring of times.
type series struct {
	key     string
	meta    seriesMeta
	seen    uint64 // the tick it was last present in
	wrote   uint64 // 1 + the tick it was last written at
	state   [historyLen]uint8
	vals    [numVals][historyLen]float32
	prevQ   qualityCounts // at the last tick, if hasPrev
	hasPrev bool
}

// seriesMeta says what a series is of.
type seriesMeta struct {
	kind    string // "tunnel", "link" or "slot"
	link    string // the interface (link)
	session uint64 // the session and its slot (slot)
	slot    int
	address string // the slot's client address at the last sample
}

// qualityCounts are the duplicate filter's counts of a link, from which
// the share missed over a tick is computed.
type qualityCounts struct{ samples, lost uint64 }

// point is one series' sample at a tick.
type point struct {
	key     string
	meta    seriesMeta
	state   string
	vals    [numVals]float32 // NaN: not measured
	quality *qualityCounts   // nil: no duplicate filter figures
}

// history holds the series. The sampler writes it once a tick; handlers
// read it.
type history struct {
	mu      sync.Mutex // guards what follows
	tick    uint64     // samples taken; the next is written at tick % historyLen
	times   [historyLen]int64
	series  map[string]*series
	refused uint64 // newcomers not kept, every place being taken by a present series
}

func newHistory() *history { return &history{series: map[string]*series{}} }

// record writes one sample taken at now: a value for every series in
// points, "no sample" for every other series.
func (h *history) record(now time.Time, points []point) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pos := int(h.tick % uint64(historyLen))
	h.times[pos] = now.UnixMilli()
	for i := range points {
		p := &points[i]
		se := h.series[p.key]
		if se == nil {
			if se = h.addLocked(p.key); se == nil {
				h.refused++
				continue
			}
		}
		if se.wrote == h.tick+1 {
			continue // the same key twice in one sample: the first counts
		}
		se.meta, se.seen, se.wrote = p.meta, h.tick, h.tick+1
		se.state[pos] = stateCode(p.state)
		for v := range numVals {
			se.vals[v][pos] = p.vals[v]
		}
		se.vals[valMissed][pos] = nan32
		q := p.quality
		if q != nil && se.hasPrev {
			prev := se.prevQ
			if q.samples < prev.samples || q.lost < prev.lost {
				prev = qualityCounts{} // a new socket counts from zero
			}
			if n := q.samples - prev.samples; n > 0 {
				se.vals[valMissed][pos] = round32(float64(q.lost-prev.lost)/float64(n), 1e-4)
			}
		}
		if se.hasPrev = q != nil; q != nil {
			se.prevQ = *q
		}
	}
	for key, se := range h.series {
		if se.seen == h.tick {
			continue
		}
		se.hasPrev = false
		if h.tick-se.seen >= uint64(historyLen) {
			delete(h.series, key) // nothing left in the window
			continue
		}
		clearSample(se, pos)
	}
	h.tick++
}

// addLocked makes a series for key, in a free place or in that of the
// series seen least recently if it was absent from the last sample too;
// nil when every place holds a series that is present.
func (h *history) addLocked(key string) *series {
	var se *series
	if len(h.series) >= maxSeries {
		var victim *series
		for _, s := range h.series {
			if victim == nil || s.seen < victim.seen || s.seen == victim.seen && s.key < victim.key {
				victim = s
			}
		}
		if victim.seen+1 >= h.tick {
			return nil
		}
		delete(h.series, victim.key)
		se = victim
	} else {
		se = &series{}
	}
	se.key, se.seen, se.wrote, se.hasPrev = key, h.tick, 0, false
	for pos := range historyLen {
		clearSample(se, pos)
	}
	h.series[key] = se
	return se
}

func clearSample(se *series, pos int) {
	se.state[pos] = 0
	for v := range numVals {
		se.vals[v][pos] = float32(math.NaN())
	}
}

// round32 is v to a multiple of unit, as a float32; NaN stays NaN.
func round32(v, unit float64) float32 {
	return float32(math.Round(v/unit) * unit)
}

// History is the answer to GET /api/v1/history: the samples of the last
// ten minutes, oldest first, taken after Since.
type History struct {
	// Step is the sampling period in seconds; Length how many samples a
	// series keeps at most.
	Step   float64 `json:"step"`
	Length int     `json:"length"`
	// Since repeats the request's since (0: everything kept).
	Since int64 `json:"since"`
	// States are the words the series' state codes stand for: code i is
	// States[i]; null is no sample (the link or slot did not exist).
	States []string `json:"states"`
	// Times are the samples' times in Unix milliseconds; every series
	// has one value per time.
	Times []int64 `json:"times"`
	// Series are the tunnel's, every link's (client) or every session
	// slot's (server), by key.
	Series []Series `json:"series"`
	// Refused counts the series not kept since the start because every
	// place was taken (at most 256).
	Refused uint64 `json:"refused"`
}

// Series is one history series. Values are null where nothing was
// measured.
type Series struct {
	// Key names the series: "tunnel", "link/NAME", or
	// "session/ID/slot/N".
	Key string `json:"key"`
	// Kind is "tunnel", "link" or "slot".
	Kind string `json:"kind"`
	// Link is the interface of a link; Session, Slot and Address (the
	// last one seen) a slot's.
	Link    string `json:"link,omitempty"`
	Session uint64 `json:"session,omitempty"`
	Slot    int    `json:"slot,omitempty"`
	Address string `json:"address,omitempty"`
	// State holds codes into History.States.
	State Codes `json:"state"`
	// RTTP50Ms and Loss are the probes' median round trip and the share
	// unanswered over their window (client, with probes on); Missed is
	// the share of the sampled messages the link did not deliver while
	// another did, over the sampling period; RxPps and TxPps the rates
	// (for the tunnel on a client: from WireGuard, and back to it; on a
	// server: what went to WireGuard, and its replies).
	RTTP50Ms Values `json:"rttP50Ms"`
	Loss     Values `json:"loss"`
	Missed   Values `json:"missed"`
	RxPps    Values `json:"rxPps"`
	TxPps    Values `json:"txPps"`
}

// Values are samples in JSON: NaN, not measured, is null.
type Values []float32

// MarshalJSON writes the values as numbers, NaN as null.
func (v Values) MarshalJSON() ([]byte, error) {
	return v.appendJSON(make([]byte, 0, 2+6*len(v))), nil
}

func (v Values) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, float64(x), 'f', -1, 32)
	}
	return append(b, ']')
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Values) UnmarshalJSON(b []byte) error {
	var ps []*float32
	if err := json.Unmarshal(b, &ps); err != nil {
		return err
	}
	*v = make(Values, len(ps))
	for i, p := range ps {
		(*v)[i] = float32(math.NaN())
		if p != nil {
			(*v)[i] = *p
		}
	}
	return nil
}

// Codes are state codes in JSON: 0, no sample, is null.
type Codes []uint8

// MarshalJSON writes the codes as numbers, 0 as null (not base64, as
// encoding/json would a []uint8).
func (c Codes) MarshalJSON() ([]byte, error) {
	return c.appendJSON(make([]byte, 0, 2+2*len(c))), nil
}

func (c Codes) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, x := range c {
		if i > 0 {
			b = append(b, ',')
		}
		if x == 0 {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendUint(b, uint64(x), 10)
	}
	return append(b, ']')
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Codes) UnmarshalJSON(b []byte) error {
	var ps []*uint8
	if err := json.Unmarshal(b, &ps); err != nil {
		return err
	}
	*c = make(Codes, len(ps))
	for i, p := range ps {
		if p != nil {
			(*c)[i] = *p
		}
	}
	return nil
}

// snapshot returns the samples taken after since (Unix ms), oldest first.
func (h *history) snapshot(since int64) History {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := History{Step: sampleEvery.Seconds(), Length: historyLen, Since: since, States: stateNames, Times: []int64{}, Series: make([]Series, 0, len(h.series)), Refused: h.refused}
	n := min(h.tick, uint64(historyLen))
	var positions []int
	for t := h.tick - n; t < h.tick; t++ {
		pos := int(t % uint64(historyLen))
		if h.times[pos] > since {
			positions = append(positions, pos)
			out.Times = append(out.Times, h.times[pos])
		}
	}
	for _, se := range h.series {
		s := Series{Key: se.key, Kind: se.meta.kind, Link: se.meta.link, Session: se.meta.session, Slot: se.meta.slot, Address: se.meta.address,
			State: make(Codes, len(positions))}
		vals := [numVals]*Values{&s.RTTP50Ms, &s.Loss, &s.Missed, &s.RxPps, &s.TxPps}
		for v := range numVals {
			*vals[v] = make(Values, len(positions))
		}
		for i, pos := range positions {
			s.State[i] = se.state[pos]
			for v := range numVals {
				(*vals[v])[i] = se.vals[v][pos]
			}
		}
		out.Series = append(out.Series, s)
	}
	slices.SortFunc(out.Series, func(a, b Series) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// nan32 is "not measured".
var nan32 = float32(math.NaN())

// opt32 is *p to a multiple of unit, or NaN for nil.
func opt32(p *float64, unit float64) float32 {
	if p == nil {
		return nan32
	}
	return round32(*p, unit)
}

// ratePoint fills the rate values of a point from a socket's stats.
func ratePoint(p *point, st *SocketStats) {
	p.vals[valRx] = round32(st.Rates.RxPackets, 0.1)
	p.vals[valTx] = round32(st.Rates.TxPackets, 0.1)
}

func newPoint(key string, meta seriesMeta, state string) point {
	p := point{key: key, meta: meta, state: state}
	for v := range numVals {
		p.vals[v] = nan32
	}
	return p
}

// clientPoints is a client's sample: the tunnel (WireGuard's socket's
// rates) and every interface.
func clientPoints(l *ClientList) []point {
	pts := make([]point, 0, 1+len(l.Interfaces))
	tp := newPoint("tunnel", seriesMeta{kind: "tunnel"}, l.Tunnel.State)
	ratePoint(&tp, &l.WireGuard)
	pts = append(pts, tp)
	for i := range l.Interfaces {
		in := &l.Interfaces[i]
		p := newPoint("link/"+in.Name, seriesMeta{kind: "link", link: in.Name}, in.State)
		if pr := in.Probe; pr != nil {
			p.vals[valRTT] = opt32(pr.RTTP50Ms, 0.01)
			p.vals[valLoss] = opt32(pr.Loss, 1e-4)
		}
		if in.Stats != nil {
			ratePoint(&p, in.Stats)
		}
		if q := in.Quality; q != nil {
			p.quality = &qualityCounts{samples: q.Samples, lost: q.Lost}
		}
		pts = append(pts, p)
	}
	return pts
}

// serverPoints is a server's sample: the tunnel (what went to WireGuard
// and came from it, over every socket) and every session slot. An
// address no longer live is drawn down. Two addresses of a session with
// the same slot (an engine without slots) are told apart by address.
func serverPoints(l *ServerList) []point {
	pts := make([]point, 0, 1+len(l.Sockets))
	tp := newPoint("tunnel", seriesMeta{kind: "tunnel"}, l.Tunnel.State)
	// Rx is what the clients sent through (to WireGuard), Tx the replies.
	rx, tx := l.Upstream.Rates.TxPackets, l.Upstream.Rates.RxPackets
	for i := range l.Sessions {
		rx += l.Sessions[i].Stats.Rates.TxPackets
		tx += l.Sessions[i].Stats.Rates.RxPackets
	}
	tp.vals[valRx], tp.vals[valTx] = round32(rx, 0.1), round32(tx, 0.1)
	pts = append(pts, tp)
	for i := range l.Sessions {
		ss := &l.Sessions[i]
		used := map[int]bool{}
		for j := range ss.Addresses {
			a := &ss.Addresses[j]
			key := "session/" + strconv.FormatUint(ss.ID, 10) + "/slot/" + strconv.Itoa(a.Slot)
			if used[a.Slot] {
				key = "session/" + strconv.FormatUint(ss.ID, 10) + "/address/" + a.Address
			}
			used[a.Slot] = true
			state := a.State
			if !a.Live {
				state = "down"
			}
			p := newPoint(key, seriesMeta{kind: "slot", session: ss.ID, slot: a.Slot, address: a.Address}, state)
			ratePoint(&p, &a.Stats)
			p.quality = &qualityCounts{samples: a.Quality.Samples, lost: a.Quality.Lost}
			pts = append(pts, p)
		}
	}
	return pts
}

// handleHistory serves GET /api/v1/history?since=MS: the samples taken
// after Unix millisecond MS (all that are kept without it).
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "since: want Unix milliseconds, got "+strconv.Quote(v))
			return
		}
		since = n
	}
	h := s.history.snapshot(since)
	b := h.appendJSON(make([]byte, 0, 64<<10))
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))
}

// appendJSON appends h as json.Marshal would write it, without the
// validation pass encoding/json makes over every Marshaler's output:
// a full history is a million values (BenchmarkHistory).
func (h *History) appendJSON(b []byte) []byte {
	b = append(b, `{"step":`...)
	b = strconv.AppendFloat(b, h.Step, 'f', -1, 64)
	b = append(b, `,"length":`...)
	b = strconv.AppendInt(b, int64(h.Length), 10)
	b = append(b, `,"since":`...)
	b = strconv.AppendInt(b, h.Since, 10)
	b = append(b, `,"states":`...)
	b = appendStrings(b, h.States)
	b = append(b, `,"times":[`...)
	for i, t := range h.Times {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, t, 10)
	}
	b = append(b, `],"series":[`...)
	for i := range h.Series {
		s := &h.Series[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendString(b, s.Key)
		b = append(b, `,"kind":`...)
		b = appendString(b, s.Kind)
		if s.Link != "" {
			b = append(b, `,"link":`...)
			b = appendString(b, s.Link)
		}
		if s.Session != 0 {
			b = append(b, `,"session":`...)
			b = strconv.AppendUint(b, s.Session, 10)
		}
		if s.Slot != 0 {
			b = append(b, `,"slot":`...)
			b = strconv.AppendInt(b, int64(s.Slot), 10)
		}
		if s.Address != "" {
			b = append(b, `,"address":`...)
			b = appendString(b, s.Address)
		}
		b = append(b, `,"state":`...)
		b = s.State.appendJSON(b)
		for _, f := range []struct {
			name string
			v    Values
		}{{"rttP50Ms", s.RTTP50Ms}, {"loss", s.Loss}, {"missed", s.Missed}, {"rxPps", s.RxPps}, {"txPps", s.TxPps}} {
			b = append(b, `,"`...)
			b = append(b, f.name...)
			b = append(b, `":`...)
			b = f.v.appendJSON(b)
		}
		b = append(b, '}')
	}
	b = append(b, `],"refused":`...)
	b = strconv.AppendUint(b, h.Refused, 10)
	return append(b, '}')
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}
