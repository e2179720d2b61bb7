package topo

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestDNSWithGoResolver asks the server through Go's own resolver, the one
// engarde-client uses, on loopback: names resolve to their addresses, an
// unknown name is not found, and with answering off a lookup times out.
func TestDNSWithGoResolver(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]netip.Addr{
		"srv-a.egf.test": {netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("fd00:1::1")},
		"srv-b.egf.test": {netip.MustParseAddr("198.18.2.1")},
	}
	d := NewDNS(pc, names)
	served := make(chan error, 1)
	go func() { served <- d.Serve() }()
	defer func() {
		d.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	lookup := func(name string, d time.Duration) ([]netip.Addr, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return r.LookupNetIP(ctx, "ip", name)
	}

	for _, tc := range []struct {
		name string
		want []string
	}{
		{"srv-a.egf.test", []string{"198.18.1.1", "fd00:1::1"}},
		{"SRV-B.egf.test.", []string{"198.18.2.1"}},
	} {
		got, err := lookup(tc.name, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		slices.Sort(s)
		if !slices.Equal(s, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, s, tc.want)
		}
	}
	_, err = lookup("other.egf.test", 2*time.Second)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("unknown name: %v, want not found", err)
	}
	// The resolver may return at the first of its two answers (A and
	// AAAA): wait for the other before counting.
	answered := d.Answered.Load()
	for settle := time.Now(); time.Since(settle) < 200*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		if n := d.Answered.Load(); n != answered {
			answered, settle = n, time.Now()
		}
	}

	d.SetAnswering(false)
	start := time.Now()
	if _, err := lookup("srv-a.egf.test", 300*time.Millisecond); err == nil {
		t.Errorf("lookup with answering off succeeded")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("lookup with answering off failed after %v, want a timeout", el)
	}
	if d.Dropped.Load() == 0 || d.Answered.Load() != answered {
		t.Errorf("answering off: dropped %d, answered %d (was %d)", d.Dropped.Load(), d.Answered.Load(), answered)
	}
	d.SetAnswering(true)
	if _, err := lookup("srv-b.egf.test", 2*time.Second); err != nil {
		t.Errorf("answering on again: %v", err)
	}
}

// TestDNSAnswerMalformed checks that what is not a query is dropped and
// that a query is answered with its ID and question.
func TestDNSAnswerMalformed(t *testing.T) {
	names := map[string][]netip.Addr{"a.test": {netip.MustParseAddr("198.18.1.1")}}
	query := func(id uint16, flags uint16, qd uint16, name []byte, qtype uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, id)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, qd)
		b = append(b, 0, 0, 0, 0, 0, 0)
		b = append(b, name...)
		b = binary.BigEndian.AppendUint16(b, qtype)
		return binary.BigEndian.AppendUint16(b, dnsClassIN)
	}
	aTest := []byte{1, 'a', 4, 't', 'e', 's', 't', 0}
	for _, tc := range []struct {
		name  string
		q     []byte
		ok    bool
		rcode uint16
		an    uint16
	}{
		{"empty", nil, false, 0, 0},
		{"short", []byte{1, 2, 3}, false, 0, 0},
		{"response", query(1, dnsQR, 1, aTest, dnsTypeA), false, 0, 0},
		{"no question", query(1, 0, 0, aTest, dnsTypeA), false, 0, 0},
		{"pointer in question", query(1, 0, 1, []byte{0xc0, 12}, dnsTypeA), false, 0, 0},
		{"label beyond the end", query(1, 0, 1, []byte{40, 'a'}, dnsTypeA)[:14], false, 0, 0},
		{"root name", query(1, 0, 1, []byte{0}, dnsTypeA), false, 0, 0},
		{"A", query(7, dnsRD, 1, aTest, dnsTypeA), true, dnsNoError, 1},
		{"AAAA of a v4-only name", query(7, 0, 1, aTest, dnsTypeAAAA), true, dnsNoError, 0},
		{"unknown", query(7, 0, 1, []byte{1, 'b', 4, 't', 'e', 's', 't', 0}, dnsTypeA), true, dnsNXDomain, 0},
		{"other opcode", query(7, 2<<11, 1, aTest, dnsTypeA), true, dnsNotImp, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _, ok := dnsAnswer(tc.q, names)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if resp[0] != tc.q[0] || resp[1] != tc.q[1] {
				t.Errorf("ID %x, want %x", resp[:2], tc.q[:2])
			}
			flags := binary.BigEndian.Uint16(resp[2:])
			if flags&dnsQR == 0 || flags&0xf != tc.rcode {
				t.Errorf("flags %#x, want a response with rcode %d", flags, tc.rcode)
			}
			if an := binary.BigEndian.Uint16(resp[6:]); an != tc.an {
				t.Errorf("%d answers, want %d", an, tc.an)
			}
		})
	}
}
