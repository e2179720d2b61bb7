package app

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
)

// ClientControl shows an engine client to the control plane.
type ClientControl struct {
	*engine.Client
	description atomic.Pointer[string]
}

// NewClientControl wraps c, whose configuration file describes it so.
func NewClientControl(c *engine.Client, description string) *ClientControl {
	cc := &ClientControl{Client: c}
	cc.Configure(description)
	return cc
}

// Configure takes a reloaded description.
func (c *ClientControl) Configure(description string) { c.description.Store(&description) }

// ClientStatus implements control.ClientRole.
func (c *ClientControl) ClientStatus() control.ClientStatus {
	links := c.Links()
	st := control.ClientStatus{
		Description: *c.description.Load(),
		ListenAddr:  c.ListenAddr().String(),
		Backend:     c.Backend(),
		Started:     c.Started(),
		Links:       make([]control.Link, 0, len(links)),
		WireGuard:   c.WireGuardStats.Read(),
		NoLink:      c.NoLink.Load(),
		Duplicates:  c.Duplicates.Load(),
		Foreign:     c.Foreign.Load(),
		Tunnel:      c.Tunnel(),
		Events:      c.Events(),
		ProbesBad:   c.ProbesBad.Load(),
		ProbesLate:  c.ProbesLate.Load(),
	}
	for _, l := range links {
		cl := control.Link{Name: l.Name, Label: l.Label, Status: string(l.Status), Since: l.Since, Reason: l.Reason, Local: l.Local, Quality: l.Quality, Probe: l.Probe}
		switch {
		case l.Dst.IsValid():
			cl.Dst = l.Dst.String()
		case l.Status != engine.LinkExcluded:
			cl.Dst = l.Target // where the link would go
		}
		if !cl.Local.IsValid() {
			cl.Local = firstAddr(l.Addrs)
		}
		if l.Stats != nil {
			cs := l.Stats.Read()
			cl.Counters = &cs
		}
		cl.Resolution = l.Resolution
		st.Links = append(st.Links, cl)
	}
	return st
}

// firstAddr picks the address to show for an interface without a link:
// the first IPv4 one, else the first that is not link-local.
func firstAddr(as []netip.Addr) netip.Addr {
	var v6 netip.Addr
	for _, a := range as {
		switch {
		case a.Is4():
			return a
		case !v6.IsValid() && !a.IsLinkLocalUnicast():
			v6 = a
		}
	}
	return v6
}

// ServerControl shows an engine server to the control plane.
type ServerControl struct {
	*engine.Server
	view atomic.Pointer[serverView]
}

type serverView struct{ description, dst string }

// NewServerControl wraps s, which forwards to WireGuard at dst.
func NewServerControl(s *engine.Server, dst, description string) *ServerControl {
	sc := &ServerControl{Server: s}
	sc.view.Store(&serverView{description: description, dst: dst})
	return sc
}

// Configure takes a reloaded description (the destination needs a
// restart).
func (s *ServerControl) Configure(description string) {
	v := *s.view.Load()
	v.description = description
	s.view.Store(&v)
}

// ServerStatus implements control.ServerRole.
func (s *ServerControl) ServerStatus() control.ServerStatus {
	v := s.view.Load()
	sessions := s.Sessions()
	st := control.ServerStatus{
		Description:   v.description,
		ListenAddr:    s.ListenAddr().String(),
		DstAddr:       v.dst,
		Backend:       s.Backend(),
		Started:       s.Started(),
		ClientTimeout: s.ClientTimeout(),
		Sessions:      make([]control.SessionStatus, 0, len(sessions)),
		Listen:        s.ListenStats.Read(),
		Upstream:      s.UpstreamStats.Read(),
		NoPeer:        s.NoPeer.Load(),
		Duplicates:    s.Duplicates.Load(),
		ServerCounters: control.ServerCounters{
			NotWireGuard:   s.NotWireGuard.Load(),
			NotMember:      s.NotMember.Load(),
			Foreign:        s.Foreign.Load(),
			Initiations:    s.Initiations.Load(),
			InitCopies:     s.InitCopies.Load(),
			Joins:          s.Joins.Load(),
			JoinsRefused:   s.JoinsRefused.Load(),
			PendingEvicted: s.PendingEvicted.Load(),
			Unrouted:       s.Unrouted.Load(),
			ProbesAnswered: s.ProbesAnswered.Load(),
			ProbesRefused:  s.ProbesRefused.Load(),
			ProbesLimited:  s.ProbesLimited.Load(),
		},
		Tunnel: s.Tunnel(),
		Events: s.Events(),
	}
	for _, si := range sessions {
		ss := control.SessionStatus{ID: si.ID, Since: si.Since, Endpoint: si.Endpoint, Indexes: si.Indexes, AnyUDP: si.AnyUDP,
			Addrs: make([]control.Peer, 0, len(si.Addrs)), Counters: si.Stats.Read()}
		for _, p := range si.Addrs {
			ss.Addrs = append(ss.Addrs, control.Peer{Addr: p.Addr, Local: p.Local, Session: p.Session, Since: p.Since, LastSeen: p.LastSeen,
				Live: p.Live, Slot: p.Slot, Status: string(p.Status), Counters: p.Stats.Read(), Quality: p.Quality})
		}
		st.Sessions = append(st.Sessions, ss)
	}
	return st
}

// WebOptions maps the webManager section to the control server's options.
func WebOptions(w config.WebManager, zl zerolog.Logger) control.Options {
	return control.Options{
		ListenAddr:        w.ListenAddr,
		MetricsListenAddr: w.MetricsListenAddr,
		Username:          w.Username,
		Password:          w.Password,
		AllowedHosts:      w.AllowedHosts,
		CertFile:          w.CertFile,
		KeyFile:           w.KeyFile,
		Version:           Version,
		Log: &control.Logger{
			Infof:  func(f string, a ...any) { zl.Info().Msgf(f, a...) },
			Warnf:  func(f string, a ...any) { zl.Warn().Msgf(f, a...) },
			Errorf: func(f string, a ...any) { zl.Error().Msgf(f, a...) },
		},
	}
}

// StartWeb starts the web manager (when listenAddr is set). A failure to
// listen, or to read the certificate, is an error: the daemon stops
// rather than run without the page, API and metrics its file asks for, so
// that a supervisor sees it (under systemd a unit that looks fine while
// status and /metrics are dead is worse than one that failed). A reload
// that cannot listen keeps the running listener and logs why instead.
func StartWeb(zl zerolog.Logger, w config.WebManager, role control.Role) (*control.Server, error) {
	web, err := control.New(WebOptions(w, zl), role)
	if err != nil {
		return nil, err
	}
	if err := web.Start(); err != nil {
		web.Close()
		return nil, err
	}
	return web, nil
}

// StartControl starts cfg's control plane: the web manager (StartWeb)
// and the control socket (StartSocket) serving the same API. An error
// names the file and the key to fix; the daemon stops with it.
func StartControl(zl zerolog.Logger, cfg *config.Config, role control.Role) (*control.Server, *Socket, error) {
	_, _, wm := sections(cfg)
	web, err := StartWeb(zl, wm, role)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s.webManager: %w", cfg.File, cfg.Role, err)
	}
	sock, err := StartSocket(zl, web, cfg)
	if err != nil {
		web.Close()
		return nil, nil, fmt.Errorf("%s: %s.controlSocket: %w", cfg.File, cfg.Role, err)
	}
	return web, sock, nil
}
