package sys

import (
	"errors"
	"syscall"
)

// IsPathError reports whether err, returned by a send, refuses the path
// rather than the message: a firewall rule (EPERM from netfilter's
// NF_DROP on output, EACCES), no route (ENETUNREACH, EHOSTUNREACH), the
// device or the source address gone (ENETDOWN, EHOSTDOWN, ENODEV,
// EADDRNOTAVAIL). Every other message to the same destination would fail
// the same way until the path changes. Errors about one message
// (EMSGSIZE) or pending from an earlier one (ECONNREFUSED, from an ICMP
// port unreachable: udp_err in net/ipv4/udp.c reports it once) are not.
func IsPathError(err error) bool {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case syscall.EPERM, syscall.EACCES, syscall.ENETUNREACH, syscall.EHOSTUNREACH,
		syscall.ENETDOWN, syscall.EHOSTDOWN, syscall.ENODEV, syscall.EADDRNOTAVAIL:
		return true
	}
	return false
}
