// Package defaults is the one home of engarde's user-facing defaults and
// limits. config applies them to the keys a file leaves out and checks
// values against the ranges; the engine applies the same values to the
// zero fields of its options, so that a program using the engine directly
// runs the engine the binaries run; engarde.yml.sample and the README's key
// table are checked against them by config's tests.
//
// It imports nothing of the project and no YAML, so that the engine can
// depend on it without depending on the file format.
package defaults

import "time"

// Timeouts.
const (
	// WriteTimeout is how long a packet may wait for a full socket before
	// it is dropped for that socket (writeTimeout).
	WriteTimeout = 10 * time.Millisecond
	// ClientTimeout is how long the server keeps a silent client address
	// (clientTimeout).
	ClientTimeout = 30 * time.Second
	// ForwardAnyUDP: the server answers WireGuard sessions only
	// (forwardAnyUDP).
	ForwardAnyUDP = false
)

// Probes (probeInterval): the client probes each link this often, to
// measure its round trip and loss without traffic; 0 in the file turns
// them off. The bounds keep a probe's share of a link negligible and the
// server's per-address rate limit, four times the fastest, out of the way.
const (
	ProbeInterval    = 250 * time.Millisecond
	MinProbeInterval = 50 * time.Millisecond
	MaxProbeInterval = 60 * time.Second
)

// ServerStateSuffix and ClientStateSuffix name a role's state file when
// stateFile is empty and systemd gives the service a state directory
// ($STATE_DIRECTORY): the configuration file's name without its
// extension, then this.
const (
	ServerStateSuffix = ".server.state"
	ClientStateSuffix = ".client.state"
)

// ControlSocketOff turns the control socket off (controlSocket: off);
// RuntimeDir, ServerSocketSuffix and ClientSocketSuffix name it when
// controlSocket is empty: the configuration file's name without its
// extension, then the suffix, in $RUNTIME_DIRECTORY when systemd sets it
// (RuntimeDirectory=engarde), else in RuntimeDir. RuntimeDir is the
// directory RuntimeDirectory=engarde makes, so that the status command,
// run from a shell without systemd's environment, finds the socket of a
// daemon started either way.
const (
	ControlSocketOff   = "off"
	RuntimeDir         = "/run/engarde"
	ServerSocketSuffix = ".server.sock"
	ClientSocketSuffix = ".client.sock"
)

// Logging.
const (
	LogLevel  = "info"
	LogFormat = "auto"
)

// LogLevels and LogFormats list the values log.level and log.format accept.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"auto", "text", "json"}
)

// The data path (the engine section).
const (
	// Backend is the socket backend; "auto" picks the fastest the system
	// has.
	Backend = "auto"
	// BatchSize is the most datagrams moved per system call.
	BatchSize    = 64
	MinBatchSize = 1
	MaxBatchSize = 1024
	// QueueLength is each destination's backlog in packets, used while its
	// socket buffer is full; a power of two.
	QueueLength    = 1024
	MinQueueLength = 16
	MaxQueueLength = 65536
	// BufferSize is the size of a packet buffer in bytes: 65536 holds the
	// largest UDP datagram and a whole GRO train.
	BufferSize    = 65536
	MinBufferSize = 1500
	MaxBufferSize = 65536
	// GSO, GRO and Dedup turn on UDP segmentation offload for sends,
	// receive offload, and the duplicate filter.
	GSO   = true
	GRO   = true
	Dedup = true
)

// Backends lists the values engine.backend accepts.
var Backends = []string{"auto", "mmsg", "uring", "std"}
