package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Env describes the machine and the code a run measured.
type Env struct {
	Date    time.Time `json:"date"`
	Kernel  string    `json:"kernel"`
	CPU     string    `json:"cpu"`
	CPUs    int       `json:"cpus"`
	Go      string    `json:"go"`
	Git     string    `json:"git"`
	Engarde string    `json:"engarde"`
	Root    bool      `json:"root"`
	// LoadAvg is /proc/loadavg when the run started: a load well above
	// zero means something else was using the CPUs the run measures.
	LoadAvg string `json:"loadavg"`
}

// environment describes this machine and the binaries in bin.
func environment(bin string) Env {
	e := Env{Date: time.Now().UTC().Truncate(time.Second), CPUs: numCPU(), Go: runtime.Version(), Root: os.Geteuid() == 0}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	} else {
		e.Kernel = runtime.GOOS
	}
	e.CPU = cpuModel()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.LoadAvg = strings.TrimSpace(string(b))
	}
	e.Git = output("git", "describe", "--tags", "--always", "--dirty")
	e.Engarde = output(filepath.Join(bin, "engarde-client"), "-v")
	return e
}

// numCPU is the number of CPUs this process may use.
func numCPU() int { return runtime.NumCPU() }

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// output runs a command and returns the first line of its output, or
// "unknown".
func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// busy reports whether the 1-minute load average at the start shows
// other work on the machine (above half a CPU).
func (e Env) busy() bool {
	var load float64
	if _, err := fmt.Sscan(e.LoadAvg, &load); err != nil {
		return false
	}
	return load > 0.5
}
