package app

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
)

// The control socket serves the web manager's API (control.Server's
// LocalHandler: reads and actions, no login) on a unix socket, so that
// status works without a web manager. Its access control is the file
// system's, as WireGuard's UAPI socket (wireguard-go ipc/uapi_linux.go):
// the socket is mode 0660 (the daemon's user and group), and its directory
// must not be writable by other users, who could otherwise put a socket
// of their own in its place.

// socketMode is the control socket's permission bits: the daemon's user
// and group (the units' engarde group) may connect.
const socketMode fs.FileMode = 0o660

// socketDirMode is the mode of a directory ListenControl creates. Others
// may traverse it (the socket's own mode keeps them out), as wg(8)'s
// /var/run/wireguard.
const socketDirMode fs.FileMode = 0o755

// ErrSocketInUse is returned by ListenControl when a running daemon
// answers on the socket's path.
var ErrSocketInUse = errors.New("in use by a running daemon")

// controlListener is a unix socket listener that removes its file when
// closed, if the file is still its own: a daemon started since in its
// place keeps its socket.
type controlListener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket as bound
	once sync.Once
}

// Close stops listening and removes the socket file if it is still this
// listener's.
func (l *controlListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if st, err := os.Lstat(l.path); err == nil && os.SameFile(st, l.file) {
			_ = os.Remove(l.path) // a leftover is replaced at the next start
		}
	})
	return err
}

// ListenControl listens on the unix socket at path, mode 0660, creating
// its directory if need be. It refuses a directory that every user may
// write to, and a path that is not a socket; a socket that no process
// answers on (left by a crashed run) is replaced, one that answers is
// refused with ErrSocketInUse. The socket is bound under a temporary name
// and renamed into place once its mode is set, so that it is never
// reachable with a looser one whatever the umask.
func ListenControl(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, socketDirMode); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if st.Mode().Perm()&0o002 != 0 {
		return nil, fmt.Errorf("control socket %s: its directory %s is writable by every user, who could put a socket of their own in its place; use a directory only the daemon's user and group can write to", path, dir)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp) // a leftover of this pid's previous life
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// The file is renamed: removing it is Close's job, by its final name.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, socketMode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	file, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &controlListener{UnixListener: ln, path: path, file: file}, nil
}

// clearStale removes a socket at path that no process answers on, and
// refuses one that a process answers on, or a file that is not a socket.
func clearStale(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("control socket %s: %w", path, err)
	case st.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("control socket %s: the path exists and is not a socket; remove it or set controlSocket to another path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: %w (another engarde started with a configuration file of the same name?): stop it, or set controlSocket to another path", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: checking whether a daemon answers on it: %w", path, err)
	}
	// Nobody listens: a crashed run's socket.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: removing the stale socket: %w", path, err)
	}
	return nil
}

// Socket is the daemon's control socket, serving web's API.
type Socket struct {
	log  zerolog.Logger
	web  *control.Server
	path string // where it serves; "" for nowhere
}

// socketPath is where the configuration puts the control socket, and
// whether the file chose the place (else it is the default, which a
// daemon that may not create it does without: see StartSocket).
func socketPath(cfg *config.Config) (path string, explicit bool) {
	var socket string
	if cfg.Role == config.RoleClient {
		socket = cfg.Client.ControlSocket
	} else {
		socket = cfg.Server.ControlSocket
	}
	runtimeDir := os.Getenv("RUNTIME_DIRECTORY")
	if socket == "" && runtimeDir == "" && runtime.GOOS == "windows" {
		return "", false // no /run; a path must be configured
	}
	return config.ControlSocketPath(socket, cfg.File, runtimeDir, cfg.Role), socket != ""
}

// StartSocket serves web's API on the control socket cfg names. Any error
// is returned, for the daemon to stop with: its supervisor must see that
// status cannot work. The one exception is the default place (no
// controlSocket) when this user may not create it (/run/engarde, for a
// daemon run by hand as an ordinary user; under systemd the runtime
// directory is the unit's user's): then the daemon runs without the
// socket and says so once. A socket another daemon answers on is always
// an error.
func StartSocket(zl zerolog.Logger, web *control.Server, cfg *config.Config) (*Socket, error) {
	s := &Socket{log: zl, web: web}
	ln, path, err := s.listen(cfg)
	if err != nil {
		return nil, err
	}
	if ln != nil {
		s.serve(ln, path)
	}
	return s, nil
}

// listen opens the socket cfg names: a nil listener for none, either
// because cfg turns it off or because the default place cannot be
// created by this user (logged; see StartSocket).
func (s *Socket) listen(cfg *config.Config) (net.Listener, string, error) {
	path, explicit := socketPath(cfg)
	if path == "" {
		return nil, "", nil
	}
	ln, err := ListenControl(path)
	if err != nil {
		if !explicit && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
			s.log.Warn().Err(err).Msg("no control socket: status needs the web manager (set controlSocket to a path this user can create, or off)")
			return nil, "", nil
		}
		return nil, "", err
	}
	return ln, path, nil
}

func (s *Socket) serve(ln net.Listener, path string) {
	s.web.ServeLocal(ln)
	s.path = path
	if ln != nil {
		s.log.Info().Str("socket", path).Msg("control socket listening")
	}
}

// Path returns where the socket serves, or "".
func (s *Socket) Path() string { return s.path }

// Reconfigure moves the socket where next says (a reload). On error the
// socket stays where it was.
func (s *Socket) Reconfigure(next *config.Config) error {
	if path, _ := socketPath(next); path == s.path {
		return nil
	}
	ln, path, err := s.listen(next)
	switch {
	case err != nil:
		return err
	case ln == nil && s.path != "":
		s.serve(nil, "")
		s.log.Info().Msg("control socket off")
	case ln != nil:
		s.serve(ln, path)
	}
	return nil
}

// Close stops serving and removes the socket.
func (s *Socket) Close() {
	if s.path != "" {
		s.serve(nil, "")
	}
}
