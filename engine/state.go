package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The server's state file keeps its sessions across a restart. WireGuard
// keeps its sessions while engarde-server restarts; without the file, the
// clients' transport messages would be a stranger's to the new process
// (never forwarded: see session), and the tunnel would stay dark until
// WireGuard's next handshake, 15 s or more later. With it, the first
// datagram a member sends after the restart goes to WireGuard through the
// session's new socket, WireGuard moves its endpoint there (it roams to the
// source of what it authenticates), and its replies flow again.
//
// The file holds only what WireGuard's own answers made the server learn:
// the sessions' indexes, their members' addresses and the last answered
// initiation, so that a link re-sending it still joins. It is written with
// mode 0600 by the server alone, replaced whole (a write to a temporary
// file, then a rename), after a change within a second, every
// stateRefresh otherwise, and when Run ends.

// stateVersion is the state file's format; a file of another version is
// ignored (and replaced).
const stateVersion = 1

// stateRefresh is how often the state file is rewritten without a change,
// so that a restart after a crash still finds the members' recent silence.
const stateRefresh = 10 * time.Second

type savedState struct {
	Version  int            `json:"version"`
	Saved    time.Time      `json:"saved"`
	Sessions []savedSession `json:"sessions"`
}

type savedSession struct {
	// Indexes are the server WireGuard's indexes that the client's
	// transport messages carry, newest first; ClientIndexes the client's,
	// oldest first.
	Indexes       []uint32      `json:"indexes"`
	ClientIndexes []uint32      `json:"clientIndexes,omitempty"`
	Members       []savedMember `json:"members"`
	// Init and Response are the last initiation WireGuard answered and
	// its answer, for links that join by re-sending it.
	Init     []byte `json:"init,omitempty"`
	Response []byte `json:"response,omitempty"`
}

type savedMember struct {
	Addr     netip.AddrPort `json:"addr"`
	Local    netip.Addr     `json:"local"`
	Resent   bool           `json:"resent,omitempty"`
	LastSeen time.Time      `json:"lastSeen"`
}

// snapshotLocked returns the sessions as the state file keeps them.
func (s *Server) snapshotLocked(now int64) *savedState {
	st := &savedState{Version: stateVersion, Saved: time.Now()}
	wall := time.Now()
	for _, sess := range s.sessions {
		if sess.legacy || sess.closed {
			continue
		}
		// Copies: the file is written once the lock is released.
		ss := savedSession{Indexes: sess.win.indexes(), ClientIndexes: slices.Clone(sess.clientIx)}
		for _, m := range sess.members {
			ss.Members = append(ss.Members, savedMember{
				Addr: m.addr, Local: m.local.Addr(), Resent: m.resent,
				LastSeen: wall.Add(-time.Duration(now - m.lastSeen.Load())),
			})
		}
		if g := sess.last; g != nil && g.answered {
			ss.Init, ss.Response = slices.Clone(g.msg[:]), slices.Clone(g.resp)
		}
		if len(ss.Indexes) > 0 && len(ss.Members) > 0 {
			st.Sessions = append(st.Sessions, ss)
		}
	}
	return st
}

// writeState replaces the state file at path with st, as JSON.
func writeState(path string, st any) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// checkStateDir checks, at start, that the state file can be written
// where it is to be: a mistake there shows in the log now, not at the
// first restart.
func checkStateDir(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// readState reads the server's state file; a missing one is no error and
// no state.
func readState(path string) (*savedState, error) {
	var st savedState
	if ok, err := readJSON(path, &st, &st.Version); !ok {
		return nil, err
	}
	return &st, nil
}

// readJSON decodes the file at path into v and checks the version it
// decoded; it reports false for a missing file (err nil) or a bad one.
func readJSON(path string, v any, version *int) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if *version != stateVersion {
		return false, fmt.Errorf("%s: version %d, not %d", path, *version, stateVersion)
	}
	return true, nil
}

// restoreLocked rebuilds the saved sessions whose members are not too long
// silent to be kept, and returns how many it rebuilt.
func (s *Server) restoreLocked(st *savedState, now int64) int {
	timeout := time.Duration(s.timeout.Load())
	wall := time.Now()
	n := 0
	for _, ss := range st.Sessions {
		if len(ss.Indexes) == 0 || len(ss.Indexes) > indexesPerSession || len(ss.ClientIndexes) > indexesPerSession || len(ss.Members) > MaxSessionAddrs {
			continue
		}
		var keep []savedMember
		for _, sm := range ss.Members {
			if sm.Addr.IsValid() && wall.Sub(sm.LastSeen) < timeout+sessionLinger {
				keep = append(keep, sm)
			}
		}
		if len(keep) == 0 {
			continue
		}
		sess, err := s.newSessionLocked(false)
		if err != nil {
			s.log.warnf("restoring a session: %v", err)
			return n
		}
		for i := len(ss.Indexes) - 1; i >= 0; i-- {
			sess.win.learn(ss.Indexes[i])
		}
		for _, ix := range ss.ClientIndexes {
			s.byClient[ix] = sess
			sess.clientIx = append(sess.clientIx, ix)
		}
		if len(ss.Init) == wgInitiationLen && wgType(ss.Init, 0) == wgInitiationType {
			g := &initGroup{idx: wgSenderIndex(ss.Init), sess: sess, answered: true, index: ss.Indexes[0], at: now}
			copy(g.msg[:], ss.Init)
			g.sum = maphash.Bytes(initSeed, g.msg[:])
			g.resp = append([]byte(nil), ss.Response...)
			s.inits[g.idx] = append(s.inits[g.idx], g)
			sess.last = g
		}
		for _, sm := range keep {
			m := s.addMemberLocked(sess, sm.Addr, sm.Local, now, sm.Resent)
			if m == nil {
				continue
			}
			silent := max(wall.Sub(sm.LastSeen), 0)
			m.lastSeen.Store(now - int64(silent))
			m.live.Store(silent < timeout)
			if g := sess.last; g != nil {
				g.add(sm.Addr, sm.Local)
			}
		}
		s.publishLocked(sess)
		s.log.infof("session %d restored from %s: %d client addresses; its endpoint is %v", sess.id, s.cfg.StateFile, len(sess.members), sess.up.LocalAddr())
		n++
	}
	return n
}

// saveState writes the state file, if there is one, and logs a failure
// once in a while.
func (s *Server) saveState() {
	if s.cfg.StateFile == "" {
		return
	}
	s.mu.Lock()
	st := s.snapshotLocked(nanotime())
	s.mu.Unlock()
	if err := writeState(s.cfg.StateFile, st); err != nil && s.stateLog.allow() {
		s.log.warnf("saving the sessions for a restart: %v", err)
	}
}

// loadState restores the sessions of the state file, if there is one.
func (s *Server) loadState() {
	if s.cfg.StateFile == "" {
		return
	}
	st, err := readState(s.cfg.StateFile)
	if err != nil {
		s.log.warnf("the saved sessions are not restored: %v", err)
		return
	}
	if st == nil {
		return
	}
	s.mu.Lock()
	n := s.restoreLocked(st, nanotime())
	s.mu.Unlock()
	if n > 0 {
		s.log.infof("restored %d sessions saved %v ago", n, time.Since(st.Saved).Round(time.Millisecond))
	}
}

// The client's state file keeps WireGuard's last handshake initiation
// across a restart of the client. The new process's links have new source
// ports, addresses the server does not know; re-sending the initiation
// over each (as a link that appears does, see Client.resendInit) makes
// them members of the session at once, where they would otherwise wait
// for WireGuard's next handshake. It holds nothing secret: the initiation
// crossed every link in clear.
type clientState struct {
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"`
	// Init is WireGuard's last initiation, seen at InitAt.
	Init   []byte    `json:"init,omitempty"`
	InitAt time.Time `json:"initAt"`
	// Indexes are WireGuard's recent indexes, newest first: the
	// duplicate filter judges the replies that carry them.
	Indexes []uint32 `json:"indexes,omitempty"`
}

// saveState writes the client's state file, if it has one.
func (c *Client) saveState() {
	if c.cfg.StateFile == "" {
		return
	}
	st := clientState{Version: stateVersion, Saved: time.Now(), Indexes: c.win.indexes()}
	c.initMu.Lock()
	if c.lastInit.at != 0 {
		st.Init = append([]byte(nil), c.lastInit.msg[:]...)
		st.InitAt = time.Now().Add(-time.Duration(nanotime() - c.lastInit.at))
	}
	c.initMu.Unlock()
	if err := writeState(c.cfg.StateFile, &st); err != nil && c.stateLog.allow() {
		c.log.warnf("saving WireGuard's last handshake for a restart: %v", err)
	}
}

// loadState restores what the client's state file keeps, if it is recent
// enough to name WireGuard's session.
func (c *Client) loadState() {
	if c.cfg.StateFile == "" {
		return
	}
	if err := checkStateDir(c.cfg.StateFile); err != nil {
		c.log.warnf("WireGuard's last handshake cannot be kept for a restart (stateFile): %v", err)
	}
	var st clientState
	ok, err := readJSON(c.cfg.StateFile, &st, &st.Version)
	if err != nil {
		c.log.warnf("WireGuard's last handshake is not restored: %v", err)
	}
	if !ok {
		return
	}
	for i := len(st.Indexes) - 1; i >= 0 && i < indexesPerSession; i-- {
		c.win.learn(st.Indexes[i])
	}
	age := time.Since(st.InitAt)
	if len(st.Init) != wgInitiationLen || wgType(st.Init, 0) != wgInitiationType || age < 0 || age > initLife {
		return
	}
	c.initMu.Lock()
	copy(c.lastInit.msg[:], st.Init)
	c.lastInit.at = nanotime() - int64(age)
	if c.lastInit.at == 0 {
		c.lastInit.at = -1 // 0 means none
	}
	c.initMu.Unlock()
	c.log.infof("restored WireGuard's last handshake (%v old): new links re-send it to rejoin the session", age.Round(time.Second))
}

// keepState writes the client's state file each time WireGuard makes a
// new handshake, until ctx ends, and once more then.
func (c *Client) keepState(ctx context.Context) {
	if c.cfg.StateFile == "" {
		return
	}
	for {
		select {
		case <-ctx.Done():
			c.saveState()
			return
		case <-c.stateKick:
			c.saveState()
		}
	}
}
