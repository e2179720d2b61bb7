package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
)

// Role says which program reads the file, and so which section is loaded.
type Role int

const (
	// RoleClient loads the client section, for engarde-client.
	RoleClient Role = iota
	// RoleServer loads the server section, for engarde-server.
	RoleServer
)

// String returns the role's section name: "client" or "server".
func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Config is a loaded and validated configuration file.
type Config struct {
	// File is the name the file was loaded under.
	File string
	// Role is the section that was loaded.
	Role Role
	// Client is the client section; set only when Role is RoleClient.
	Client *Client
	// Server is the server section; set only when Role is RoleServer.
	Server *Server
}

// Client is the client section of the file, with defaults applied.
type Client struct {
	// Description is shown at startup and in the web manager.
	Description string
	// ListenAddr is the host:port WireGuard sends to, as written.
	ListenAddr string
	// DstAddr is the host:port of engarde-server, as written; the host may
	// be a DNS name, which is not resolved here.
	DstAddr string
	// WriteTimeout bounds a socket write: 10ms when the file leaves it out
	// or sets 0, and -1 (no timeout) when the file sets a negative value.
	WriteTimeout time.Duration
	// ExcludedInterfaces are interface names never used to send.
	ExcludedInterfaces []string
	// InterfaceLabels maps an interface name to a label for display. It is
	// never nil.
	InterfaceLabels map[string]string
	// DstOverrides replace DstAddr for particular interfaces.
	DstOverrides []DstOverride
	// WebManager configures the management web interface.
	WebManager WebManager
	// FwMark is the SO_MARK set on the sending sockets; 0 sets none.
	FwMark uint32
	// StateFile is where the client keeps WireGuard's last handshake
	// across a restart; see Server.StateFile.
	StateFile string
	// ProbeInterval is the time between probes on each link: 250ms when
	// the file leaves it out, -1 (no probes) when the file sets 0.
	ProbeInterval time.Duration
	// ControlSocket is the control socket's path; see
	// Server.ControlSocket.
	ControlSocket string
	// Log configures logging.
	Log Log
	// Engine tunes the data path.
	Engine Engine
}

// Server is the server section of the file, with defaults applied.
type Server struct {
	// Description is shown at startup and in the web manager.
	Description string
	// ListenAddr is the host:port clients send to, as written.
	ListenAddr string
	// DstAddr is the host:port of the local WireGuard, as written.
	DstAddr string
	// ClientTimeout is how long a client address stays in use after its
	// last packet: 30s when the file leaves it out or sets 0.
	ClientTimeout time.Duration
	// WriteTimeout bounds a socket write: 10ms when the file leaves it out
	// or sets 0, and -1 (no timeout) when the file sets a negative value.
	WriteTimeout time.Duration
	// ForwardAnyUDP forwards datagrams that are not WireGuard's, as the
	// original engarde did, at the price of making the server a
	// reflector: off by default.
	ForwardAnyUDP bool
	// StateFile is where the server keeps its sessions across a
	// restart, relative to the configuration file's directory. Empty
	// means a file in $STATE_DIRECTORY when systemd sets it (see
	// StateFilePath), and none otherwise.
	StateFile string
	// ControlSocket is the unix socket the status command asks (the
	// web manager's API, guarded by file permissions), relative to the
	// configuration file's directory; empty means the default of
	// ControlSocketPath, and defaults.ControlSocketOff none.
	ControlSocket string
	// WebManager configures the management web interface.
	WebManager WebManager
	// Log configures logging.
	Log Log
	// Engine tunes the data path.
	Engine Engine
}

// DstOverride sends the traffic of one interface to another destination.
type DstOverride struct {
	// IfName is the interface name, as engarde-client list-interfaces
	// shows it.
	IfName string
	// DstAddr is the host:port used instead of Client.DstAddr.
	DstAddr string
}

// WebManager configures the management web interface.
type WebManager struct {
	// ListenAddr is the host:port to serve on; empty disables it.
	ListenAddr string
	// Username and Password guard the interface: both set, or neither
	// (no login); a file that sets only one is refused.
	Username string
	// Password is the password for Username.
	Password string
	// AllowedHosts are the host names, besides localhost and IP
	// addresses, that requests may name in their Host header: the names
	// the operator reaches the web manager by.
	AllowedHosts []string
	// CertFile and KeyFile, both set or neither, serve HTTPS with that
	// certificate (PEM, chain first) and private key. A relative path is
	// taken from the configuration file's directory.
	CertFile string
	// KeyFile is the private key of CertFile.
	KeyFile string
	// MetricsListenAddr is a second host:port that serves only /metrics
	// and /healthz, without the login, for Prometheus; empty disables it.
	// It uses CertFile and KeyFile too when they are set.
	MetricsListenAddr string
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string
	// Format is auto (text on a terminal, JSON otherwise), text or json.
	Format string
}

// Engine tunes the data path.
type Engine struct {
	// Backend is one of Backends.
	Backend string
	// BatchSize is the most datagrams moved per system call.
	BatchSize int
	// QueueLength is the backlog per link in packets, a power of two.
	QueueLength int
	// BufferSize is the size of a packet buffer in bytes.
	BufferSize int
	// GSO enables UDP generic segmentation offload for sending.
	GSO bool
	// GRO enables UDP generic receive offload.
	GRO bool
	// Dedup drops the extra copies of WireGuard messages before WireGuard.
	Dedup bool
}

// Backends lists the values engine.backend accepts; "auto" picks the best
// one the system has.
var Backends = defaults.Backends

// Limits the file may set that are not user-facing defaults.
const maxFwMark = 0xFFFFFFFF

func defaultLog() Log {
	return Log{Level: defaults.LogLevel, Format: defaults.LogFormat}
}

func defaultEngine() Engine {
	return Engine{
		Backend:     defaults.Backend,
		BatchSize:   defaults.BatchSize,
		QueueLength: defaults.QueueLength,
		BufferSize:  defaults.BufferSize,
		GSO:         defaults.GSO,
		GRO:         defaults.GRO,
		Dedup:       defaults.Dedup,
	}
}

// Error is a configuration error located in the file.
type Error struct {
	// File is the file name given to Load or Parse.
	File string
	// Line is the 1-based line of the offending key or value; 0 when the
	// problem has no single place, such as a missing section.
	Line int
	// Key is the dotted path of the offending key, such as
	// client.dstOverrides[1].dstAddr; empty for YAML syntax errors.
	Key string
	// Msg says what is wrong, as a plain sentence.
	Msg string
}

// Error formats e as "file:line: key: msg", leaving out the line when it
// is 0 and the key when it is empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File == "" {
			b.WriteString("line ")
		} else {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads the file at path and validates the section of role; the other
// role's section is ignored entirely (not validated, may be absent or
// contain anything). Problems in the file are reported as *Error values,
// several of them joined with errors.Join.
func Load(path string, role Role) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path, role)
}

// Parse is Load on bytes; file is used in error messages and Config.File.
func Parse(data []byte, file string, role Role) (*Config, error) {
	if role != RoleClient && role != RoleServer {
		return nil, fmt.Errorf("parsing %s: invalid role %d", file, int(role))
	}
	doc, err := parseYAML(data)
	if err != nil {
		return nil, syntaxError(file, data, err)
	}
	d := &decoder{file: file}
	cfg := d.document(doc, role)
	if err := d.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ControlSocketPath returns where a role's control socket is: socket as
// configured, or when that is empty a socket in the first directory of
// runtimeDir (the value of $RUNTIME_DIRECTORY, colon-separated), else in
// defaults.RuntimeDir, named after the configuration file and the role;
// "" when socket is defaults.ControlSocketOff. The fallback is the
// directory systemd's RuntimeDirectory=engarde makes, so that the status
// command, which runs without systemd's environment, finds the socket of
// a daemon run under systemd and of one run by hand alike.
func ControlSocketPath(socket, configFile, runtimeDir string, role Role) string {
	switch {
	case socket == defaults.ControlSocketOff:
		return ""
	case socket != "":
		return socket
	}
	dir, _, _ := strings.Cut(runtimeDir, ":")
	if dir == "" {
		dir = defaults.RuntimeDir
	}
	base := strings.TrimSuffix(filepath.Base(configFile), filepath.Ext(configFile))
	suffix := defaults.ServerSocketSuffix
	if role == RoleClient {
		suffix = defaults.ClientSocketSuffix
	}
	return filepath.Join(dir, base+suffix)
}

// StateFilePath returns where a role keeps its state across a restart:
// stateFile as configured, or when that is empty a file in the first
// directory of stateDir (the value of $STATE_DIRECTORY, colon-separated)
// named after the configuration file and the role, or "" for none.
func StateFilePath(stateFile, configFile, stateDir string, role Role) string {
	if stateFile != "" || stateDir == "" {
		return stateFile
	}
	dir, _, _ := strings.Cut(stateDir, ":")
	base := strings.TrimSuffix(filepath.Base(configFile), filepath.Ext(configFile))
	suffix := defaults.ServerStateSuffix
	if role == RoleClient {
		suffix = defaults.ClientStateSuffix
	}
	return filepath.Join(dir, base+suffix)
}
