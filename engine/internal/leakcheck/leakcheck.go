package leakcheck

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// module is the import path prefix of the code whose goroutines count.
const module = "github.com/engarde-project/engarde/"

// grace is how long goroutines and descriptors get to go away once the
// tests are done: a closed socket's receive loop returns on its next
// wake-up, a sender's flusher after its write.
const grace = 5 * time.Second

// Main runs m's tests, then fails the run when goroutines of this module
// or file descriptors opened by the tests are left, printing their stacks
// or what the descriptors point at. A package's TestMain calls it:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
func Main(m *testing.M) {
	// The runtime's poller opens its descriptors (epoll, an eventfd)
	// at the first socket and keeps them: open them before counting.
	if c, err := net.ListenPacket("udp", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	fds0, fdsOK := fds()
	code := m.Run()
	if code != 0 {
		os.Exit(code) // a failed test may leave what it started
	}
	deadline := time.Now().Add(grace)
	var left []string
	for {
		left = ours()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "leakcheck: %d goroutines of %s left after the tests:\n\n%s\n", len(left), strings.TrimSuffix(module, "/"), strings.Join(left, "\n\n"))
		code = 1
	}
	if fdsOK {
		var extra []string
		for {
			// Some descriptors are closed by cleanups of objects no longer
			// reachable (the uring backend's idle send rings).
			runtime.GC()
			fds1, _ := fds()
			extra = extra[:0]
			for fd, target := range fds1 {
				if t0, ok := fds0[fd]; !ok || t0 != target {
					extra = append(extra, fmt.Sprintf("fd %s -> %s", fd, target))
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(extra) > 0 {
			slices.Sort(extra)
			fmt.Fprintf(os.Stderr, "leakcheck: %d file descriptors opened by the tests are still open:\n%s\n", len(extra), strings.Join(extra, "\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// ours returns the stacks of the goroutines running this module's code,
// other than the one calling it.
func ours() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // this goroutine
		}
		if strings.Contains(g, module) && !strings.Contains(g, module+"engine/internal/leakcheck.") {
			out = append(out, g)
		}
	}
	return out
}

// fds returns the open file descriptors and what each points at, and
// false where the OS has no /proc/self/fd.
func fds() (map[string]string, bool) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, false
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir itself used, closed by now
		}
		out[e.Name()] = target
	}
	return out, true
}
