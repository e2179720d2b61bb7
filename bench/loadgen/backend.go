package loadgen

import "github.com/engarde-project/engarde/engine/conn"

// NewBackend returns the socket backend called name, as engine.backend
// names them ("" or "auto": mmsg on Linux, std elsewhere).
func NewBackend(name string) (conn.Backend, error) { return conn.Open(name, nil) }
