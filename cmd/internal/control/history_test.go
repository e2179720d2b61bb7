package control

import (
	"encoding/json"
	"math"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine"
)

func linkPoint(name, state string, rx float32) point {
	p := newPoint("link/"+name, seriesMeta{kind: "link", link: name}, state)
	p.vals[valRx] = rx
	return p
}

func seriesOf(t *testing.T, h History, key string) Series {
	t.Helper()
	for _, s := range h.Series {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("no series %q in %d", key, len(h.Series))
	return Series{}
}

// TestHistoryRing: the ring keeps the last historyLen samples, oldest
// first, each series aligned on the times, "no sample" where a link did
// not exist; since returns only the samples after it.
func TestHistoryRing(t *testing.T) {
	h := newHistory()
	total := historyLen + 25
	for i := range total {
		pts := []point{linkPoint("eth0", "active", float32(i))}
		if i >= total-10 {
			pts = append(pts, linkPoint("eth1", "down", 0))
		}
		h.record(t0.Add(time.Duration(i)*time.Second), pts)
	}
	snap := h.snapshot(0)
	if len(snap.Times) != historyLen || snap.Length != historyLen || snap.Step != 1 {
		t.Fatalf("%d times (length %d, step %v), want %d", len(snap.Times), snap.Length, snap.Step, historyLen)
	}
	if first := time.UnixMilli(snap.Times[0]); !first.Equal(t0.Add(25 * time.Second)) {
		t.Errorf("oldest sample at %v, want %v", first, t0.Add(25*time.Second))
	}
	e0 := seriesOf(t, snap, "link/eth0")
	if len(e0.RxPps) != historyLen || e0.RxPps[0] != 25 || e0.RxPps[historyLen-1] != float32(total-1) {
		t.Errorf("eth0 rx from %v to %v, want 25 to %d", e0.RxPps[0], e0.RxPps[len(e0.RxPps)-1], total-1)
	}
	if snap.States[e0.State[0]] != "active" || !math.IsNaN(float64(e0.RTTP50Ms[0])) {
		t.Errorf("eth0 first sample state %d rtt %v", e0.State[0], e0.RTTP50Ms[0])
	}
	e1 := seriesOf(t, snap, "link/eth1")
	if e1.State[historyLen-11] != 0 || snap.States[e1.State[historyLen-10]] != "down" || snap.States[e1.State[historyLen-1]] != "down" {
		t.Errorf("eth1 states around its start: %v", e1.State[historyLen-12:])
	}
	// Since: the last three.
	part := h.snapshot(snap.Times[historyLen-4])
	if len(part.Times) != 3 || len(seriesOf(t, part, "link/eth0").RxPps) != 3 || seriesOf(t, part, "link/eth0").RxPps[2] != float32(total-1) {
		t.Errorf("since the fourth last: %d times, %+v", len(part.Times), part.Series)
	}
	// A link gone for the whole window is forgotten.
	for i := range historyLen {
		h.record(t0.Add(time.Duration(total+i)*time.Second), []point{linkPoint("eth0", "active", 1)})
	}
	if _, ok := h.series["link/eth1"]; ok {
		t.Errorf("eth1, gone for ten minutes, still held")
	}
}

// TestHistoryBounded: however many client addresses a server sees, the
// history holds at most maxSeries series; a series gone from the last
// sample gives its place to a newcomer, present ones are kept and the
// newcomers refused are counted.
func TestHistoryBounded(t *testing.T) {
	h := newHistory()
	var pts []point
	for i := range maxSeries + 40 {
		pts = append(pts, linkPoint("x"+strconv.Itoa(i), "active", 1))
	}
	h.record(t0, pts)
	h.record(t0.Add(time.Second), pts)
	if len(h.series) != maxSeries || h.refused != 80 {
		t.Fatalf("%d series, %d refused; want %d and 80", len(h.series), h.refused, maxSeries)
	}
	// The first 40 go away; after one sample without them, the 40
	// refused take their places.
	h.record(t0.Add(2*time.Second), pts[40:])
	h.record(t0.Add(3*time.Second), pts[40:])
	if len(h.series) != maxSeries {
		t.Fatalf("%d series, want %d", len(h.series), maxSeries)
	}
	for _, p := range pts[maxSeries:] {
		if h.series[p.key] == nil {
			t.Fatalf("newcomer %s refused although gone series held places", p.key)
		}
	}
	for _, p := range pts[:40] {
		if h.series[p.key] != nil {
			t.Errorf("gone %s kept over a newcomer", p.key)
		}
	}
	// A newcomer's ring holds no sample from the series it replaced.
	s := h.snapshot(0)
	if n := seriesOf(t, s, pts[maxSeries].key); n.State[0] != 0 || n.State[1] != 0 || n.State[3] == 0 {
		t.Errorf("newcomer states %v, want none before its arrival", n.State)
	}
}

// TestHistoryMissed: the share missed is over each sampling period, from
// the duplicate filter's counts; a socket rebuilt from zero counts from
// zero, and a period without samples has no figure.
func TestHistoryMissed(t *testing.T) {
	h := newHistory()
	q := func(samples, lost uint64) point {
		p := linkPoint("eth0", "active", 0)
		p.quality = &qualityCounts{samples: samples, lost: lost}
		return p
	}
	for i, p := range []point{q(100, 10), q(200, 10), q(300, 60), q(300, 60), q(50, 5)} {
		h.record(t0.Add(time.Duration(i)*time.Second), []point{p})
	}
	m := seriesOf(t, h.snapshot(0), "link/eth0").Missed
	want := []float64{math.NaN(), 0, 0.5, math.NaN(), 0.1}
	for i, w := range want {
		if math.IsNaN(w) != math.IsNaN(float64(m[i])) || !math.IsNaN(w) && math.Abs(float64(m[i])-w) > 1e-6 {
			t.Errorf("missed %v, want %v", m, want)
			break
		}
	}
}

// TestHistoryAPI: GET /api/v1/history serves the sampler's history of a
// client: the tunnel and each link, with its state as the list says it,
// its rates and its probe figures; null where nothing was measured; the
// same authentication as the list.
func TestHistoryAPI(t *testing.T) {
	f := newFakeClient()
	r50, r99 := 12*time.Millisecond, 30*time.Millisecond
	f.links[0].Probe = &engine.ProbeStats{Sent: 50, Answered: 48, Window: 40, Lost: 2, RTT50: r50, RTT99: r99, Jitter: time.Millisecond, LastAnswer: time.Now()}
	f.links[0].Quality = engine.Quality{Samples: 100, Lost: 0}
	f.links[1].Status = "stalled"
	s := newTest(t, Options{Username: "u", Password: "p"}, Role{Client: f})
	s.sample(t0)
	f.mu.Lock()
	f.links[0].Counters.RxPackets += 500
	f.links[0].Quality = engine.Quality{Samples: 200, Lost: 25}
	f.mu.Unlock()
	s.sample(t0.Add(time.Second))

	if code, _, _ := do(t, s.Handler(), "GET", "/api/v1/history", ""); code != 401 {
		t.Errorf("without credentials: %d, want 401", code)
	}
	auth := "Basic dTpw" // u:p
	code, hdr, body := do(t, s.Handler(), "GET", "/api/v1/history", "", "Authorization", auth)
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q: %s", code, hdr.Get("Content-Type"), body)
	}
	var h History
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Times) != 2 || h.Times[1] != t0.Add(time.Second).UnixMilli() {
		t.Fatalf("times %v", h.Times)
	}
	tun := seriesOf(t, h, "tunnel")
	// The fake reports no tunnel state: a sample all the same.
	if tun.Kind != "tunnel" || h.States[tun.State[1]] != "unknown" || tun.RxPps[1] != 0 {
		t.Errorf("tunnel series %+v", tun)
	}
	eth0 := seriesOf(t, h, "link/eth0")
	if eth0.Kind != "link" || eth0.Link != "eth0" || h.States[eth0.State[1]] != "active" || eth0.RxPps[1] != 500 || eth0.RTTP50Ms[1] != 12 ||
		math.Abs(float64(eth0.Loss[1])-0.05) > 1e-6 || math.Abs(float64(eth0.Missed[1])-0.25) > 1e-6 {
		t.Errorf("eth0 series %+v", eth0)
	}
	// wlan0 is stalled, as in the list.
	if w := seriesOf(t, h, "link/wlan0"); h.States[w.State[1]] != "stalled" || !math.IsNaN(float64(w.RTTP50Ms[1])) {
		t.Errorf("wlan0 series %+v", w)
	}
	// An excluded link has a state, and no rates.
	if w := seriesOf(t, h, "link/wg0"); h.States[w.State[1]] != "excluded" || !math.IsNaN(float64(w.RxPps[1])) {
		t.Errorf("wg0 series %+v", w)
	}
	// Unmeasured is null in the JSON, and states are numbers, not base64.
	if !strings.Contains(body, `"key":"link/wg0","kind":"link","link":"wg0","state":[4,4],"rttP50Ms":[null,null]`) {
		t.Errorf("wg0 not in its shape: %s", body)
	}
	// since: only what came after.
	_, _, body = do(t, s.Handler(), "GET", "/api/v1/history?since="+strconv.FormatInt(h.Times[0], 10), "", "Authorization", auth)
	var part History
	json.Unmarshal([]byte(body), &part)
	if len(part.Times) != 1 || len(seriesOf(t, part, "link/eth0").State) != 1 {
		t.Errorf("since the first sample: %s", body)
	}
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/api/v1/history?since=yesterday", 400},
		{"GET", "/api/v1/history?since=-1", 400},
		{"POST", "/api/v1/history", 405},
		{"HEAD", "/api/v1/history", 200},
	} {
		if code, _, body := do(t, s.Handler(), c.method, c.path, "", "Authorization", auth); code != c.code {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.code)
		}
	}
}

// TestHistoryJSON: the handler's hand-written JSON is what json.Marshal
// writes of the same History.
func TestHistoryJSON(t *testing.T) {
	h := newHistory()
	p := linkPoint("eth\"0<", "active", 1.5)
	p.quality = &qualityCounts{samples: 10, lost: 1}
	q := newPoint("session/3/slot/2", seriesMeta{kind: "slot", session: 3, slot: 2, address: "[fd00::1]:5"}, "stalled")
	h.record(t0, []point{p, q})
	p.quality = &qualityCounts{samples: 30, lost: 2}
	h.record(t0.Add(time.Second), []point{p})
	snap := h.snapshot(0)
	want, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.appendJSON(nil); string(got) != string(want) {
		t.Errorf("appendJSON:\n%s\njson.Marshal:\n%s", got, want)
	}
}

// TestHistoryServer: a server's history has a series per session slot,
// named by session and slot so that a NAT rebind continues it; an address
// no longer live is down; two addresses sharing a slot (an engine without
// slots) get a series each.
func TestHistoryServer(t *testing.T) {
	f := newFakeServer()
	f.sessions[0].Addrs[0].Slot, f.sessions[0].Addrs[1].Slot = 1, 2
	f.sessions[0].Addrs[1].Status = "stalled"
	s := newTest(t, Options{}, Role{Server: f})
	s.sample(t0)
	// The first address rebinds: a new port, the same slot.
	f.sessions[0].Addrs[0].Addr = netip.MustParseAddrPort("198.18.1.2:40999")
	f.sessions[0].Addrs[0].Counters.RxPackets += 300
	s.sample(t0.Add(time.Second))
	h := s.history.snapshot(0)
	a := seriesOf(t, h, "session/1/slot/1")
	if a.Kind != "slot" || a.Session != 1 || a.Slot != 1 || a.Address != "198.18.1.2:40999" || h.States[a.State[0]] != "active" || h.States[a.State[1]] != "active" || a.RxPps[1] != 0 {
		t.Errorf("slot 1 %+v", a)
	}
	if b := seriesOf(t, h, "session/1/slot/2"); h.States[b.State[1]] != "stalled" {
		t.Errorf("slot 2 state %v, want stalled", b.State)
	}
	// Session 7's only address is silent past the client timeout.
	if c := seriesOf(t, h, "session/7/slot/0"); h.States[c.State[1]] != "down" {
		t.Errorf("session 7 slot 0 state %v, want down", c.State)
	}
	if len(h.Series) != 4 {
		t.Errorf("%d series, want the tunnel and three slots", len(h.Series))
	}
	f.sessions[0].Addrs[1].Slot = 1
	s.sample(t0.Add(2 * time.Second))
	h = s.history.snapshot(0)
	if d := seriesOf(t, h, "session/1/address/[fd00:2::2]:40001"); d.State[2] == 0 {
		t.Errorf("a second address in slot 1 not kept apart: %+v", d)
	}
}

// TestHistorySampled: the sampler that the server runs while it serves
// records the history, and the page reads it from the page's path.
func TestHistorySampled(t *testing.T) {
	s := newTest(t, Options{}, Role{Client: newFakeClient()})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	stop := make(chan struct{})
	s.stopped.Add(1)
	go s.sampleLoop(stop)
	defer func() { close(stop); s.stopped.Wait() }()
	deadline := time.Now().Add(3 * time.Second)
	for len(s.history.snapshot(0).Times) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the sampler recorded fewer than two samples in 3 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkHistory measures the sampler's cost per tick and the answer to
// a first load (everything kept) with the history full: maxSeries series
// of historyLen samples each.
func BenchmarkHistory(b *testing.B) {
	h := newHistory()
	pts := make([]point, maxSeries)
	for i := range pts {
		pts[i] = linkPoint("x"+strconv.Itoa(i), "active", 1234.5)
		pts[i].vals[valRTT], pts[i].vals[valLoss] = 12.34, 0.0125
		pts[i].quality = &qualityCounts{}
	}
	for i := range historyLen {
		h.record(t0.Add(time.Duration(i)*time.Second), pts)
	}
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		i := historyLen
		for b.Loop() {
			h.record(t0.Add(time.Duration(i)*time.Second), pts)
			i++
		}
	})
	b.Run("first-load", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			snap := h.snapshot(0)
			n = len(snap.appendJSON(nil))
		}
		b.ReportMetric(float64(n), "bytes/answer")
	})
	b.Run("one-second", func(b *testing.B) {
		b.ReportAllocs()
		since := h.snapshot(0).Times[historyLen-2]
		var n int
		for b.Loop() {
			snap := h.snapshot(since)
			n = len(snap.appendJSON(nil))
		}
		b.ReportMetric(float64(n), "bytes/answer")
	})
}
