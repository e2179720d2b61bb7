package engine

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestPlanOne decides, interface by interface, whether a link runs and
// from which source address to which destination.
func TestPlanOne(t *testing.T) {
	const (
		dst4    = "203.0.113.1:51820"
		dst6    = "[2001:db8::1]:51820"
		dual    = "dual.example:51820" // IPv4 first, as resolveName sorts
		only6   = "six.example:51820"
		bad     = "bad.example:51820"
		empty   = "empty.example:51820"
		special = "[2001:db8::99]:4000"
	)
	errNX := errors.New("no such host")
	answers := map[string][]netip.AddrPort{
		dst4:    {netip.MustParseAddrPort(dst4)},
		dst6:    {netip.MustParseAddrPort(dst6)},
		dual:    {netip.MustParseAddrPort("203.0.113.1:51820"), netip.MustParseAddrPort("[2001:db8::1]:51820")},
		only6:   {netip.MustParseAddrPort(dst6)},
		empty:   {},
		special: {netip.MustParseAddrPort(special)},
	}
	addrs := func(ss ...string) []netip.Addr {
		var r []netip.Addr
		for _, s := range ss {
			r = append(r, netip.MustParseAddr(s))
		}
		return r
	}
	up := func(name string, as ...string) Iface {
		return Iface{Name: name, Index: 2, Up: true, Running: true, Addrs: addrs(as...)}
	}
	kind := func(k string, ifi Iface) Iface { ifi.Kind = k; return ifi }
	const (
		wgSkip  = "WireGuard interface, not a link unless named in interfaceLabels or dstOverrides"
		tunSkip = "TUN/TAP interface, not a link unless named in interfaceLabels or dstOverrides"
	)
	tests := []struct {
		name      string
		dst       string
		overrides map[string]string
		excluded  []string
		ifi       Iface
		// want: use, or the reason (a prefix for "unresolved").
		use      bool
		local    string
		wantDst  string
		reason   string
		resolved bool // the destination was looked up
	}{
		{name: "usable IPv4", dst: dst4, ifi: up("eth0", "192.0.2.10"), use: true, local: "192.0.2.10", wantDst: dst4, resolved: true},
		{name: "excluded", dst: dst4, excluded: []string{"eth0"}, ifi: up("eth0", "192.0.2.10"), reason: "excluded"},
		{name: "excluded wins over down", dst: dst4, excluded: []string{"eth0"}, ifi: Iface{Name: "eth0"}, reason: "excluded"},
		{name: "another interface excluded", dst: dst4, excluded: []string{"eth1"}, ifi: up("eth0", "192.0.2.10"), use: true, local: "192.0.2.10", wantDst: dst4, resolved: true},
		{name: "loopback", dst: dst4, ifi: Iface{Name: "lo", Up: true, Running: true, Loopback: true, Addrs: addrs("127.0.0.1", "::1")}, reason: "loopback"},
		{name: "administratively down", dst: dst4, ifi: Iface{Name: "eth0", Running: true, Addrs: addrs("192.0.2.10")}, reason: "interface down"},
		{name: "no carrier", dst: dst4, ifi: Iface{Name: "eth0", Up: true, Addrs: addrs("192.0.2.10")}, reason: "no carrier"},
		{name: "no address", dst: dst4, ifi: up("eth0"), reason: "no usable IPv4 address", resolved: true},
		{name: "IPv4 link-local only", dst: dst4, ifi: up("eth0", "169.254.7.7", "fe80::1"), reason: "no usable IPv4 address", resolved: true},
		{name: "IPv6 link-local only", dst: dst6, ifi: up("eth0", "fe80::1", "192.0.2.10"), reason: "no usable IPv6 address", resolved: true},
		{name: "IPv6 global beside link-local", dst: dst6, ifi: up("eth0", "fe80::1", "192.0.2.10", "2001:db8:1::10"), use: true, local: "2001:db8:1::10", wantDst: dst6, resolved: true},
		{name: "IPv4 destination picks the IPv4 source", dst: dst4, ifi: up("eth0", "fe80::1", "2001:db8:1::10", "192.0.2.10"), use: true, local: "192.0.2.10", wantDst: dst4, resolved: true},
		{name: "multicast and unspecified are not sources", dst: dst4, ifi: up("eth0", "224.0.0.1", "0.0.0.0"), reason: "no usable IPv4 address", resolved: true},
		{name: "both families: IPv4 first", dst: dual, ifi: up("eth0", "2001:db8:1::10", "192.0.2.10"), use: true, local: "192.0.2.10", wantDst: "203.0.113.1:51820", resolved: true},
		{name: "both families: IPv6 when the interface has only IPv6", dst: dual, ifi: up("wwan0", "fe80::1", "2001:db8:1::10"), use: true, local: "2001:db8:1::10", wantDst: "[2001:db8::1]:51820", resolved: true},
		{name: "IPv6-only name, IPv4-only interface", dst: only6, ifi: up("eth0", "192.0.2.10"), reason: "no usable IPv6 address", resolved: true},
		{name: "name without addresses", dst: empty, ifi: up("eth0", "192.0.2.10"), reason: "no usable IPv4 address", resolved: true},
		{name: "unresolvable destination", dst: bad, ifi: up("eth0", "192.0.2.10"), reason: "destination " + bad + " unresolved: " + errNX.Error(), resolved: true},
		{name: "unresolvable destination, interface down", dst: bad, ifi: Iface{Name: "eth0"}, reason: "interface down"},
		{name: "override for this interface", dst: dst4, overrides: map[string]string{"wwan0": special}, ifi: up("wwan0", "192.0.2.10", "2001:db8:1::10"), use: true, local: "2001:db8:1::10", wantDst: special, resolved: true},
		{name: "override for another interface", dst: dst4, overrides: map[string]string{"wwan0": special}, ifi: up("eth0", "192.0.2.10", "2001:db8:1::10"), use: true, local: "192.0.2.10", wantDst: dst4, resolved: true},
		{name: "unresolvable override", dst: dst4, overrides: map[string]string{"eth0": bad}, ifi: up("eth0", "192.0.2.10"), reason: "destination " + bad + " unresolved: " + errNX.Error(), resolved: true},
		// A tunnel's own interface is no link unless the configuration
		// names it (eth0 and wwan0 have labels here).
		{name: "WireGuard interface", dst: dst4, ifi: kind("wireguard", up("wg0", "10.9.0.2")), reason: wgSkip},
		{name: "TUN device", dst: dst4, ifi: kind("tun", up("tun0", "10.8.0.2")), reason: tunSkip},
		{name: "WireGuard interface down: its kind is the lasting reason", dst: dst4, ifi: kind("wireguard", Iface{Name: "wg0", Addrs: addrs("10.9.0.2")}), reason: wgSkip},
		{name: "excluded wins over the kind", dst: dst4, excluded: []string{"wg0"}, ifi: kind("wireguard", up("wg0", "10.9.0.2")), reason: "excluded"},
		{name: "loopback wins over the kind", dst: dst4, ifi: kind("tun", Iface{Name: "lo", Up: true, Running: true, Loopback: true}), reason: "loopback"},
		{name: "WireGuard interface with a label", dst: dst4, ifi: kind("wireguard", up("eth0", "10.9.0.2")), use: true, local: "10.9.0.2", wantDst: dst4, resolved: true},
		{name: "TUN device with an override", dst: dst4, overrides: map[string]string{"tun0": special}, ifi: kind("tun", up("tun0", "10.8.0.2", "2001:db8:8::2")), use: true, local: "2001:db8:8::2", wantDst: special, resolved: true},
		{name: "an override for another interface names not this one", dst: dst4, overrides: map[string]string{"tun1": special}, ifi: kind("tun", up("tun0", "10.8.0.2")), reason: tunSkip},
		{name: "other kinds are plain links", dst: dst4, ifi: kind("veth", up("veth0", "192.0.2.10")), use: true, local: "192.0.2.10", wantDst: dst4, resolved: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			p := planner{
				dst:       tt.dst,
				overrides: tt.overrides,
				excluded:  map[string]bool{},
				labels:    map[string]string{"eth0": "fibre", "wwan0": "lte"},
				resolve: func(s string) ([]netip.AddrPort, error) {
					asked = append(asked, s)
					if a, ok := answers[s]; ok {
						return a, nil
					}
					return nil, errNX
				},
			}
			for _, x := range tt.excluded {
				p.excluded[x] = true
			}
			pl := p.planOne(tt.ifi)
			if pl.Iface.Name != tt.ifi.Name {
				t.Errorf("plan for %q, want %q", pl.Iface.Name, tt.ifi.Name)
			}
			if want := p.labels[tt.ifi.Name]; pl.Label != want {
				t.Errorf("label %q, want %q", pl.Label, want)
			}
			if pl.Excluded != (tt.reason == "excluded") {
				t.Errorf("Excluded %v with reason %q", pl.Excluded, pl.Reason)
			}
			if pl.Tunnel != (tt.reason == wgSkip || tt.reason == tunSkip) {
				t.Errorf("Tunnel %v with reason %q", pl.Tunnel, pl.Reason)
			}
			if pl.Use != tt.use || pl.Reason != tt.reason {
				t.Fatalf("use %v, reason %q; want use %v, reason %q", pl.Use, pl.Reason, tt.use, tt.reason)
			}
			if tt.use {
				if pl.Local != netip.MustParseAddr(tt.local) || pl.Dst != netip.MustParseAddrPort(tt.wantDst) {
					t.Errorf("link %v -> %v, want %v -> %v", pl.Local, pl.Dst, tt.local, tt.wantDst)
				}
			} else if pl.Local.IsValid() || pl.Dst.IsValid() {
				t.Errorf("unused interface has addresses %v -> %v", pl.Local, pl.Dst)
			}
			// An interface that cannot carry a link costs no DNS query.
			if tt.resolved != (len(asked) > 0) {
				t.Errorf("resolved %q; want a lookup: %v", asked, tt.resolved)
			}
		})
	}
}

// TestPlan plans a list of interfaces: one plan each, in order, labels on
// used and unused ones alike.
func TestPlan(t *testing.T) {
	p := planner{
		dst:      "203.0.113.1:51820",
		excluded: map[string]bool{"eth1": true},
		labels:   map[string]string{"eth0": "fibre", "eth1": "backup"},
		resolve: func(s string) ([]netip.AddrPort, error) {
			return []netip.AddrPort{netip.MustParseAddrPort(s)}, nil
		},
	}
	ifs := []Iface{
		{Name: "lo", Up: true, Running: true, Loopback: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		{Name: "eth0", Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
		{Name: "eth1", Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.10")}},
	}
	got := p.plan(ifs)
	if len(got) != len(ifs) {
		t.Fatalf("%d plans for %d interfaces", len(got), len(ifs))
	}
	want := []struct {
		name, label, reason string
		use                 bool
	}{
		{"lo", "", "loopback", false},
		{"eth0", "fibre", "", true},
		{"eth1", "backup", "excluded", false},
	}
	for i, w := range want {
		g := got[i]
		if g.Iface.Name != w.name || g.Label != w.label || g.Reason != w.reason || g.Use != w.use {
			t.Errorf("plan %d: %s label %q use %v reason %q; want %s label %q use %v reason %q",
				i, g.Iface.Name, g.Label, g.Use, g.Reason, w.name, w.label, w.use, w.reason)
		}
	}
}

// TestPlanInterfaces runs the public entry point `engarde-client
// list-interfaces` uses, with literal addresses (no DNS): the configured
// destination, an override, an exclusion, labels, a v4-mapped destination
// unmapped so that an IPv4 source serves it, and a destination that
// cannot be parsed.
func TestPlanInterfaces(t *testing.T) {
	cfg := ClientConfig{
		DstAddr: "203.0.113.1:51820",
		DstOverrides: map[string]string{
			"wwan0": "[2001:db8::1]:4000",
			"eth2":  "[::ffff:198.51.100.1]:51820",
			"eth3":  "no-port-here",
		},
		Excluded: []string{"eth1"},
		Labels:   map[string]string{"eth0": "fibre", "wwan0": "lte"},
	}
	a := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	ifs := []Iface{
		{Name: "eth0", Up: true, Running: true, Addrs: a("192.0.2.10")},
		{Name: "eth1", Up: true, Running: true, Addrs: a("192.0.2.11")},
		{Name: "wwan0", Up: true, Running: true, Addrs: append(a("192.0.2.12"), netip.MustParseAddr("2001:db8:5::1"))},
		{Name: "eth2", Up: true, Running: true, Addrs: a("192.0.2.13")},
		{Name: "eth3", Up: true, Running: true, Addrs: a("192.0.2.14")},
		{Name: "eth4", Up: false, Addrs: a("192.0.2.15")},
	}
	got := PlanInterfaces(cfg, ifs)
	type res struct {
		use          bool
		local, dst   string
		label        string
		reasonPrefix string
	}
	want := map[string]res{
		"eth0":  {use: true, local: "192.0.2.10", dst: "203.0.113.1:51820", label: "fibre"},
		"eth1":  {reasonPrefix: "excluded"},
		"wwan0": {use: true, local: "2001:db8:5::1", dst: "[2001:db8::1]:4000", label: "lte"},
		"eth2":  {use: true, local: "192.0.2.13", dst: "198.51.100.1:51820"},
		"eth3":  {reasonPrefix: "destination no-port-here unresolved: "},
		"eth4":  {reasonPrefix: "interface down"},
	}
	var names []string
	for _, g := range got {
		names = append(names, g.Iface.Name)
		w, ok := want[g.Iface.Name]
		if !ok {
			t.Errorf("unexpected plan for %s", g.Iface.Name)
			continue
		}
		if g.Excluded != (w.reasonPrefix == "excluded") {
			t.Errorf("%s: Excluded %v with reason %q", g.Iface.Name, g.Excluded, g.Reason)
		}
		if g.Use != w.use || g.Label != w.label || !strings.HasPrefix(g.Reason, w.reasonPrefix) || (w.use && g.Reason != "") {
			t.Errorf("%s: use %v label %q reason %q; want use %v label %q reason %q...", g.Iface.Name, g.Use, g.Label, g.Reason, w.use, w.label, w.reasonPrefix)
			continue
		}
		if w.use && (g.Local != netip.MustParseAddr(w.local) || g.Dst != netip.MustParseAddrPort(w.dst)) {
			t.Errorf("%s: link %v -> %v, want %v -> %v", g.Iface.Name, g.Local, g.Dst, w.local, w.dst)
		}
	}
	wantNames := []string{"eth0", "eth1", "wwan0", "eth2", "eth3", "eth4"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("plans for %v, want %v in order", names, wantNames)
	}
}

// TestUsableSource is the source-address rule on its own.
func TestUsableSource(t *testing.T) {
	tests := []struct {
		a, dst string
		want   bool
	}{
		{"192.0.2.10", "203.0.113.1", true},
		{"10.1.2.3", "203.0.113.1", true}, // private addresses are unicast sources
		{"2001:db8::10", "2001:db8::1", true},
		{"fd00::10", "2001:db8::1", true}, // ULA
		{"192.0.2.10", "2001:db8::1", false},
		{"2001:db8::10", "203.0.113.1", false},
		{"::ffff:192.0.2.10", "203.0.113.1", false}, // callers unmap; a mapped address is IPv6 here
		{"169.254.1.1", "203.0.113.1", false},
		{"fe80::1", "2001:db8::1", false},
		{"127.0.0.1", "203.0.113.1", false},
		{"127.0.0.1", "127.0.0.2", true},
		{"::1", "::1", true},
		{"::1", "2001:db8::1", false},
		{"224.0.0.1", "203.0.113.1", false},
		{"0.0.0.0", "203.0.113.1", false},
		{"255.255.255.255", "203.0.113.1", false},
	}
	for _, tt := range tests {
		if got := usableSource(netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.dst)); got != tt.want {
			t.Errorf("usableSource(%s, %s) = %v, want %v", tt.a, tt.dst, got, tt.want)
		}
	}
}

// TestUnknownNames lists the names the configuration gives that no
// interface has, each once with every key that names it, sorted; names
// that exist and an empty configuration give nothing.
func TestUnknownNames(t *testing.T) {
	ifs := []Iface{{Name: "eth0"}, {Name: "wwan0"}}
	tests := []struct {
		name      string
		overrides map[string]string
		excluded  []string
		labels    map[string]string
		want      []unknownName
	}{
		{name: "nothing configured"},
		{name: "all exist", overrides: map[string]string{"eth0": "x:1"}, excluded: []string{"wwan0"}, labels: map[string]string{"eth0": "fibre"}},
		{name: "one of each", overrides: map[string]string{"eth9": "x:1", "eth0": "x:2"}, excluded: []string{"wg0", "wwan0"}, labels: map[string]string{"Ethernet 2": "office"},
			want: []unknownName{{"Ethernet 2", []string{"interfaceLabels"}}, {"eth9", []string{"dstOverrides"}}, {"wg0", []string{"excludedInterfaces"}}}},
		{name: "one name, every key, listed twice", overrides: map[string]string{"usb0": "x:1"}, excluded: []string{"usb0", "usb0"}, labels: map[string]string{"usb0": "phone"},
			want: []unknownName{{"usb0", []string{"dstOverrides", "excludedInterfaces", "interfaceLabels"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unknownNames(tt.overrides, tt.excluded, tt.labels, ifs)
			if !slices.EqualFunc(got, tt.want, func(a, b unknownName) bool { return a.name == b.name && slices.Equal(a.keys, b.keys) }) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
