package sys

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// PortHolders returns the processes that hold a UDP socket bound to port
// in this network namespace, as far as /proc shows them: a process's file
// descriptors are readable by its own user and by root, and SO_REUSEPORT
// shares a port only among sockets of one user, so the processes that
// share a port with us are found. Best effort, for an error message: nil
// when nothing is found or /proc cannot be read.
func PortHolders(port uint16) []Holder {
	inodes := map[uint64]bool{}
	for _, f := range []string{"udp", "udp6"} {
		// This thread's namespace (Linux 3.17), where the bind failed;
		// /proc/net is the main thread's.
		b, err := os.ReadFile("/proc/thread-self/net/" + f)
		if err != nil {
			if b, err = os.ReadFile("/proc/net/" + f); err != nil {
				continue
			}
		}
		for _, i := range parseUDPInodes(b, port) {
			inodes[i] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Holder
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name())
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // another user's, or gone
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), 10, 64)
			if err != nil || !inodes[inode] {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
			out = append(out, Holder{PID: pid, Name: strings.TrimSpace(string(comm))})
			break
		}
	}
	slices.SortFunc(out, func(a, b Holder) int { return a.PID - b.PID })
	return out
}
