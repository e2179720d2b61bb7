package control

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// TestMetricsNames: a destination name's last resolution and whether its
// lookups fail are gauges, once per name however many links use it; a name
// that never resolved has no timestamp.
func TestMetricsNames(t *testing.T) {
	f := newFakeClient()
	at := time.Unix(1700000000, 0)
	f.links[0].Resolution = &engine.NameStatus{Name: "vpn.example:59402", Resolved: at, Err: "i/o timeout", ErrAt: at.Add(time.Minute)}
	f.links[1].Resolution = f.links[0].Resolution
	f.links[2].Resolution = &engine.NameStatus{Name: "never.example:1", Err: "no such host"}
	s := newTest(t, Options{}, Role{Client: f})
	m, _ := scrape(t, s)
	for k, want := range map[string]float64{
		`engarde_destination_resolved_timestamp_seconds{name="vpn.example:59402"}`: 1700000000,
		`engarde_destination_lookup_failing{name="vpn.example:59402"}`:             1,
		`engarde_destination_lookup_failing{name="never.example:1"}`:               1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if _, ok := m[`engarde_destination_resolved_timestamp_seconds{name="never.example:1"}`]; ok {
		t.Error("a timestamp for a name that never resolved")
	}
}

// TestAPINames: each interface of the API names its destination's
// resolution: the answer, its age and the last error with its age; an
// address as destination has none.
func TestAPINames(t *testing.T) {
	f := newFakeClient()
	now := time.Now()
	f.links[0].Resolution = &engine.NameStatus{Name: "vpn.example:59402", Addrs: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:59402")}, Resolved: now.Add(-75 * time.Second), Err: "i/o timeout", ErrAt: now.Add(-3 * time.Second)}
	s := newTest(t, Options{}, Role{Client: f})
	_, _, body := do(t, s.Handler(), "GET", "/api/v1/get-list", "")
	var l ClientList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatal(err)
	}
	r := l.Interfaces[0].Resolution
	if r == nil || r.Name != "vpn.example:59402" || len(r.Addrs) != 1 || r.Addrs[0] != "198.51.100.7:59402" || r.Age == nil || *r.Age < 74 || *r.Age > 80 || r.Error != "i/o timeout" || r.ErrorAge == nil || *r.ErrorAge < 2 || *r.ErrorAge > 9 {
		t.Errorf("resolution %+v in %s", r, body)
	}
	if l.Interfaces[1].Resolution != nil {
		t.Errorf("a resolution for an address: %+v", l.Interfaces[1].Resolution)
	}
}
