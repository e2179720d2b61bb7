// Command engarde-server receives what engarde-client sends over every
// link, forwards it to WireGuard, and sends each reply from WireGuard to
// every live client address.
//
// Usage:
//
//	engarde-server [config.yml]                        run (engarde.yml by default)
//	engarde-server status [-json] [-wide] [config.yml] ask the running server for its client addresses
//	engarde-server -v                                  print the version
//	engarde-server -h                                  print the usage (app.Help)
//
// SIGHUP reloads the configuration: the client and write timeouts, the log
// level and the web manager change at once. A file with a mistake is
// refused, and the server keeps running the previous configuration.
package main

import (
	"os"

	"github.com/engarde-project/engarde/cmd/internal/app"
	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
)

const prog = "engarde-server"

func main() { app.Main(config.RoleServer, run, nil) }

func run(path string) error {
	cfg, err := config.Load(path, config.RoleServer)
	if err != nil {
		return err
	}
	c := cfg.Server
	zl, opts, err := app.Setup(prog, path, c.Log, c.Engine, c.WriteTimeout, c.Description)
	if err != nil {
		return err
	}
	sig := app.CatchSignals()
	defer sig.Stop()
	scfg := engine.ServerConfig{
		Options:       opts,
		ListenAddr:    c.ListenAddr,
		DstAddr:       c.DstAddr,
		ClientTimeout: c.ClientTimeout,
		ForwardAnyUDP: c.ForwardAnyUDP,
		StateFile:     config.StateFilePath(c.StateFile, cfg.File, os.Getenv("STATE_DIRECTORY"), config.RoleServer),
	}
	srv, err := engine.NewServer(scfg)
	if err != nil {
		return err
	}
	view := app.NewServerControl(srv, c.DstAddr, c.Description)
	web, sock, err := app.StartControl(zl, cfg, control.Role{Server: view})
	if err != nil {
		return err
	}
	defer web.Close()
	sd, err := app.NewNotifier()
	if err != nil {
		zl.Warn().Err(err).Msg("not reporting to systemd")
	}
	// The listen socket is bound: ready as soon as Run runs.
	sig.Supervise(sd, nil, view.Health, func(f string, a ...any) { zl.Warn().Msgf(f, a...) })
	zl.Info().Str("listen", srv.ListenAddr().String()).Str("dst", c.DstAddr).Msg("waiting for clients")

	reload := app.NewReloader(zl, cfg, web, sock, func(next *config.Config) error {
		n := next.Server
		o := opts
		o.WriteTimeout = n.WriteTimeout
		view.Configure(n.Description)
		return srv.Reconfigure(engine.ServerConfig{Options: o, ListenAddr: n.ListenAddr, DstAddr: n.DstAddr, ClientTimeout: n.ClientTimeout, ForwardAnyUDP: n.ForwardAnyUDP,
			StateFile: config.StateFilePath(n.StateFile, next.File, os.Getenv("STATE_DIRECTORY"), config.RoleServer)})
	})
	err = sig.Serve(web, srv.Run, reload.Reload)
	for _, p := range srv.Peers() {
		s := p.Stats
		zl.Info().Str("client", p.Addr.String()).Uint64("tx", s.TxPackets.Load()).Uint64("rx", s.RxPackets.Load()).
			Uint64("drops", s.Drops()).Uint64("sendErrors", s.SendErrors.Load()).Msg("client address totals")
	}
	u := &srv.UpstreamStats
	zl.Info().Uint64("toWireGuard", u.TxPackets.Load()).Uint64("fromWireGuard", u.RxPackets.Load()).
		Uint64("noClient", srv.NoPeer.Load()).Uint64("duplicatesDropped", srv.Duplicates.Load()).
		Uint64("notWireGuard", srv.NotWireGuard.Load()).Uint64("notMember", srv.NotMember.Load()).Msg("stopped")
	return err
}
