package topo

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Ports and addresses of WireGuard over engarde on a Star: wireguard-go's
// listen ports (each site's engarde-client listens on ClientListen, the
// server's engarde-server on ServerPort) and the addresses inside the
// tunnel, in 198.19.0.0/24 (the second half of the benchmarking range).
const (
	StarWGServerPort = 51820
	StarWGClientPort = 51821
)

// StarWGServerIP is the server's address inside the tunnel; site k has
// 198.19.0.<10+k>.
var StarWGServerIP = netip.MustParseAddr("198.19.0.1")

// WGStarConfig describes WireGuard over engarde on a Star.
type WGStarConfig struct {
	// Bin is the directory holding engarde-client, engarde-server and
	// wireguard-go.
	Bin string
	// Sites and Links are the star's size (2 sites of 2 links when 0).
	Sites, Links int
	// Backend is engine.backend for every role ("" for the default).
	Backend string
	// LogLevel of every role ("info" when empty).
	LogLevel string
	// ClientExtra and ServerExtra are YAML lines appended to each
	// section, indented by two spaces.
	ClientExtra, ServerExtra string
	// Keepalive is the sites' WireGuard persistent keepalive (0: off).
	Keepalive time.Duration
}

// WGStar is WireGuard over engarde on a Star: in the server namespace,
// engarde-server in front of one wireguard-go interface with a peer per
// site; in each site, wireguard-go sending to its own engarde-client,
// which sends over every link of the site to the server.
type WGStar struct {
	*Star
	Config WGStarConfig
	// Server is engarde-server, WG the server's WireGuard.
	Server *Proc
	WG     *WireGuard
	// ServerConfigPath is the server's engarde.yml.
	ServerConfigPath string
	// Clients are the sites, in order.
	Clients []*WGClient

	dir string
}

// WGClient is one site of a WGStar.
type WGClient struct {
	*Site
	// Client is the site's engarde-client, WG its WireGuard.
	Client *Proc
	WG     *WireGuard
	// Addr is the site's address inside the tunnel.
	Addr netip.Addr
	// ConfigPath is the site's engarde.yml.
	ConfigPath string
}

// StartWGStar builds a Star and starts wireguard-go and engarde on it,
// returning once every client has a link on every interface and every
// WireGuard peer is configured. The first handshake is still to come: the
// first packet a site sends to StarWGServerIP makes one. On error nothing
// is left behind.
func StartWGStar(prefix string, c WGStarConfig) (*WGStar, error) {
	if c.Sites == 0 {
		c.Sites = 2
	}
	if c.Links == 0 {
		c.Links = 2
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	s, err := NewStar(prefix, c.Sites, c.Links)
	if err != nil {
		return nil, err
	}
	w := &WGStar{Star: s, Config: c}
	if err := w.start(prefix); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (w *WGStar) start(prefix string) error {
	var err error
	if w.dir, err = os.MkdirTemp("", "engarde-star-"); err != nil {
		return err
	}
	wgGo := filepath.Join(w.Config.Bin, "wireguard-go")
	if w.WG, err = w.StartWireGuard(wgGo, w.Star.Server, prefix+"w", StarWGServerPort, StarWGServerIP.String()+"/24"); err != nil {
		return err
	}
	w.ServerConfigPath = filepath.Join(w.dir, "server.yml")
	if err := os.WriteFile(w.ServerConfigPath, []byte(w.Config.serverYAML()), 0o644); err != nil {
		return err
	}
	if w.Server, err = w.Start(w.Star.Server, nil, filepath.Join(w.Config.Bin, "engarde-server"), w.ServerConfigPath); err != nil {
		return err
	}
	for _, site := range w.Sites {
		c := &WGClient{Site: site, Addr: netip.AddrFrom4([4]byte{198, 19, 0, byte(10 + site.Index)})}
		if c.WG, err = w.StartWireGuard(wgGo, site.NS, fmt.Sprintf("%sw%d", prefix, site.Index), StarWGClientPort, c.Addr.String()+"/24"); err != nil {
			return err
		}
		c.ConfigPath = filepath.Join(w.dir, fmt.Sprintf("site%d.yml", site.Index))
		if err := os.WriteFile(c.ConfigPath, []byte(w.Config.clientYAML(site, c.WG.Name)), 0o644); err != nil {
			return err
		}
		if c.Client, err = w.Start(site.NS, nil, filepath.Join(w.Config.Bin, "engarde-client"), c.ConfigPath); err != nil {
			return err
		}
		if err := w.WG.SetPeer(c.WG.PublicKey, "", c.Addr.String()+"/32"); err != nil {
			return err
		}
		args := []string{"wg", "set", c.WG.Name, "peer", w.WG.PublicKey, "endpoint", ClientListen, "allowed-ips", StarWGServerIP.String() + "/32"}
		if w.Config.Keepalive > 0 {
			args = append(args, "persistent-keepalive", strconv.Itoa(int(w.Config.Keepalive.Seconds())))
		}
		if _, err := w.Exec(site.NS, args...); err != nil {
			return err
		}
		w.Clients = append(w.Clients, c)
	}
	for _, c := range w.Clients {
		if err := c.Client.WaitLog(5*time.Second, len(c.Links), `"link eth-`, ` up: `); err != nil {
			return err
		}
	}
	return nil
}

// serverYAML is the server's engarde.yml.
func (c WGStarConfig) serverYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  description: \"engarde star server\"\n  listenAddr: \"0.0.0.0:%d\"\n  dstAddr: \"127.0.0.1:%d\"\n  clientTimeout: 30\n", ServerPort, StarWGServerPort)
	fmt.Fprintf(&b, "  log: {level: %s, format: json}\n", c.LogLevel)
	if c.Backend != "" {
		fmt.Fprintf(&b, "  engine: {backend: %s}\n", c.Backend)
	}
	b.WriteString(c.ServerExtra)
	return b.String()
}

// clientYAML is a site's engarde.yml: dstAddr is the server's end of the
// first link, and every further link has its own end as an override. The
// site's WireGuard interface (wg) is excluded, as users exclude theirs: it
// has an address, and a link over it would send engarde's packets into
// the tunnel they carry.
func (c WGStarConfig) clientYAML(s *Site, wg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client:\n  description: \"engarde star site %d\"\n  listenAddr: %q\n  dstAddr: \"%s:%d\"\n", s.Index, ClientListen, s.Links[0].ServerAddr, ServerPort)
	fmt.Fprintf(&b, "  excludedInterfaces:\n    - %q\n", wg)
	if len(s.Links) > 1 {
		b.WriteString("  dstOverrides:\n")
		for _, l := range s.Links[1:] {
			fmt.Fprintf(&b, "    - ifName: %s\n      dstAddr: \"%s:%d\"\n", l.Name, l.ServerAddr, ServerPort)
		}
	}
	fmt.Fprintf(&b, "  log: {level: %s, format: json}\n", c.LogLevel)
	if c.Backend != "" {
		fmt.Fprintf(&b, "  engine: {backend: %s}\n", c.Backend)
	}
	b.WriteString(c.ClientExtra)
	return b.String()
}

// Endpoints returns, per peer public key, the endpoint the interface has
// for it now (wg show endpoints), "(none)" for a peer not heard from yet.
func (w *WireGuard) Endpoints() (map[string]string, error) {
	out, err := w.t.Exec(w.NS, "wg", "show", w.Name, "endpoints")
	if err != nil {
		return nil, err
	}
	return ParseWGPairs(out), nil
}

// ParseWGPairs reads the two-column output of wg show <interface> <field>
// (a public key, a tab, the value, per line).
func ParseWGPairs(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// Close stops everything and deletes the namespaces and the
// configuration files.
func (w *WGStar) Close() error {
	err := w.Star.Close()
	for _, g := range append([]*WireGuard{w.WG}, w.wgs()...) {
		if g != nil {
			_ = os.Remove(filepath.Join(wgSocketDir, g.Name+".sock")) // wireguard-go removes it when it stops cleanly
		}
	}
	if w.dir != "" {
		os.RemoveAll(w.dir)
	}
	return err
}

func (w *WGStar) wgs() []*WireGuard {
	var out []*WireGuard
	for _, c := range w.Clients {
		out = append(out, c.WG)
	}
	return out
}
