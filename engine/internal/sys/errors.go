package sys

import (
	"errors"
	"syscall"
)

// IsPathError reports whether err, returned by a send, refuses the path
// rather than the message: no route (ENETUNREACH, EHOSTUNREACH), the
// device or the source address gone (ENETDOWN, EHOSTDOWN, ENODEV,
// EADDRNOTAVAIL). Every other message to the same destination would fail
// the same way until the path changes. Errors about one message
// (EMSGSIZE) or pending from an earlier one (ECONNREFUSED, from an ICMP
// port unreachable: udp_err in net/ipv4/udp.c reports it once) are not,
// nor is a firewall's refusal (IsFiltered), which may be of this message
// alone.
func IsPathError(err error) bool {
	e, ok := errnoOf(err)
	if !ok {
		return false
	}
	switch e {
	case syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.ENETDOWN, syscall.EHOSTDOWN, syscall.ENODEV, syscall.EADDRNOTAVAIL:
		return true
	}
	return false
}

// IsFiltered reports whether err is a firewall's refusal of a send: EPERM
// (netfilter's NF_DROP on output: ip_finish_output2 and friends return
// it) or EACCES. A rule may refuse every message of the path, or some of
// them (a random drop, a rate limit): one refusal says nothing of the
// next message.
func IsFiltered(err error) bool {
	e, ok := errnoOf(err)
	return ok && (e == syscall.EPERM || e == syscall.EACCES)
}

// errnoOf finds the Errno in err's chain, as errors.As would, without
// allocating: the senders ask for every batch a refusing path fails, and
// errors.As's target escapes to the heap.
func errnoOf(err error) (syscall.Errno, bool) {
	for err != nil {
		switch x := err.(type) {
		case syscall.Errno:
			return x, true
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if n, ok := errnoOf(e); ok {
					return n, true
				}
			}
			return 0, false
		default:
			return 0, false
		}
	}
	return 0, false
}

// IsAddrInUse reports whether err, returned by a bind, is EADDRINUSE: a
// socket holds the address and port already, without sharing them.
func IsAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

// ErrMarkPermission is wrapped by SetMark's error when the kernel refuses
// SO_MARK for want of a capability: sk_setsockopt in net/core/sock.c
// returns EPERM unless the process has CAP_NET_ADMIN, or since Linux 5.17
// CAP_NET_RAW, in the user namespace of the socket's network namespace.
var ErrMarkPermission = errors.New("SO_MARK needs CAP_NET_ADMIN")
