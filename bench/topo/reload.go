package topo

import (
	"os"
	"path/filepath"
	"syscall"
)

// WriteConfig replaces the tunnel's configuration file with text, in one
// step (a new file renamed over the old), so that a process reading it
// on SIGHUP never sees half of it.
func (t *Tunnel) WriteConfig(text string) error {
	tmp := filepath.Join(t.dir, ".engarde.yml.new")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, t.ConfigPath)
}

// Reload sends SIGHUP to p, which makes engarde re-read its configuration.
func (p *Proc) Reload() error {
	return p.Cmd.Process.Signal(syscall.SIGHUP)
}

// Running reports whether p has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}
