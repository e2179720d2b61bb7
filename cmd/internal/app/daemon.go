package app

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
)

// Signals catches SIGINT and SIGTERM (stop) and SIGHUP (reload) from the
// moment it is made, so that a signal sent as soon as the program says it
// is ready is not lost to the default action.
type Signals struct {
	ctx  context.Context
	stop context.CancelFunc
	hup  chan os.Signal
	// What Supervise set: nil sd for no systemd.
	sd     *Notifier
	ready  func(context.Context)
	health func() string
	logf   func(string, ...any)
}

// CatchSignals starts catching; Stop undoes it.
func CatchSignals() *Signals {
	s := &Signals{hup: make(chan os.Signal, 1)}
	s.ctx, s.stop = SignalContext()
	signal.Notify(s.hup, syscall.SIGHUP)
	return s
}

// Stop restores the default handling of the signals.
func (s *Signals) Stop() {
	signal.Stop(s.hup)
	s.stop()
}

// Supervise makes Serve report to systemd, when it started the daemon as
// a Type=notify service: READY=1 once ready returns (nil: as soon as run
// is started) and health answers, RELOADING=1 and READY=1 around each
// reload, STOPPING=1 at a stop, and watchdog pings while health keeps
// answering (see Notifier.Run). health must be cheap: a status read of
// the engine. Problems with $NOTIFY_SOCKET are logged through logf.
func (s *Signals) Supervise(sd *Notifier, ready func(context.Context), health func() string, logf func(string, ...any)) {
	s.sd, s.ready, s.health, s.logf = sd, ready, health, logf
}

// Serve runs run until SIGINT or SIGTERM, and calls reload on every
// SIGHUP meanwhile (one at a time, in this goroutine). On SIGINT or
// SIGTERM it stops web (nil: none) first, letting its requests under way
// finish, and only then cancels run's context: no request can reach the
// engine while it tears down (an exclusion toggled then would open a link
// on buffers being freed).
func (s *Signals) Serve(web *control.Server, run func(context.Context) error, reload func()) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	supervised := make(chan struct{})
	go func() { defer close(supervised); s.sd.Run(ctx, s.ready, s.health, s.logf) }()
	defer func() { cancel(); <-supervised }()
	notify := func(state string) {
		if err := s.sd.Notify(state); err != nil && s.logf != nil {
			s.logf("%v", err)
		}
	}
	for {
		select {
		case err := <-done:
			return err
		case <-s.hup:
			notify("RELOADING=1")
			reload()
			notify("READY=1")
		case <-s.ctx.Done():
			notify("STOPPING=1")
			if web != nil {
				web.Close()
			}
			cancel()
			return <-done
		}
	}
}

// RejectReload logs why a reloaded configuration was refused: one line per
// problem, each naming the file, line and key.
func RejectReload(zl zerolog.Logger, path string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		zl.Error().Str("config", path).Msg("reload rejected: " + e.Error())
	}
	zl.Error().Str("config", path).Msg("reload rejected; still running the previous configuration")
}

// Reloader re-reads the configuration on SIGHUP and applies what may
// change at run time: the log level and the web manager here, the rest
// through Apply.
type Reloader struct {
	log   zerolog.Logger
	path  string
	role  config.Role
	web   *control.Server
	sock  *Socket
	apply func(next *config.Config) error
	// The running values of what only a restart changes, and the level.
	level, format string
	engine        config.Engine
}

// NewReloader returns a Reloader for a program that started with cfg,
// whose web manager is web and control socket sock (nil: none).
// apply hands the new configuration to the engine (and whatever else
// shows it); its error, which names settings that need a restart, is
// logged as a warning.
func NewReloader(zl zerolog.Logger, cfg *config.Config, web *control.Server, sock *Socket, apply func(next *config.Config) error) *Reloader {
	lg, eng, _ := sections(cfg)
	return &Reloader{log: zl, path: cfg.File, role: cfg.Role, web: web, sock: sock, apply: apply, level: lg.Level, format: lg.Format, engine: eng}
}

// sections returns the parts both roles' sections have.
func sections(cfg *config.Config) (config.Log, config.Engine, config.WebManager) {
	if cfg.Role == config.RoleClient {
		return cfg.Client.Log, cfg.Client.Engine, cfg.Client.WebManager
	}
	return cfg.Server.Log, cfg.Server.Engine, cfg.Server.WebManager
}

// Reload re-reads the file. One with a mistake is refused, with a line per
// problem naming the file, line and key, and nothing changes.
func (r *Reloader) Reload() {
	zl := r.log
	zl.Info().Str("config", r.path).Msg("SIGHUP: reloading the configuration")
	next, err := config.Load(r.path, r.role)
	if err != nil {
		RejectReload(zl, r.path, err)
		return
	}
	lg, eng, web := sections(next)
	if lg.Level != r.level {
		SetLevel(lg.Level)
		r.level = lg.Level
		zl.WithLevel(zerolog.NoLevel).Str("logLevel", lg.Level).Msg("log level changed")
	}
	var fixed []string
	if lg.Format != r.format {
		fixed = append(fixed, "log.format")
	}
	if !reflect.DeepEqual(eng, r.engine) {
		fixed = append(fixed, "engine")
	}
	if len(fixed) > 0 {
		zl.Warn().Strs("keys", fixed).Msg("these settings cannot change without a restart; kept the running values")
	}
	if err := r.apply(next); err != nil {
		zl.Warn().Err(err).Msg("reload")
	}
	// A web manager or control socket that cannot move keeps serving
	// where it did: unlike at start-up, the daemon keeps running (the
	// tunnel is up and status still answers), and says why.
	if err := r.web.Reconfigure(WebOptions(web, zl)); err != nil {
		zl.Error().Err(err).Msg("web manager kept its previous address")
	}
	if r.sock != nil {
		if err := r.sock.Reconfigure(next); err != nil {
			zl.Error().Err(err).Str("socket", r.sock.Path()).Msg("control socket kept its previous path")
		}
	}
	zl.Info().Str("config", r.path).Msg("configuration reloaded")
}
