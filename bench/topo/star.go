package topo

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Star is one server namespace joined to several client namespaces
// (sites), each by veth links of its own, and to attacker namespaces by one
// veth each. It is the topology of a server with many clients on one port:
//
//	 site 1 (<prefix>c1)           server (<prefix>s)            attacker 1 (<prefix>x1)
//	┌────────────────────┐        ┌──────────────────────┐      ┌─────────────────────┐
//	│ eth-a 198.18.11.2  ├────────┤ s1a 198.18.11.1      │      │                     │
//	│ eth-b 198.18.12.2  ├────────┤ s1b 198.18.12.1      │      │                     │
//	└────────────────────┘        │      x1 198.18.201.1 ├──────┤ eth-x 198.18.201.2  │
//	 site 2 (<prefix>c2)          │                      │      └─────────────────────┘
//	┌────────────────────┐        │                      │
//	│ eth-a 198.18.21.2  ├────────┤ s2a 198.18.21.1      │
//	│ eth-b 198.18.22.2  ├────────┤ s2b 198.18.22.1      │
//	└────────────────────┘        └──────────────────────┘
//
// Link i of site k uses 198.18.<10k+i>.0/24, attacker n 198.18.<200+n>.0/24;
// IPv4 only. No namespace has a default route: a site reaches the server
// on its own links only, an attacker on its veth only, and the server each
// of them through the connected routes. Every link of every site is called
// eth-<letter> in the site, so that one client configuration names the
// same interfaces on every site.
type Star struct {
	// Server is the server namespace.
	Server string
	// Sites are the client namespaces, in creation order.
	Sites []*Site
	// Attackers are the attacker namespaces, in creation order.
	Attackers []*Attacker

	prefix string
	t      *Topo // runs the processes and owns the namespaces
}

// Site is one client namespace of a Star.
type Site struct {
	// NS is the namespace; Index its number, from 1.
	NS    string
	Index int
	// Links are its veth pairs to the server namespace.
	Links []*Veth
}

// Attacker is a namespace joined to a Star's server namespace by one veth,
// for traffic that no client sends.
type Attacker struct {
	NS    string
	Index int
	Link  *Veth
}

// Veth is one veth pair of a Star: Name and Addr at the far end (a site
// or an attacker), Peer and ServerAddr in the server namespace.
type Veth struct {
	Name, Peer       string
	Addr, ServerAddr netip.Addr
}

// Limits of a Star's addressing plan.
const (
	MaxSites        = 9
	MaxSiteLinks    = 9
	MaxAttackers    = 50
	attackerSubnet0 = 200
)

// NewStar creates the server namespace (prefix+"s") and sites client
// namespaces (prefix+"c1", ...), each with links veth pairs to the server.
// Namespace and interface names must fit in 15 characters, so prefix
// should be short. Leftovers with the same names are removed first; on
// error nothing is left behind.
func NewStar(prefix string, sites, links int) (*Star, error) {
	if err := Usable(); err != nil {
		return nil, err
	}
	if sites < 1 || sites > MaxSites || links < 1 || links > MaxSiteLinks {
		return nil, fmt.Errorf("a star has 1 to %d sites of 1 to %d links, not %d of %d", MaxSites, MaxSiteLinks, sites, links)
	}
	s := &Star{Server: prefix + "s", prefix: prefix, t: &Topo{Server: prefix + "s"}}
	if err := addNamespace(s.Server); err != nil {
		return nil, err
	}
	for k := 1; k <= sites; k++ {
		site := &Site{NS: fmt.Sprintf("%sc%d", prefix, k), Index: k}
		s.t.more = append(s.t.more, site.NS)
		if err := addNamespace(site.NS); err != nil {
			s.Close()
			return nil, err
		}
		for i := 1; i <= links; i++ {
			v := &Veth{
				Name:       "eth-" + string(rune('a'+i-1)),
				Peer:       fmt.Sprintf("s%d%c", k, 'a'+i-1),
				Addr:       netip.AddrFrom4([4]byte{198, 18, byte(10*k + i), 2}),
				ServerAddr: netip.AddrFrom4([4]byte{198, 18, byte(10*k + i), 1}),
			}
			if err := s.addVeth(site.NS, v); err != nil {
				s.Close()
				return nil, err
			}
			site.Links = append(site.Links, v)
		}
		s.Sites = append(s.Sites, site)
	}
	return s, nil
}

// AddAttacker adds the next attacker namespace (prefix+"x1", ...) with its
// veth, eth-x, to the server namespace.
func (s *Star) AddAttacker() (*Attacker, error) {
	n := len(s.Attackers) + 1
	if n > MaxAttackers {
		return nil, fmt.Errorf("more than %d attackers", MaxAttackers)
	}
	a := &Attacker{NS: fmt.Sprintf("%sx%d", s.prefix, n), Index: n, Link: &Veth{
		Name:       "eth-x",
		Peer:       fmt.Sprintf("x%d", n),
		Addr:       netip.AddrFrom4([4]byte{198, 18, byte(attackerSubnet0 + n), 2}),
		ServerAddr: netip.AddrFrom4([4]byte{198, 18, byte(attackerSubnet0 + n), 1}),
	}}
	s.t.more = append(s.t.more, a.NS)
	if err := addNamespace(a.NS); err != nil {
		return nil, err
	}
	if err := s.addVeth(a.NS, a.Link); err != nil {
		return nil, err
	}
	s.Attackers = append(s.Attackers, a)
	return a, nil
}

// addNamespace creates namespace ns with its loopback up, removing a
// leftover of the same name first.
func addNamespace(ns string) error {
	_ = run("ip", "netns", "del", ns) // leftovers; usually absent
	if err := run("ip", "netns", "add", ns); err != nil {
		return err
	}
	return run("ip", "-n", ns, "link", "set", "lo", "up")
}

// addVeth creates v between namespace ns and the server namespace,
// addressed (/24) and up, the server end first (see Topo.AddLink).
func (s *Star) addVeth(ns string, v *Veth) error {
	for _, c := range [][]string{
		{"ip", "link", "add", v.Name, "netns", ns, "type", "veth", "peer", "name", v.Peer, "netns", s.Server},
		{"ip", "-n", s.Server, "link", "set", v.Peer, "up"},
		{"ip", "-n", ns, "link", "set", v.Name, "up"},
		{"ip", "-n", s.Server, "addr", "add", v.ServerAddr.String() + "/24", "dev", v.Peer},
		{"ip", "-n", ns, "addr", "add", v.Addr.String() + "/24", "dev", v.Name},
	} {
		if err := run(c...); err != nil {
			return err
		}
	}
	return nil
}

// Link returns the site's link called name ("eth-a"), or nil.
func (s *Site) Link(name string) *Veth {
	for _, l := range s.Links {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// SetUp sets the site's end of a link up or down (the server end loses
// carrier with it).
func (s *Site) SetUp(link string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run("ip", "-n", s.NS, "link", "set", link, state)
}

// Cut makes a site's link drop everything it sends and receives, ARP
// included, while its carrier stays up (an nftables netdev table in the
// site); Cut(link, false) undoes it. Unlike Topo.Blackhole it leaves the
// neighbour caches alone: the link dies the way a cable cut beyond a
// switch does, and the server goes on sending to the site's address on it.
func (s *Star) Cut(site *Site, link string, on bool) error {
	table := "engarde_cut_" + strings.ReplaceAll(link, "-", "_")
	_ = s.t.NftRemove(site.NS, "netdev", table)
	if !on {
		return nil
	}
	return s.t.Nft(site.NS, fmt.Sprintf("table netdev %s {\n"+
		" chain in {\n  type filter hook ingress device %q priority 0; policy drop;\n }\n"+
		" chain out {\n  type filter hook egress device %q priority 0; policy drop;\n }\n}\n", table, link, link))
}

// RxBytes returns the bytes a site's link has received (the interface's
// rx_bytes in the site: what the server sent on it, plus ARP).
func (s *Star) RxBytes(site *Site, link string) (uint64, error) {
	out, err := s.t.Exec(site.NS, "cat", "/sys/class/net/"+link+"/statistics/rx_bytes")
	if err != nil {
		return 0, err
	}
	var n uint64
	if _, err := fmt.Sscan(out, &n); err != nil {
		return 0, fmt.Errorf("rx_bytes of %s in %s: %q: %w", link, site.NS, out, err)
	}
	return n, nil
}

// Exec runs a command in namespace ns and returns its combined output.
func (s *Star) Exec(ns string, args ...string) (string, error) { return s.t.Exec(ns, args...) }

// Nft loads an nftables ruleset (nft -f -) into namespace ns.
func (s *Star) Nft(ns, ruleset string) error { return s.t.Nft(ns, ruleset) }

// NftRemove deletes an nftables table from namespace ns, if it is there.
func (s *Star) NftRemove(ns, family, table string) error { return s.t.NftRemove(ns, family, table) }

// Start runs a program in namespace ns, as Topo.Start does; Close stops it.
func (s *Star) Start(ns string, extra io.Writer, name string, args ...string) (*Proc, error) {
	return s.t.Start(ns, extra, name, args...)
}

// StartWireGuard runs wireguard-go in namespace ns, as
// Topo.StartWireGuard does. The interface name must be unique on the
// machine, not only in the namespace.
func (s *Star) StartWireGuard(wgGo, ns, name string, port int, addr string) (*WireGuard, error) {
	return s.t.StartWireGuard(wgGo, ns, name, port, addr)
}

// Close stops every process started on the star and deletes all its
// namespaces.
func (s *Star) Close() error { return s.t.Close() }
