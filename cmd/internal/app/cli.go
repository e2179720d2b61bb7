package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
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

// Commit is the commit the binary was built from, set at build time like
// Version (...app.Commit=...); when it is empty, -v shows the revision
// the Go toolchain recorded, if any.
var Commit = ""

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
		Event:  engineEvents(l), // events.go
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

// PrintVersion prints the version, the commit it was built from, the Go
// version and platform, and the default backend.
func PrintVersion(w io.Writer, prog string) {
	fmt.Fprintf(w, "%s %s (commit %s, %s %s/%s, %s backend by default)\n", prog, Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH, conn.Default(nil).Name())
}

// commit returns Commit, or when the build did not set it the revision
// the Go toolchain recorded (go build in a git checkout), "+dirty" when
// the tree had changes, or "unknown".
func commit() string {
	if Commit != "" {
		return Commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev[:min(12, len(rev))] + dirty
}

// Setup is what both programs do first: the logger, the engine options
// (with the environment's overrides) and the start-up log lines.
func Setup(prog, path string, lc config.Log, ec config.Engine, writeTimeout time.Duration, description string) (zerolog.Logger, engine.Options, error) {
	zl := NewLogger(lc, os.Stderr)
	opts, err := Options(ec, writeTimeout, EngineLogger(zl))
	if err != nil {
		return zl, opts, fmt.Errorf("%s: %w", path, err)
	}
	procs := limitProcs()
	zl.Info().Str("version", Version).Str("config", path).Str("backend", opts.Backend.Name()).Int("gomaxprocs", procs).Msg(prog + " starting")
	if description != "" {
		zl.Info().Msg(description)
	}
	return zl, opts, nil
}

// smallHost is the most CPUs the Go runtime may use (its own default:
// the CPUs, or the cgroup's quota) for limitProcs to run the daemon on
// one.
const smallHost = 2

// limitProcs runs the daemon's Go code on one CPU on a host of at most
// smallHost, unless GOMAXPROCS says otherwise, and returns the setting.
// There WireGuard and the applications need the other CPU, and a second
// Go processor costs more than it gives: each datagram that wakes a
// receive loop also wakes an idle processor to look for work, which finds
// none. On this project's 2-CPU machine one processor carried 96-113% of
// what two did (RFC 2544, four runs of make bench's scaling table) with
// 3-22% less CPU per packet, and at 2 000, 10 000 and 50 000 packets/s
// used 20-26% less CPU with a p50 latency 3-26% lower. Larger hosts keep
// the Go default: one tunnel runs a loop per direction, and a server one
// per client address.
func limitProcs() int {
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && runtime.GOMAXPROCS(0) <= smallHost {
		runtime.GOMAXPROCS(1)
	}
	return runtime.GOMAXPROCS(0)
}

// Main is both programs' command line: Help(role) says what it takes.
// -v prints the version, -h the help (on stdout), "status" asks the
// running daemon, the names in sub are further subcommands (given the
// arguments after the name, and listed in Help), and otherwise the only
// argument is the configuration file (DefaultConfig when absent), which
// run runs. Errors print and exit 1; a bad command line says what is
// wrong, with the nearest command or flag, and exits 2.
func Main(role config.Role, run func(path string) error, sub map[string]func(args []string) error) {
	os.Exit(dispatch(Help(role), role, os.Args[1:], os.Stdout, os.Stderr, run, sub))
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// dispatch runs the command line args and returns the exit status.
func dispatch(u Usage, role config.Role, args []string, stdout, stderr io.Writer, run func(string) error, sub map[string]func([]string) error) int {
	var err error
	switch {
	case len(args) == 0:
		err = run(DefaultConfig)
	case u.isFlag("v", args[0]):
		PrintVersion(stdout, u.Prog)
	case u.isFlag("h", args[0]):
		if err := u.Write(stdout); err != nil {
			return 1
		}
	case args[0] == cmdStatus:
		err = Status(stdout, u.Prog, role, args[1:])
	case u.Command(args[0]) != nil && sub[args[0]] != nil:
		err = sub[args[0]](args[1:])
	case strings.HasPrefix(args[0], "-"):
		err = usageError{fmt.Sprintf("unknown flag %q%s", args[0], suggest(args[0], u.flagNames()))}
	case len(args) == 1 && looksLikeFile(args[0]):
		err = run(args[0])
	case looksLikeFile(args[0]):
		err = usageError{fmt.Sprintf("too many arguments: the daemon takes one configuration file, not %q", strings.Join(args, " "))}
	default:
		err = usageError{fmt.Sprintf("unknown command %q%s", args[0], suggest(args[0], u.commandNames()))}
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\nrun '%s -h' for the usage\n", u.Prog, err, u.Prog)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", u.Prog, err)
	return 1
}

// isFlag reports whether arg is the global flag name or one of its
// aliases.
func (u Usage) isFlag(name, arg string) bool {
	for _, f := range u.Flags {
		if f.Name != name {
			continue
		}
		if arg == "-"+f.Name || slices.Contains(f.Aliases, arg) {
			return true
		}
	}
	return false
}

func (u Usage) flagNames() []string {
	var names []string
	for _, f := range u.Flags {
		names = append(names, "-"+f.Name)
		names = append(names, f.Aliases...)
	}
	return names
}

func (u Usage) commandNames() []string {
	var names []string
	for _, c := range u.Commands {
		if c.Name != "" {
			names = append(names, c.Name)
		}
	}
	for _, f := range u.Flags {
		for _, a := range f.Aliases {
			if !strings.HasPrefix(a, "-") {
				names = append(names, a) // help, version
			}
		}
	}
	return names
}

// looksLikeFile reports whether a lone argument names the configuration
// file rather than a mistyped command: it exists, or has a directory or an
// extension in it. "stauts" is a typo; "stauts.yml" a missing file,
// which run reports as such.
func looksLikeFile(arg string) bool {
	if _, err := os.Stat(arg); err == nil {
		return true
	}
	return strings.ContainsAny(arg, "./"+string(os.PathSeparator))
}

// suggest returns `; did you mean "x"?` for the name in names nearest to
// arg, or "" when none is near: at most two edits away (a swap of two
// neighbours counts as one), or a prefix of at least two characters.
func suggest(arg string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := editDistance(arg, n)
		if len(arg) >= 2 && strings.HasPrefix(n, arg) && d > 1 {
			d = 2 // "list" for "list-interfaces"
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" || bestD >= len(arg) {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours each cost
// one (Damerau; typing "stauts" for "status" is one swap).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// ConfigPath returns the configuration file named by args, or
// DefaultConfig.
func ConfigPath(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return DefaultConfig
}
