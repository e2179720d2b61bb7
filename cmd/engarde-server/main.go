// Command engarde-server receives what engarde-client sends over every
// link, forwards it to WireGuard, and sends each reply from WireGuard to
// every live client address.
//
// Usage:
//
//	engarde-server [config.yml]   run (engarde.yml by default)
//	engarde-server -v             print the version
package main

import (
	"fmt"
	"os"

	"github.com/engarde-project/engarde/cmd/internal/cli"
	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
)

const prog = "engarde-server"

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "-v", "--version", "version":
			cli.PrintVersion(prog)
			return
		case "-h", "--help", "help":
			usage()
			return
		}
	}
	if len(args) > 1 {
		usage()
		os.Exit(2)
	}
	path := cli.DefaultConfig
	if len(args) == 1 {
		path = args[0]
	}
	if err := run(path); err != nil {
		cli.Fatal(prog, err)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  %[1]s [config.yml]  run (default config: %[2]s)
  %[1]s -v            print the version
`, prog, cli.DefaultConfig)
}

func run(path string) error {
	cfg, err := config.Load(path, config.RoleServer)
	if err != nil {
		return err
	}
	c := cfg.Server
	zl := cli.NewLogger(c.Log, os.Stderr)
	log := cli.EngineLogger(zl)
	opts, err := cli.Options(c.Engine, c.WriteTimeout, log)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	zl.Info().Str("version", cli.Version).Str("config", path).Str("backend", opts.Backend.Name()).Msg("engarde-server starting")
	if c.Description != "" {
		zl.Info().Msg(c.Description)
	}
	if c.WebManager.ListenAddr != "" {
		zl.Warn().Str("listenAddr", c.WebManager.ListenAddr).Msg("webManager is configured, but this version has no web manager yet; ignoring it")
	}
	srv, err := engine.NewServer(engine.ServerConfig{
		Options:       opts,
		ListenAddr:    c.ListenAddr,
		DstAddr:       c.DstAddr,
		ClientTimeout: c.ClientTimeout,
	})
	if err != nil {
		return err
	}
	zl.Info().Str("listen", srv.ListenAddr().String()).Str("dst", c.DstAddr).Msg("waiting for clients")
	ctx, stop := cli.SignalContext()
	defer stop()
	err = srv.Run(ctx)
	for _, p := range srv.Peers() {
		s := p.Stats
		zl.Info().Str("client", p.Addr.String()).Uint64("tx", s.TxPackets.Load()).Uint64("rx", s.RxPackets.Load()).
			Uint64("drops", s.Drops()).Uint64("sendErrors", s.SendErrors.Load()).Msg("client address totals")
	}
	u := &srv.UpstreamStats
	zl.Info().Uint64("toWireGuard", u.TxPackets.Load()).Uint64("fromWireGuard", u.RxPackets.Load()).
		Uint64("noClient", srv.NoPeer.Load()).Msg("stopped")
	return err
}
