// Command engarde-client receives the datagrams local WireGuard sends and
// sends a copy of each over every usable network interface to
// engarde-server; it hands whatever comes back on any of them to WireGuard.
//
// Usage:
//
//	engarde-client [config.yml]                        run (engarde.yml by default)
//	engarde-client list-interfaces [config.yml]        show which interfaces would carry traffic
//	engarde-client status [-json] [-wide] [config.yml] ask the running client for its tunnel and links
//	engarde-client -v                                  print the version
//	engarde-client -h                                  print the usage (app.Help)
//
// SIGHUP reloads the configuration: exclusions, destinations, labels,
// timeouts, the log level and the web manager change without restarting
// the links that stay the same. A file with a mistake is refused, and the
// client keeps running the previous configuration.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/engarde-project/engarde/cmd/internal/app"
	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
)

const prog = "engarde-client"

// subcommands are the client's commands besides status, which app.Help
// lists (main_test.go checks that the two agree).
var subcommands = map[string]func([]string) error{
	"list-interfaces": func(args []string) error { return listInterfaces(app.ConfigPath(args)) },
}

func main() { app.Main(config.RoleClient, run, subcommands) }

// engineConfig is the engine's configuration from c, read from file.
func engineConfig(c *config.Client, file string, opts engine.Options) engine.ClientConfig {
	overrides := map[string]string{}
	for _, o := range c.DstOverrides {
		overrides[o.IfName] = o.DstAddr
	}
	return engine.ClientConfig{
		Options:       opts,
		ListenAddr:    c.ListenAddr,
		DstAddr:       c.DstAddr,
		DstOverrides:  overrides,
		Excluded:      c.ExcludedInterfaces,
		Labels:        c.InterfaceLabels,
		FwMark:        c.FwMark,
		ProbeInterval: c.ProbeInterval,
		StateFile:     config.StateFilePath(c.StateFile, file, os.Getenv("STATE_DIRECTORY"), config.RoleClient),
	}
}

func run(path string) error {
	cfg, err := config.Load(path, config.RoleClient)
	if err != nil {
		return err
	}
	c := cfg.Client
	zl, opts, err := app.Setup(prog, path, c.Log, c.Engine, c.WriteTimeout, c.Description)
	if err != nil {
		return err
	}
	sig := app.CatchSignals()
	defer sig.Stop()
	ecfg := engineConfig(c, cfg.File, opts)
	cl, err := engine.NewClient(ecfg)
	if err != nil {
		return err
	}
	view := app.NewClientControl(cl, c.Description)
	web, sock, err := app.StartControl(zl, cfg, control.Role{Client: view})
	if err != nil {
		return err
	}
	defer web.Close()
	sd, err := app.NewNotifier()
	if err != nil {
		zl.Warn().Err(err).Msg("not reporting to systemd")
	}
	sig.Supervise(sd, view.Ready, view.Health, func(f string, a ...any) { zl.Warn().Msgf(f, a...) })
	zl.Info().Str("listen", cl.ListenAddr().String()).Str("dst", c.DstAddr).Msg("waiting for WireGuard")

	reload := app.NewReloader(zl, cfg, web, sock, func(next *config.Config) error {
		n := next.Client
		// The engine settings stay as they run; the write timeout
		// follows the file.
		o := opts
		o.WriteTimeout = n.WriteTimeout
		ncfg := engineConfig(n, next.File, o)
		view.Configure(n.Description)
		return cl.Reconfigure(ncfg)
	})
	err = sig.Serve(web, cl.Run, reload.Reload)
	for _, l := range cl.Links() {
		if l.Stats == nil {
			continue
		}
		s := l.Stats
		zl.Info().Str("link", l.Name).Uint64("tx", s.TxPackets.Load()).Uint64("rx", s.RxPackets.Load()).
			Uint64("drops", s.Drops()).Uint64("sendErrors", s.SendErrors.Load()).Msg("link totals")
	}
	w := &cl.WireGuardStats
	zl.Info().Uint64("fromWireGuard", w.RxPackets.Load()).Uint64("toWireGuard", w.TxPackets.Load()).
		Uint64("noLink", cl.NoLink.Load()).Uint64("duplicatesDropped", cl.Duplicates.Load()).Msg("stopped")
	return err
}

// listInterfaces prints every interface, its addresses, and whether the
// client would use it. Without a configuration file it assumes no
// exclusions and an IPv4 destination.
func listInterfaces(path string) error {
	var c *config.Client
	cfg, err := config.Load(path, config.RoleClient)
	switch {
	case err == nil:
		c = cfg.Client
	case errors.Is(err, fs.ErrNotExist):
		fmt.Printf("(no %s: assuming no exclusions and an IPv4 destination)\n\n", path)
		c = &config.Client{DstAddr: "192.0.2.1:59402"}
	default:
		return err
	}
	ifs, err := engine.SystemInterfaces()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tLABEL\tADDRESSES\tUSED\tSOURCE -> DESTINATION / WHY NOT")
	for _, p := range engine.PlanInterfaces(engineConfig(c, "", engine.Options{}), ifs) {
		used, what := "no", p.Reason
		if p.Use {
			used, what = "yes", p.Local.String()+" -> "+p.Dst.String()
		}
		addrs := formatAddrs(p.Iface.Addrs)
		if addrs == "" {
			addrs = "-"
		}
		label := p.Label
		if label == "" {
			label = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Iface.Name, label, addrs, used, what)
	}
	return tw.Flush()
}

// formatAddrs joins addresses for display.
func formatAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
