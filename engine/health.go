package engine

// Link and tunnel states: see LinkStatus and TunnelState.
//
// Placeholder contract, filled in by the states work: Tunnel and Events
// must report what the links do.

// Tunnel returns the client's tunnel state.
func (c *Client) Tunnel() TunnelInfo { return TunnelInfo{State: TunnelUp, Probes: "off"} }

// Events returns the last changes of state, oldest first.
func (c *Client) Events() []Event { return nil }

// Tunnel returns the server's state over its sessions.
func (s *Server) Tunnel() TunnelInfo { return TunnelInfo{State: TunnelUp, Probes: "off"} }

// Events returns the last changes of state, oldest first.
func (s *Server) Events() []Event { return nil }
