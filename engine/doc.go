// Package engine is engarde's data plane: the two roles and the pipeline
// they share.
//
//   - Client (client.go, links.go, exclusions.go): receives from local
//     WireGuard and sends every datagram over every usable interface; one
//     link per interface, opened, kept and closed as the interface planner
//     (plan.go, iface.go, resolve.go) decides on kernel events and rescans.
//   - Server (server.go): forwards what clients send to WireGuard, and
//     WireGuard's replies to the client's addresses, each on a socket of
//     its own.
//   - The pipeline: receive loops (pump.go) read batches into pool buffers;
//     the fan-out (fanout.go) hands one buffer to every destination by
//     reference; a sender per destination (sender.go) writes inline and
//     spills into a lock-free backlog when its socket is full; the
//     duplicate filter (dedup.go) drops the extra copies of WireGuard
//     transport messages, whose clear-text headers wireguard.go parses;
//     Stats (stats.go) count every socket for the control plane.
//
// The engine reaches the kernel only through engine/conn's batch contract,
// and takes plain options (Options, ClientConfig, ServerConfig) and a tiny
// Logger; it imports no YAML, HTTP or logging library. Its defaults are
// config/defaults', a leaf package of constants, so that the zero Options
// are the engine the programs run.
package engine
