// Package sys is the socket layer's door to golang.org/x/sys/unix: socket
// options, recvmmsg/sendmmsg, control messages, socket addresses and
// netlink. Everything here is a thin, allocation-free wrapper; policy lives
// in engine/conn and engine. With engine/internal/uring it is the only
// importer of x/sys/unix; on other systems it offers what the portable
// backend needs and reports the rest unsupported.
package sys
