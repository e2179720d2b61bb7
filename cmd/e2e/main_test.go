package e2e

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
)

// runChecked runs the tests, then checks that they left nothing behind:
// no network namespace of theirs, no child process, no goroutine of this
// module, no file descriptor opened since they started. A leftover fails
// the run with a list of what was left.
func runChecked(m *testing.M) int {
	// The netpoller's epoll and wake-up descriptors are made at the first
	// network use and kept for the life of the process: make them now, so
	// that they count in the baseline.
	if c, err := net.ListenPacket("udp", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	before := fds()
	code := m.Run()
	// Idle keep-alive connections of the tests' HTTP clients are the
	// transport's, not a leak.
	http.DefaultClient.CloseIdleConnections()

	var left []string
	// What a test stops may take a moment to go: retry for a while.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left = leftovers(before)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left behind:\n  %s\n", strings.Join(left, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// leftovers lists what the tests left behind, given the descriptors that
// were open before them.
func leftovers(before map[int]string) []string {
	var left []string
	for _, ns := range ourNamespaces() {
		left = append(left, "network namespace "+ns)
	}
	for _, c := range children() {
		left = append(left, "child process "+c)
	}
	for _, g := range ourGoroutines() {
		left = append(left, "goroutine "+g)
	}
	after := fds()
	for _, fd := range slices.Sorted(maps.Keys(after)) {
		if target, ok := before[fd]; !ok || target != after[fd] {
			left = append(left, fmt.Sprintf("file descriptor %d (%s)", fd, after[fd]))
		}
	}
	return left
}

// nsName matches the namespaces this package's tests create: topo's
// prefixes made of "eg", a letter or none, and the test process's PID
// (modulo 100000 or 10000), then a dash.
var nsName = regexp.MustCompile(`^eg[a-z]?([0-9]+)-`)

// ourNamespaces lists the network namespaces named after this process.
func ourNamespaces() []string {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	pid := os.Getpid()
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := nsName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if n, err := strconv.Atoi(m[1]); err == nil && (n == pid%100000 || n == pid%10000) {
			ours = append(ours, name)
		}
	}
	return ours
}

// children lists the processes whose parent is this one, zombies not yet
// waited for included, from /proc.
func children() []string {
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil
	}
	me := os.Getpid()
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(me) {
			continue
		}
		pid := strings.Fields(s)[0]
		cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		out = append(out, fmt.Sprintf("%s (state %s): %s", pid, f[0], strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	return out
}

// module is this module's import path, as it appears in stack traces.
const module = "github.com/engarde-project/engarde/"

// ourGoroutines lists the goroutines running code of this module, other
// than the one calling it, each as its first frame of ours.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // this goroutine
		}
		lines := strings.Split(g, "\n")
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, module) || strings.HasPrefix(l, "created by "+module) {
				out = append(out, lines[0]+" in "+l)
				break
			}
		}
	}
	return out
}

// fds returns this process's open descriptors and what each refers to.
func fds() map[int]string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil // no procfs: nothing to compare
	}
	out := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir itself used, closed by now
		}
		out[fd] = target
	}
	return out
}

// TestLeftovers checks that the leak check finds what it looks for: a
// child not waited for, a goroutine of ours, an open file and a
// namespace named like ours. Without them it must find nothing new.
func TestLeftovers(t *testing.T) {
	before := fds()
	base := leftovers(before)

	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	started := make(chan struct{})
	go func() { close(started); <-stop }()
	<-started
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := leftovers(before)
	f.Close()
	close(stop)
	cmd.Process.Kill()
	cmd.Wait()

	want := []string{"child process " + strconv.Itoa(cmd.Process.Pid), "goroutine ", "file descriptor "}
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.HasPrefix(g, w) && !slices.Contains(base, g) {
				found = true
			}
		}
		if !found {
			t.Errorf("nothing like %q found in %q", w, got)
		}
	}
	if topo.Usable() == nil {
		name := fmt.Sprintf("egk%d-leak", os.Getpid()%100000)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		found := slices.Contains(ourNamespaces(), name)
		exec.Command("ip", "netns", "del", name).Run()
		if !found {
			t.Errorf("namespace %s not found among ours: %q", name, ourNamespaces())
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := leftovers(before)
		if len(left) == len(base) || time.Now().After(deadline) {
			if len(left) != len(base) {
				t.Errorf("after cleaning up, left %q (before: %q)", left, base)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}
