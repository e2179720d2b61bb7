package main

import (
	"net/netip"
	"testing"

	"github.com/engarde-project/engarde/engine/conn"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want netip.AddrPort
		ok   bool
	}{
		{"127.0.0.1:9999", netip.MustParseAddrPort("127.0.0.1:9999"), true},
		{"[::1]:53", netip.MustParseAddrPort("[::1]:53"), true},
		{":9999", netip.AddrPortFrom(netip.IPv6Unspecified(), 9999), true},
		{"localhost:7", netip.MustParseAddrPort("127.0.0.1:7"), true},
		{"[::ffff:10.0.0.1]:5", netip.MustParseAddrPort("10.0.0.1:5"), true},
		{"127.0.0.1", netip.AddrPort{}, false},
		{"127.0.0.1:http-nope", netip.AddrPort{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := conn.ResolveListen(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("conn.ResolveListen(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && got != tc.want && !(tc.in == "localhost:7" && got == netip.MustParseAddrPort("[::1]:7")) {
				t.Errorf("conn.ResolveListen(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
