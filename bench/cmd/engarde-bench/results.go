package main

import (
	"time"
)

// Results is everything a run measured; report.json holds it whole.
type Results struct {
	Env  Env  `json:"env"`
	Plan Plan `json:"plan"`
	// Mode is "namespaces" (the real binaries in two network namespaces)
	// or "loopback" (client and server in this process, without root).
	Mode string `json:"mode"`
	// Notes explain the mode and what was left out.
	Notes []string `json:"notes,omitempty"`
	// Skipped lists scenarios that did not run, and why.
	Skipped []Skip `json:"skipped,omitempty"`
	// Interrupted is set when the run was stopped (SIGINT, SIGTERM).
	Interrupted bool `json:"interrupted,omitempty"`

	Throughput []*ThroughputResult `json:"throughput,omitempty"`
	Latency    []*LatencyResult    `json:"latency,omitempty"`
	Failover   []*FailoverResult   `json:"failover,omitempty"`
	Loss       []*LossResult       `json:"loss,omitempty"`
	Slow       []*SlowResult       `json:"slow_link,omitempty"`
	Order      []*OrderResult      `json:"order,omitempty"`
	Scaling    *ScalingResult      `json:"scaling,omitempty"`
	WireGuard  *WireGuardResult    `json:"wireguard,omitempty"`

	// Targets compares the results with the targets.
	Targets []Target `json:"targets,omitempty"`
	// Timing is the wall time of each step.
	Timing  []Timing      `json:"timing"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Skip is a scenario that did not run.
type Skip struct {
	Scenario string `json:"scenario"`
	Reason   string `json:"reason"`
}

// Timing is the wall time of one step of the run.
type Timing struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
}

// failoverOf returns the failover result of path, nil when absent.
func (r *Results) failoverOf(path string) *FailoverResult {
	for _, x := range r.Failover {
		if x.Path == path {
			return x
		}
	}
	return nil
}

// slowOf returns the slow-link result of path, nil when absent.
func (r *Results) slowOf(path string) *SlowResult {
	for _, x := range r.Slow {
		if x.Path == path {
			return x
		}
	}
	return nil
}
