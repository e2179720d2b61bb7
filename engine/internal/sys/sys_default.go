//go:build !linux

package sys

import (
	"errors"
	"net/netip"
)

// Supported reports whether this OS has the batch I/O and socket options of
// this package. Elsewhere the engine runs its portable backend and binds
// link sockets by address only.
const Supported = false

// SizeofRecvCmsg is the control-message space a receive asks for.
const SizeofRecvCmsg = 128

// BindToDevice is unsupported here: links bind to their interface's
// address only.
func BindToDevice(fd uintptr, dev string) error { return errors.ErrUnsupported }

// SetMark is unsupported here (SO_MARK is Linux's).
func SetMark(fd uintptr, mark uint32) error { return errors.ErrUnsupported }

// SetReusePort is unsupported here.
func SetReusePort(fd uintptr) error { return errors.ErrUnsupported }

// SetBuffers does nothing here; the system's defaults apply.
func SetBuffers(fd uintptr, rcv, snd int) {}

// EnableGRO is unsupported here.
func EnableGRO(fd uintptr) error { return errors.ErrUnsupported }

// EnablePacketInfo is unsupported here.
func EnablePacketInfo(fd uintptr, v6 bool) error { return errors.ErrUnsupported }

// ParseRecvCmsg finds nothing here.
func ParseRecvCmsg(b []byte) (seg int, dst netip.Addr) { return 0, netip.Addr{} }

// LinkWatcher is unavailable here; the client rescans periodically.
type LinkWatcher struct{}

// NewLinkWatcher returns errors.ErrUnsupported.
func NewLinkWatcher() (*LinkWatcher, error) { return nil, errors.ErrUnsupported }

// Wait returns errors.ErrUnsupported.
func (w *LinkWatcher) Wait() error { return errors.ErrUnsupported }

// Close does nothing.
func (w *LinkWatcher) Close() error { return nil }

// Links is unavailable here: package net's flags are all there is.
func Links() (map[int]Link, error) { return nil, errors.ErrUnsupported }

// PortHolders finds nothing here.
func PortHolders(port uint16) []Holder { return nil }
