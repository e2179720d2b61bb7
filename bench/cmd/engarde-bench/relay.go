package main

import (
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// relayMain is `engarde-bench relay`: the delay relay (topo.RelayMain),
// which the order scenario runs in the server namespace in front of link
// B (topo.Tunnel.DelayLink), 5 ms each way unless -delay says otherwise.
func relayMain(args []string) error { return topo.RelayMain(args, 5*time.Millisecond) }
