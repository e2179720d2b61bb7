package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Usage is one sample of one process.
type Usage struct {
	// RSS is VmRSS from /proc/PID/status, in bytes.
	RSS uint64 `json:"rss_bytes"`
	// FDs counts /proc/PID/fd.
	FDs int `json:"fds"`
	// Goroutines and HeapInuse are the process's go_goroutines and
	// go_memstats_heap_inuse_bytes, from its /metrics.
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse_bytes"`
}

// Sample is both processes at one time.
type Sample struct {
	// At is the time since the stream started.
	At     time.Duration `json:"at_ns"`
	Client Usage         `json:"client"`
	Server Usage         `json:"server"`
}

// vmRSS returns the VmRSS line of a /proc/PID/status, in bytes.
func vmRSS(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		return n << 10, err
	}
	return 0, errors.New("no VmRSS line")
}

// metricValue returns the value of an unlabelled sample called name in
// a Prometheus text exposition.
func metricValue(text, name string) (float64, error) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in the metrics", name)
}

// procUsage reads the kernel's side of a sample of process pid.
func procUsage(pid int) (Usage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if u.RSS, err = vmRSS(string(b)); err != nil {
		return Usage{}, err
	}
	d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return Usage{}, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return Usage{}, err
	}
	u.FDs = len(names)
	return u, nil
}

// probe is a child of the soak in one namespace that scrapes a web
// manager on that namespace's loopback, over one kept-alive connection:
// each line on its standard input asks for one scrape, answered with one
// JSON line on its standard output. The soak runs outside the namespaces,
// where their loopback addresses cannot be reached; a connection kept open
// costs the scraped process a constant socket and goroutine, which a new
// connection per sample would not.
type probe struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// probeAnswer is one answer of a probe.
type probeAnswer struct {
	Goroutines float64 `json:"goroutines"`
	HeapInuse  float64 `json:"heap_inuse"`
	Err        string  `json:"err,omitempty"`
}

// startProbe starts this program as a probe of url in namespace ns.
func startProbe(ns, url string) (*probe, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self, "probe", url)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &probe{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

// scrape asks the probe for one scrape.
func (p *probe) scrape() (probeAnswer, error) {
	if _, err := io.WriteString(p.in, "\n"); err != nil {
		return probeAnswer{}, fmt.Errorf("probe: %w", err)
	}
	if !p.out.Scan() {
		return probeAnswer{}, fmt.Errorf("probe exited: %v", p.out.Err())
	}
	var a probeAnswer
	if err := json.Unmarshal(p.out.Bytes(), &a); err != nil {
		return probeAnswer{}, fmt.Errorf("probe: %w", err)
	}
	if a.Err != "" {
		return a, errors.New(a.Err)
	}
	return a, nil
}

// stop ends the probe: it exits when its input ends, or is killed.
func (p *probe) stop() {
	p.in.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// runProbe is the probe's side: scrape url once per input line.
func runProbe(url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var a probeAnswer
		text, err := get(client, url)
		if err == nil {
			a.Goroutines, err = metricValue(text, "go_goroutines")
		}
		if err == nil {
			a.HeapInuse, err = metricValue(text, "go_memstats_heap_inuse_bytes")
		}
		if err != nil {
			a.Err = err.Error()
		}
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return in.Err()
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	// Read to the end, so that the connection is kept for the next.
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}
