package app

import (
	"context"
	"fmt"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// readyWait bounds how long a client waits for its first interface scan
// before telling systemd it is ready: a host with no interface but
// loopback has no link to wait for.
const readyWait = time.Second

// Ready returns once the client has scanned the interfaces (its links are
// open), or after readyWait, or when ctx ends. The listen socket is bound
// before Run starts.
func (c *ClientControl) Ready(ctx context.Context) {
	deadline := time.Now().Add(readyWait)
	for len(c.Links()) == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// Health reads the client's status as the API does, and sums it up in a
// line for systemctl status: "tunnel up; 2 of 3 links active", counting
// the interfaces that have a socket (not loopback, say).
func (c *ClientControl) Health() string {
	st := c.ClientStatus()
	active, links := 0, 0
	for _, l := range st.Links {
		if l.Counters == nil {
			continue
		}
		links++
		if l.Status == string(engine.LinkActive) {
			active++
		}
	}
	return tunnelLine(st.Tunnel) + fmt.Sprintf("; %d of %d links active", active, links)
}

// Health reads the server's status as the API does, and sums it up in a
// line for systemctl status: "tunnel up; 2 sessions, 5 client addresses".
func (s *ServerControl) Health() string {
	st := s.ServerStatus()
	addrs := 0
	for _, ss := range st.Sessions {
		addrs += len(ss.Addrs)
	}
	return tunnelLine(st.Tunnel) + fmt.Sprintf("; %s, %s", count(uint64(len(st.Sessions)), "session", "sessions"), count(uint64(addrs), "client address", "client addresses"))
}

func tunnelLine(t engine.TunnelInfo) string {
	if t.State == "" {
		return "running"
	}
	line := "tunnel " + string(t.State)
	if t.Reason != "" {
		line += " (" + t.Reason + ")"
	}
	return line
}
