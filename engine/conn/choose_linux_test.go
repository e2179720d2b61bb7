package conn

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/engarde-project/engarde/engine/internal/uring"
)

// TestAutoFallback pins what "auto" does on a machine without io_uring: it
// runs mmsg and says why in one log line, however often it is asked.
func TestAutoFallback(t *testing.T) {
	disabled := func() (*uring.Features, error) {
		return nil, fmt.Errorf("%w: disabled by sysctl kernel.io_uring_disabled=2", uring.ErrUnsupported)
	}
	fallbackLogged = sync.Once{}
	var lines []string
	log := Logf(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	for range 3 {
		if b := autoBackend(log, true, disabled); b.Name() != "mmsg" {
			t.Fatalf("auto without io_uring chose %s", b.Name())
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "io_uring_disabled=2") || !strings.Contains(lines[0], "mmsg") {
		t.Errorf("log lines %q, want one naming the reason and mmsg", lines)
	}
	if _, err := uring.Probe(); err == nil {
		if b := autoBackend(nil, true, uring.Probe); b.Name() != "uring" {
			t.Errorf("auto with io_uring available chose %s", b.Name())
		}
	}
}
