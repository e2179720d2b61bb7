package sys

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestErrnoOf(t *testing.T) {
	op := &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", syscall.ENETUNREACH)}
	for _, tc := range []struct {
		name string
		err  error
		want syscall.Errno
		ok   bool
	}{
		{"nil", nil, 0, false},
		{"bare", syscall.EPERM, syscall.EPERM, true},
		{"net.OpError around os.SyscallError", op, syscall.ENETUNREACH, true},
		{"wrapped with %w", fmt.Errorf("link a: %w", op), syscall.ENETUNREACH, true},
		{"joined", errors.Join(errors.New("x"), syscall.EACCES), syscall.EACCES, true},
		{"no errno", errors.New("send buffer full"), 0, false},
	} {
		got, ok := errnoOf(tc.err)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
		var e syscall.Errno
		if asOK := errors.As(tc.err, &e); asOK != ok || e != got {
			t.Errorf("%s: errors.As says %v %v", tc.name, e, asOK)
		}
	}
	if !IsPathError(op) || IsFiltered(op) || !IsFiltered(fmt.Errorf("x: %w", os.NewSyscallError("sendmmsg", syscall.EPERM))) {
		t.Error("IsPathError or IsFiltered misjudge")
	}
	// The senders ask for every batch a refusing path fails.
	if a := testing.AllocsPerRun(100, func() { IsPathError(op); IsFiltered(op) }); a != 0 {
		t.Errorf("classifying an error allocates %.1f times", a)
	}
}
