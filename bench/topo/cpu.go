package topo

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// which Linux fixes at 100 on every architecture it runs on (see
// proc(5) and sysconf(_SC_CLK_TCK)).
const clockTick = 10 * time.Millisecond

// CPU returns the processor time the process has used so far, user plus
// system, all its threads together (utime + stime of /proc/PID/stat), to
// 10 ms. `ip netns exec` executes the program in place, so the PID is the
// program's own.
func (p *Proc) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatCPU(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", p.Cmd.Process.Pid, err)
	}
	return time.Duration(ticks) * clockTick, nil
}

// parseStatCPU returns utime + stime (fields 14 and 15) of a
// /proc/PID/stat line, in clock ticks. The command name (field 2) is in
// parentheses and may hold spaces and parentheses, so the fields are
// counted from the last closing parenthesis.
func parseStatCPU(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	// After ")": field 3 (state) is the first.
	f := strings.Fields(stat[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("%d fields after the command name, want more than %d", len(f), stime)
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + s, nil
}
