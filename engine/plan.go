package engine

import (
	"maps"
	"net/netip"
	"slices"
)

// PlanInterfaces returns what a client with cfg would do with each of ifs,
// for `engarde-client list-interfaces`.
func PlanInterfaces(cfg ClientConfig, ifs []Iface) []Plan {
	var r resolver
	p := planner{dst: cfg.DstAddr, overrides: cfg.DstOverrides, excluded: map[string]bool{}, labels: cfg.Labels, resolve: r.resolve}
	for _, x := range cfg.Excluded {
		p.excluded[x] = true
	}
	return p.plan(ifs)
}

// Plan is the client's decision for one interface.
type Plan struct {
	Iface Iface
	// Use says whether a link runs on this interface; Reason says why not.
	Use    bool
	Reason string
	// Excluded says that the reason is an exclusion.
	Excluded bool
	// Tunnel says that the reason is the interface's kind: a tunnel's
	// own interface (tunnelKinds) the configuration does not name.
	Tunnel bool
	// Local and Dst are the link's addresses when Use is set.
	Local netip.Addr
	Dst   netip.AddrPort
	// Label is the interface's label from the configuration, if any.
	Label string
}

// planner decides which interfaces carry a link.
type planner struct {
	dst       string
	overrides map[string]string
	excluded  map[string]bool
	labels    map[string]string
	resolve   func(string) ([]netip.AddrPort, error)
}

// tunnelKinds are the link kinds (Iface.Kind) of interfaces that carry a
// tunnel, by the name people know them by: a WireGuard interface, or the
// TUN device of wireguard-go, OpenVPN and other userspace tunnels (the
// kernel's tun driver names TAP devices "tun" too). A link on one would
// send engarde's packets into a tunnel, perhaps the very one they carry:
// a loop, or at best a link that dies with the tunnel. Other tunnel kinds
// (gre, ipip, sit, vxlan) are plain links: they are not how engarde's own
// tunnel runs, and some are uplinks. The device type would be no better a
// sign: ARPHRD_NONE is TUN's and WireGuard's, but also a cellular modem's
// in raw-IP mode (qmi_wwan), an uplink.
var tunnelKinds = map[string]string{
	"wireguard": "WireGuard",
	"tun":       "TUN/TAP",
}

// named reports whether the configuration names the interface as one to
// use: a label or a destination of its own. It lets a tunnel's interface
// be a link when someone wants it (a WireGuard tunnel to another site as
// one path among others, say): no other key says "use this one".
func (p *planner) named(name string) bool {
	_, labelled := p.labels[name]
	_, overridden := p.overrides[name]
	return labelled || overridden
}

// target returns the destination configured for an interface.
func (p *planner) target(name string) string {
	if o, ok := p.overrides[name]; ok {
		return o
	}
	return p.dst
}

func (p *planner) plan(ifs []Iface) []Plan {
	out := make([]Plan, 0, len(ifs))
	for _, ifi := range ifs {
		out = append(out, p.planOne(ifi))
	}
	return out
}

func (p *planner) planOne(ifi Iface) Plan {
	pl := Plan{Iface: ifi, Label: p.labels[ifi.Name]}
	switch {
	case p.excluded[ifi.Name]:
		pl.Reason, pl.Excluded = "excluded", true
		return pl
	case ifi.Loopback:
		pl.Reason = "loopback"
		return pl
	case tunnelKinds[ifi.Kind] != "" && !p.named(ifi.Name):
		pl.Reason, pl.Tunnel = tunnelKinds[ifi.Kind]+" interface, not a link unless named in interfaceLabels or dstOverrides", true
		return pl
	case !ifi.Up:
		pl.Reason = "interface down"
		return pl
	case !ifi.Running:
		pl.Reason = "no carrier"
		return pl
	}
	dst := p.target(ifi.Name)
	dsts, err := p.resolve(dst)
	if err != nil {
		pl.Reason = "destination " + dst + " unresolved: " + err.Error()
		return pl
	}
	for _, d := range dsts {
		for _, a := range ifi.Addrs {
			if usableSource(a, d.Addr()) {
				pl.Use, pl.Local, pl.Dst = true, a, d
				return pl
			}
		}
	}
	fam := "IPv4"
	if len(dsts) > 0 && dsts[0].Addr().Is6() {
		fam = "IPv6"
	}
	pl.Reason = "no usable " + fam + " address"
	return pl
}

// usableSource reports whether a can source packets to dst: same family,
// unicast, not link-local, and not loopback unless dst is.
func usableSource(a, dst netip.Addr) bool {
	if a.Is4() != dst.Is4() {
		return false
	}
	if a.IsLoopback() {
		return dst.IsLoopback()
	}
	return a.IsGlobalUnicast()
}

// unknownName is an interface name the configuration mentions that no
// interface has, with the keys that mention it.
type unknownName struct {
	name string
	keys []string
}

// unknownNames returns, sorted by name, the interfaces that the
// configuration's overrides, exclusions and labels name and ifs lacks.
func unknownNames(overrides map[string]string, excluded []string, labels map[string]string, ifs []Iface) []unknownName {
	have := make(map[string]bool, len(ifs))
	for _, ifi := range ifs {
		have[ifi.Name] = true
	}
	keys := map[string][]string{}
	note := func(name, key string) {
		if !have[name] && !slices.Contains(keys[name], key) {
			keys[name] = append(keys[name], key)
		}
	}
	// In the keys' order, so that a name's keys are listed sorted.
	for name := range overrides {
		note(name, "dstOverrides")
	}
	for _, name := range excluded {
		note(name, "excludedInterfaces")
	}
	for name := range labels {
		note(name, "interfaceLabels")
	}
	out := make([]unknownName, 0, len(keys))
	for _, name := range slices.Sorted(maps.Keys(keys)) {
		out = append(out, unknownName{name, keys[name]})
	}
	return out
}
