package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
	"github.com/engarde-project/engarde/engine/conn"
)

// Version is set at build time with
// -ldflags "-X github.com/engarde-project/engarde/cmd/internal/app.Version=..."
var Version = "unofficial build"

// DefaultConfig is the file read when no path is given.
const DefaultConfig = "engarde.yml"

// NewLogger returns a zerolog logger for the configured level and format
// ("auto": readable on a terminal, JSON otherwise), writing to w.
func NewLogger(c config.Log, w *os.File) zerolog.Logger {
	var out io.Writer = w
	format := c.Format
	if env := os.Getenv("ENGARDE_LOG_FORMAT"); env != "" {
		format = env
	}
	if format == "text" || (format != "json" && isTerminal(w)) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}
	}
	SetLevel(c.Level)
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00" // milliseconds: link events are that fast
	return zerolog.New(out).With().Timestamp().Logger()
}

// SetLevel sets the level below which messages are dropped (info when
// level is empty or unknown). It is zerolog's global level, so that a
// reload changes it for every logger the program made.
func SetLevel(level string) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(lvl)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// EngineLogger adapts a zerolog logger to the engine's.
func EngineLogger(l zerolog.Logger) *engine.Logger {
	return &engine.Logger{
		Debugf: func(f string, a ...any) { l.Debug().Msgf(f, a...) },
		Infof:  func(f string, a ...any) { l.Info().Msgf(f, a...) },
		Warnf:  func(f string, a ...any) { l.Warn().Msgf(f, a...) },
		Errorf: func(f string, a ...any) { l.Error().Msgf(f, a...) },
	}
}

// Options maps the engine section of the configuration, and the
// environment's overrides, to engine options. ENGARDE_BACKEND overrides
// engine.backend; ENGARDE_GSO=off and ENGARDE_GRO=off are kill switches.
func Options(e config.Engine, writeTimeout time.Duration, log *engine.Logger) (engine.Options, error) {
	name := e.Backend
	if env := os.Getenv("ENGARDE_BACKEND"); env != "" {
		name = env
	}
	var warn conn.Logf
	if log != nil {
		warn = log.Warnf
	}
	be, err := conn.Open(name, warn)
	if err != nil {
		return engine.Options{}, err
	}
	return engine.Options{
		Backend:      be,
		BatchSize:    e.BatchSize,
		QueueLength:  e.QueueLength,
		BufferSize:   e.BufferSize,
		DisableGSO:   !e.GSO || off("ENGARDE_GSO"),
		DisableGRO:   !e.GRO || off("ENGARDE_GRO"),
		DisableDedup: !e.Dedup || off("ENGARDE_DEDUP"),
		WriteTimeout: writeTimeout,
		Log:          log,
	}, nil
}

func off(env string) bool {
	switch strings.ToLower(os.Getenv(env)) {
	case "off", "0", "false", "no":
		return true
	}
	return false
}

// SignalContext returns a context cancelled by SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Fatal prints err and exits with status 1.
func Fatal(prog string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	os.Exit(1)
}

// PrintVersion prints the version line the original printed.
func PrintVersion(prog string) {
	fmt.Printf("%s %s (%s backend by default)\n", prog, Version, conn.Default(nil).Name())
}

// Setup is what both programs do first: the logger, the engine options
// (with the environment's overrides) and the start-up log lines.
func Setup(prog, path string, lc config.Log, ec config.Engine, writeTimeout time.Duration, description string) (zerolog.Logger, engine.Options, error) {
	zl := NewLogger(lc, os.Stderr)
	opts, err := Options(ec, writeTimeout, EngineLogger(zl))
	if err != nil {
		return zl, opts, fmt.Errorf("%s: %w", path, err)
	}
	zl.Info().Str("version", Version).Str("config", path).Str("backend", opts.Backend.Name()).Msg(prog + " starting")
	if description != "" {
		zl.Info().Msg(description)
	}
	return zl, opts, nil
}

// Main is both programs' command line, as the original's: -v prints the
// version, -h the usage, "status" asks the running daemon, the names in
// sub are further subcommands (given the arguments after the name), and
// otherwise the only argument is the configuration file (DefaultConfig
// when absent), which run runs. Errors print and exit 1; a bad command
// line prints the usage and exits 2.
func Main(prog, usage string, role config.Role, run func(path string) error, sub map[string]func(args []string) error) {
	args := os.Args[1:]
	usageExit := func(code int) {
		fmt.Fprintf(os.Stderr, usage, prog, DefaultConfig)
		os.Exit(code)
	}
	var err error
	switch {
	case len(args) == 0:
		err = run(DefaultConfig)
	case args[0] == "-v" || args[0] == "--version" || args[0] == "version":
		PrintVersion(prog)
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		usageExit(0)
	case args[0] == "status":
		err = Status(os.Stdout, prog, role, args[1:])
	case sub[args[0]] != nil:
		err = sub[args[0]](args[1:])
	case len(args) > 1:
		usageExit(2)
	default:
		err = run(args[0])
	}
	if err != nil {
		Fatal(prog, err)
	}
}

// ConfigPath returns the configuration file named by args, or
// DefaultConfig.
func ConfigPath(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return DefaultConfig
}
