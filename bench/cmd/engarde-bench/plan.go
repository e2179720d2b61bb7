package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Scenario names, in the order a run measures them.
const (
	scThroughput = "throughput"
	scLatency    = "latency"
	scFailover   = "failover"
	scLoss       = "loss"
	scSlow       = "slow"
	scOrder      = "order"
	scScaling    = "scaling"
	scWireGuard  = "wireguard"
)

var allScenarios = []string{scThroughput, scLatency, scFailover, scLoss, scSlow, scOrder, scScaling, scWireGuard}

// defaultBackends are the engine backends `make bench` measures, the
// primary one (the default) first (-backends overrides it).
var defaultBackends = []string{"mmsg", "uring", "std"}

// Plan is what a run measures and for how long.
//
// Time budget of the full plan on this project's 2-core machine, about
// 315 s of the 6 minutes allowed to `make bench` (a trial costs its
// sending time, the generator's wait for late echoes, and about 20 ms to
// start; a tunnel about 0.2 s to start):
//
//	scenario                                    trials                     s
//	tunnel for mmsg, direct sink                                           1
//	throughput 1400 B, mmsg + direct, 3 pairs   3 x 2 x (1+7) x 1.5 s     72
//	throughput 64 B, mmsg + direct, 1 pair      1 x 2 x (1+7) x 1.5 s     24
//	latency 2k and 10k pkt/s, 3 pairs           3 x 2 x 2 x 1.8 s         22
//	latency 100k pkt/s, 1 pair                  2 x 1.8 s                  4
//	failover, mmsg and direct                   2 x 8.5 s                 17
//	loss 5%, mmsg and direct                    2 x 2.3 s                  5
//	slow link, 3 pairs + 1 direct pair          8 x 1.8 s                 15
//	order: mmsg, direct, mmsg with B +5 ms      3 x 4.3 s + relay         14
//	scaling: a GOMAXPROCS=1 tunnel, 2 searches  0.3 + 2 x (1+7) x 1.5 s   25
//	uring and std, each: tunnel, 1400 B search  2 x (12 + 5 + 9 + 2 + 4   76
//	     (no 64 B), 3 latencies, failover,         + 2 x 2.3 + 1)
//	     loss, slow (1 pair), order (2 x 2 s)
//	WireGuard: 2 namespaces' wireguard-go,      1 + 9 x 4.2 s             39
//	     iperf3 3 x (alone, both links,            + link changes
//	     eth-b down)
//	                                                            total   ~314
//
// The quick plan (`make bench-quick`, under 60 s) runs mmsg only, one pair,
// 1 s trials and a 5-trial search, a shorter failover, 1 s order trials,
// and skips the 64-byte search, the 100k latency, scaling and WireGuard:
// about 40 s.
type Plan struct {
	// Name is "full" or "quick".
	Name string `json:"name"`
	// Backends are engarde's backends to measure; the first is the
	// primary one, run with Pairs repetitions, the others once.
	Backends []string `json:"backends"`
	// Scenarios to run (allScenarios' names).
	Scenarios []string `json:"scenarios"`
	// Trial is the sending time of a search or latency trial.
	Trial time.Duration `json:"trial_ns"`
	// SearchTrial is the sending time of a throughput search trial.
	SearchTrial time.Duration `json:"search_trial_ns"`
	// Wait is how long the generator waits for late echoes.
	Wait time.Duration `json:"wait_ns"`
	// Pairs is the number of paired repetitions (engarde, then the
	// direct path) of the headline measurements: 1400-byte throughput,
	// latency at PairedRates, the slow link.
	Pairs int `json:"pairs"`
	// Sizes are the payload sizes of the throughput search; the first is
	// the headline one, the others run one pair.
	Sizes []int `json:"sizes"`
	// Search bounds the RFC 2544 search.
	Search searchConfig `json:"search"`
	// LatencyRates are the fixed rates of the latency scenario; those in
	// PairedRates run Pairs pairs, the others one.
	LatencyRates []int `json:"latency_rates"`
	PairedRates  []int `json:"paired_rates"`
	// Failover is the link-down schedule.
	Failover failoverPlan `json:"failover"`
	// LossPercent is the random loss on each link and direction, applied
	// for LossTrial at LossRate.
	LossPercent int           `json:"loss_percent"`
	LossRate    int           `json:"loss_rate"`
	LossTrial   time.Duration `json:"loss_trial_ns"`
	// SlowLimit is link A's rate in the slow-link scenario (tc syntax),
	// SlowLatency its tbf queue, SlowOfferedMbps the load offered.
	SlowLimit       string  `json:"slow_limit"`
	SlowLatency     string  `json:"slow_latency"`
	SlowOfferedMbps float64 `json:"slow_offered_mbps"`
	// OrderRate and OrderTrial are the load of the order scenario's
	// trials (OrderOtherTrial for backends other than the primary one),
	// OrderDelay what link B's relay adds in each direction in its second
	// condition.
	OrderRate       int           `json:"order_rate"`
	OrderTrial      time.Duration `json:"order_trial_ns"`
	OrderOtherTrial time.Duration `json:"order_other_trial_ns"`
	OrderDelay      time.Duration `json:"order_delay_ns"`
	// ScalingProcs is the GOMAXPROCS of both daemons in the scaling
	// scenario's tunnel, measured against the daemons' own choice (0:
	// every CPU, the Go runtime's default, which the daemons forgo on a
	// host of two CPUs or fewer).
	ScalingProcs int `json:"scaling_procs"`
	// OtherSizes says whether backends other than the primary one run
	// the throughput search at the sizes after the first.
	OtherSizes bool `json:"other_sizes"`
	// WGTime is the length of an iperf3 run, WGRounds the number of
	// (WireGuard alone, over engarde with both links, over engarde with
	// link B down) rounds.
	WGTime   time.Duration `json:"wg_time_ns"`
	WGRounds int           `json:"wg_rounds"`
	// Size is the payload of latency, failover, loss and slow-link
	// trials.
	Size int `json:"size"`
}

// failoverPlan is when links go down and up during the failover trial, as
// offsets from the start of sending.
type failoverPlan struct {
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration_ns"`
	ADown    time.Duration `json:"a_down_ns"`
	AUp      time.Duration `json:"a_up_ns"`
	BDown    time.Duration `json:"b_down_ns"`
	// Direct also runs the failover on the direct path, which has only
	// link A: the reference of what a plain path loses.
	Direct bool `json:"direct"`
}

// fullPlan is `make bench`.
func fullPlan() Plan {
	return Plan{
		Name:         "full",
		Backends:     defaultBackends,
		Scenarios:    allScenarios,
		Trial:        1500 * time.Millisecond,
		SearchTrial:  1200 * time.Millisecond,
		Wait:         300 * time.Millisecond,
		Pairs:        3,
		Sizes:        []int{1400, 64},
		Search:       searchConfig{MaxTrials: 7, Resolution: 0.02, MaxLoss: 0.1, MinOffered: 0.97, LoFactor: 0.25, HiFactor: 1.25},
		LatencyRates: []int{2000, 10000, 100000},
		PairedRates:  []int{2000, 10000},
		Failover: failoverPlan{Rate: 10000, Duration: 8 * time.Second,
			ADown: 2 * time.Second, AUp: 5 * time.Second, BDown: 6500 * time.Millisecond, Direct: true},
		LossPercent:     5,
		LossRate:        10000,
		LossTrial:       2 * time.Second,
		SlowLimit:       "100mbit",
		SlowLatency:     "50ms",
		SlowOfferedMbps: 300,
		OrderRate:       50000,
		OrderTrial:      4 * time.Second,
		OrderOtherTrial: 2 * time.Second,
		OrderDelay:      5 * time.Millisecond,
		ScalingProcs:    0,
		WGTime:          4 * time.Second,
		WGRounds:        3,
		Size:            1400,
	}
}

// quickPlan is `make bench-quick`.
func quickPlan() Plan {
	p := fullPlan()
	p.Name = "quick"
	p.Backends = defaultBackends[:1]
	p.Scenarios = []string{scThroughput, scLatency, scFailover, scLoss, scSlow, scOrder}
	p.Trial = time.Second
	p.SearchTrial = time.Second
	p.Wait = 250 * time.Millisecond
	p.Pairs = 1
	p.Sizes = []int{1400}
	p.Search.MaxTrials = 5
	p.LatencyRates = []int{2000, 10000}
	p.Failover = failoverPlan{Rate: 10000, Duration: 4500 * time.Millisecond,
		ADown: time.Second, AUp: 2500 * time.Millisecond, BDown: 3500 * time.Millisecond}
	p.LossTrial = time.Second
	p.OrderTrial = time.Second
	return p
}

// has reports whether the plan runs scenario s.
func (p *Plan) has(s string) bool { return slices.Contains(p.Scenarios, s) }

// primary is the backend measured with full repetitions.
func (p *Plan) primary() string { return p.Backends[0] }

// pairsFor is the number of repetitions for backend at a size or rate that
// is (or not) a headline one.
func (p *Plan) pairsFor(backend string, headline bool) int {
	if backend == p.primary() && headline {
		return p.Pairs
	}
	return 1
}

// parseList splits a comma-separated flag, checking each item against
// valid.
func parseList(s string, valid []string) ([]string, error) {
	var out []string
	for _, x := range strings.Split(s, ",") {
		x = strings.TrimSpace(x)
		if x == "" {
			continue
		}
		if valid != nil && !slices.Contains(valid, x) {
			return nil, fmt.Errorf("unknown %q (want some of %s)", x, strings.Join(valid, ","))
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}
