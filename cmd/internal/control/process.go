package control

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
)

// The process and Go runtime series that Prometheus's client libraries
// export under the same names (client_golang's process and Go collectors;
// names as in https://prometheus.io/docs/instrumenting/writing_clientlibs/#process-metrics),
// so that dashboards and alerts written for any Go program work here too.
// The process series come from procfs (proc(5)) and are absent where
// there is none: only Linux has the files and formats read here.

// procSelf is where the process reads its own procfs entries.
const procSelf = "/proc/self"

// userHZ is the unit of the times in /proc/<pid>/stat (USER_HZ, which the
// kernel fixes at 100 on every architecture Go supports; proc(5),
// "clock ticks"); without cgo there is no sysconf(_SC_CLK_TCK) to ask.
const userHZ = 100

// procStat is what the metrics use of /proc/<pid>/stat.
type procStat struct {
	utime, stime uint64 // in clock ticks
	starttime    uint64 // clock ticks after boot
	vsize        uint64 // bytes
	rss          uint64 // pages
}

// parseProcStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n of proc(5) is f[n-3].
	const utime, stime, starttime, vsize, rss = 14 - 3, 15 - 3, 22 - 3, 23 - 3, 24 - 3
	if len(f) <= rss {
		return procStat{}, errors.New("too few fields")
	}
	var s procStat
	for _, x := range []struct {
		dst *uint64
		i   int
	}{{&s.utime, utime}, {&s.stime, stime}, {&s.starttime, starttime}, {&s.vsize, vsize}, {&s.rss, rss}} {
		v, err := strconv.ParseUint(f[x.i], 10, 64)
		if err != nil {
			return procStat{}, err
		}
		*x.dst = v
	}
	return s, nil
}

// parseBootTime returns the btime line of /proc/stat: when the system
// booted, in seconds since the Unix epoch.
func parseBootTime(b []byte) (uint64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no btime line")
}

// parseMaxFiles returns the soft limit on open files from
// /proc/<pid>/limits, or false if it is unlimited or absent.
func parseMaxFiles(b []byte) (uint64, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0, false
			}
			n, err := strconv.ParseUint(f[0], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// openFDs counts the entries of dir (a /proc/<pid>/fd), not counting the
// one descriptor used to read it.
func openFDs(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil
}

// goSamples are the runtime/metrics read for the go_* series.
var goSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
}

// process writes the process_* and go_* families.
func (m *metrics) process() {
	if runtime.GOOS == "linux" {
		m.procfs(procSelf)
	}
	s := make([]rtmetrics.Sample, len(goSamples))
	for i, name := range goSamples {
		s[i].Name = name
	}
	rtmetrics.Read(s)
	// runtime.NumGoroutine, not /sched/goroutines:goroutines: the latter
	// counts the runtime's own goroutines too, such as one GC mark worker
	// per P started at the first collection, which would look like a leak.
	m.family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	m.sample("go_goroutines", float64(runtime.NumGoroutine()))
	// runtime.MemStats.HeapInuse is, in runtime/metrics' terms, the
	// heap's objects plus its unused space in spans in use (the runtime's
	// own mapping, src/runtime/metrics.go, heapStatsAggregate).
	m.family("go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use.")
	m.sample("go_memstats_heap_inuse_bytes", float64(s[0].Value.Uint64()+s[1].Value.Uint64()))
}

// procfs writes the process_* families from the procfs directory of one
// process (dir, such as /proc/self), each only if its file reads and
// parses.
func (m *metrics) procfs(dir string) {
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		if st, err := parseProcStat(b); err == nil {
			m.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
			m.sample("process_cpu_seconds_total", float64(st.utime+st.stime)/userHZ)
			m.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
			m.sample("process_resident_memory_bytes", float64(st.rss*uint64(os.Getpagesize())))
			m.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
			m.sample("process_virtual_memory_bytes", float64(st.vsize))
			if b, err := os.ReadFile("/proc/stat"); err == nil {
				if boot, err := parseBootTime(b); err == nil {
					m.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
					m.sample("process_start_time_seconds", float64(boot)+float64(st.starttime)/userHZ)
				}
			}
		}
	}
	if n, err := openFDs(dir + "/fd"); err == nil {
		m.family("process_open_fds", "gauge", "Number of open file descriptors.")
		m.sample("process_open_fds", float64(n))
	}
	if b, err := os.ReadFile(dir + "/limits"); err == nil {
		if n, ok := parseMaxFiles(b); ok {
			m.family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
			m.sample("process_max_fds", float64(n))
		}
	}
}
