package sys

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSetMarkWithoutCapability: the kernel's refusal of SO_MARK to a
// process without CAP_NET_ADMIN and CAP_NET_RAW is reported as
// ErrMarkPermission, which the client explains; with the capabilities the
// mark is set. Capabilities are per thread (capset(2)): the test drops
// them on a thread of its own, and restores them.
func TestSetMarkWithoutCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: not root (the test sets a mark, then drops the capability)")
	}
	type result struct{ with, without error }
	done := make(chan result)
	go func() {
		// Unlocked once its capabilities are back; if they cannot be,
		// the thread ends with the goroutine.
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		mark := func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return SetMark(uintptr(fd), 0xca6c)
		}
		r.with = mark()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			r.without = err
			return
		}
		saved := data
		for i := range data {
			data[i].Effective = 0
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			r.without = err
			return
		}
		r.without = mark()
		// The permitted set was kept: the effective one can come back.
		if unix.Capset(&hdr, &saved[0]) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-done
	if r.with != nil {
		t.Fatalf("as root: %v", r.with)
	}
	if !errors.Is(r.without, ErrMarkPermission) || !errors.Is(r.without, syscall.EPERM) {
		t.Fatalf("without capabilities: %v, want EPERM and ErrMarkPermission", r.without)
	}
	t.Logf("without capabilities: %v", r.without)
}
