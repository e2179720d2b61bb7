package engine

import "net/netip"

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
	case !ifi.Up:
		pl.Reason = "down"
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
