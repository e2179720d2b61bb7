package app

import (
	"fmt"
	"io"
	"strings"

	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/config/defaults"
)

// Usage is a program's command line: what -h prints, what the subcommand
// suggestion draws its names from, and what the man pages and the shell
// completions are generated from, so that they cannot disagree.
type Usage struct {
	// Prog is the program's name: engarde-client or engarde-server.
	Prog string
	// Summary is one line saying what the program does (a man page's
	// NAME section).
	Summary string
	// Description is a paragraph or two on what the program does and how
	// it is run (a man page's DESCRIPTION).
	Description string
	// Commands are the ways to call the program, the one that runs the
	// daemon first (its Name is empty).
	Commands []Command
	// Flags are the options taken before any command: -h and -v.
	Flags []Flag
	// Environment lists the variables the program reads.
	Environment []Item
	// Signals lists the signals the running daemon acts on.
	Signals []Item
	// Files lists the files and directories the program uses by default.
	Files []Item
}

// Command is one way to call the program.
type Command struct {
	// Name is the subcommand ("status"), or empty for the daemon itself.
	Name string
	// Summary is a line saying what it does.
	Summary string
	// Flags are the options the command takes after its name.
	Flags []Flag
	// Args are its positional arguments, in order.
	Args []Arg
}

// Flag is an option, written -name (or --name) on the command line.
type Flag struct {
	// Name is the option without its dash: "json".
	Name string
	// Aliases are other spellings accepted, with their dashes ("--help",
	// "help").
	Aliases []string
	// Value names the option's value (for -name VALUE), or is empty for
	// a switch.
	Value string
	// Summary is a line saying what it does.
	Summary string
}

// Arg is a positional argument.
type Arg struct {
	// Name is what the usage line shows: "config.yml".
	Name string
	// Optional arguments are shown in brackets.
	Optional bool
	// File says the argument is a path to a file (a shell completes it
	// with file names; Pattern narrows them).
	File bool
	// Pattern is a glob the file usually matches ("*.yml"), for
	// completion.
	Pattern string
	// Default is what an omitted optional argument means, if anything.
	Default string
}

// Item is a named entry of a list in the help: an environment variable, a
// signal, a file.
type Item struct {
	Name, Summary string
}

// The subcommands' names, shared by Help and Main.
const (
	cmdStatus         = "status"
	cmdListInterfaces = "list-interfaces"
)

// configArg is the configuration file argument every command takes.
var configArg = Arg{Name: "config.yml", Optional: true, File: true, Pattern: "*.y*ml", Default: DefaultConfig}

// Help returns the command line of role's program.
func Help(role config.Role) Usage {
	u := Usage{
		Flags: []Flag{
			{Name: "h", Aliases: []string{"-help", "--help", "help"}, Summary: "print this help and exit"},
			{Name: "v", Aliases: []string{"-version", "--version", "version"}, Summary: "print the version, its commit and Go version, and exit"},
		},
		Environment: []Item{
			{"ENGARDE_BACKEND", "the socket backend (auto, mmsg, uring, std), overriding engine.backend"},
			{"ENGARDE_GSO=off", "turn UDP segmentation offload off"},
			{"ENGARDE_GRO=off", "turn UDP receive offload off"},
			{"ENGARDE_DEDUP=off", "turn the duplicate filter off"},
			{"ENGARDE_LOG_FORMAT", "the log format (auto, text, json), overriding log.format"},
			{"GOMAXPROCS", "the CPUs the Go code may use at once; when unset, one on a host of two CPUs or fewer, every CPU otherwise"},
			{"STATE_DIRECTORY", "set by systemd (StateDirectory=): where the state file goes when stateFile is not set"},
			{"RUNTIME_DIRECTORY", "set by systemd (RuntimeDirectory=): where the control socket goes when controlSocket is not set"},
			{"NOTIFY_SOCKET, WATCHDOG_USEC", "set by systemd (Type=notify, WatchdogSec=): where readiness, reloads and watchdog pings are reported"},
		},
		Signals: []Item{
			{"SIGINT, SIGTERM", "stop cleanly"},
			{"SIGHUP", "reload the configuration file; a file with a mistake is refused and the running configuration kept"},
		},
		Files: []Item{
			{DefaultConfig, "the configuration file when none is given, in the working directory"},
			{defaults.RuntimeDir + "/NAME.ROLE.sock", "the control socket of the daemon started with NAME.yml (ROLE: client or server), when controlSocket is not set and systemd gives no runtime directory"},
		},
	}
	status := Command{
		Name: cmdStatus,
		Flags: []Flag{
			{Name: "json", Summary: "print the API's JSON answer as it is"},
			{Name: "wide", Summary: "print every column (wider than 80 characters)"},
		},
		Args: []Arg{configArg},
	}
	if role == config.RoleClient {
		u.Prog = "engarde-client"
		u.Summary = "send WireGuard's traffic over every interface to engarde-server"
		u.Description = "engarde-client receives the datagrams the local WireGuard sends to its listenAddr and sends a copy of each over every usable network interface to engarde-server; whatever comes back on any of them goes to WireGuard. Interfaces come and go at run time; duplicates are harmless, as WireGuard drops replays."
		status.Summary = "ask the running client for its tunnel and links (through its control socket, else its web manager)"
		u.Commands = []Command{
			{Summary: "run the client", Args: []Arg{configArg}},
			{Name: cmdListInterfaces, Summary: "show which interfaces would carry traffic, and why not", Args: []Arg{configArg}},
			status,
		}
	} else {
		u.Prog = "engarde-server"
		u.Summary = "forward what engarde-client sends over every link to WireGuard"
		u.Description = "engarde-server receives what engarde-client sends over every link, forwards it to the local WireGuard, and sends each of WireGuard's replies to every live address of that client's session. Sessions are recognised from WireGuard's own handshake, so many clients share one port."
		status.Summary = "ask the running server for its sessions and client addresses (through its control socket, else its web manager)"
		u.Commands = []Command{
			{Summary: "run the server", Args: []Arg{configArg}},
			status,
		}
	}
	return u
}

// Command returns the subcommand named name, or nil.
func (u Usage) Command(name string) *Command {
	for i := range u.Commands {
		if u.Commands[i].Name == name && name != "" {
			return &u.Commands[i]
		}
	}
	return nil
}

// Line returns the command's synopsis: "status [-json] [-wide] [config.yml]".
func (c Command) Line() string {
	var b strings.Builder
	b.WriteString(c.Name)
	for _, f := range c.Flags {
		v := ""
		if f.Value != "" {
			v = " " + f.Value
		}
		fmt.Fprintf(&b, " [-%s%s]", f.Name, v)
	}
	for _, a := range c.Args {
		if a.Optional {
			fmt.Fprintf(&b, " [%s]", a.Name)
		} else {
			fmt.Fprintf(&b, " %s", a.Name)
		}
	}
	return strings.TrimSpace(b.String())
}

// helpWidth is the width -h wraps its text at.
const helpWidth = 80

// Write prints the help as -h shows it, wrapped at 80 columns.
func (u Usage) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n\nusage:\n", u.Prog, u.Summary)
	const indent = "      "
	for _, c := range u.Commands {
		fmt.Fprintf(&b, "  %s %s\n", u.Prog, c.Line())
		wrap(&b, indent, c.Summary)
		for _, f := range c.Flags {
			wrap(&b, indent+"    ", "-"+f.Name+": "+f.Summary)
		}
	}
	for _, f := range u.Flags {
		fmt.Fprintf(&b, "  %s -%s\n", u.Prog, f.Name)
		wrap(&b, indent, f.Summary)
	}
	section := func(title string, items []Item) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s:\n", title)
		for _, it := range items {
			fmt.Fprintf(&b, "  %s\n", it.Name)
			wrap(&b, indent, it.Summary)
		}
	}
	section("signals", u.Signals)
	section("environment", u.Environment)
	section("files", u.Files)
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap writes text in lines of at most helpWidth columns, each starting
// with indent (a word longer than a line gets a line of its own).
func wrap(b *strings.Builder, indent, text string) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > helpWidth {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
}
