package main

import (
	"testing"

	"github.com/engarde-project/engarde/bench/loadgen"
)

// fakeTrial is a trial of a path that loses nothing up to capacity and
// loses the excess above it.
func fakeTrial(rate, capacity int) Trial {
	r := &loadgen.Report{Sent: uint64(rate), Received: uint64(min(rate, capacity)), OfferedPPS: float64(rate)}
	r.Lost = r.Sent - r.Received
	r.LossPercent = 100 * float64(r.Lost) / float64(r.Sent)
	return Trial{Rate: rate, Report: r}
}

func TestSearch(t *testing.T) {
	c := searchConfig{MaxTrials: 7, Resolution: 0.02, MaxLoss: 0.1, MinOffered: 0.97, LoFactor: 0.25, HiFactor: 1.25}
	for _, tc := range []struct {
		name       string
		flat       float64
		capacity   int
		maxTrials  int
		wantTrials int
		// the found rate must be within [lo, capacity]
		lo   int
		none bool
	}{
		{"capacity mid-bracket", 100000, 80000, 7, 7, 78000, false},
		{"capacity at flat out", 100000, 100000, 7, 7, 98000, false},
		// hi passes: the bracket moves up to [125k, 187.5k], then
		// [187.5k, 281k], and bisection finds 200k.
		{"above the bracket", 100000, 200000, 7, 7, 190000, false},
		{"far above: the trials run out", 100000, 10000000, 7, 7, 1400000, false},
		{"below the bracket", 100000, 1000, 7, 7, 0, true},
		{"fewer trials", 100000, 80000, 4, 4, 62000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			c.MaxTrials = tc.maxTrials
			lo, hi := c.bracket(tc.flat)
			trials, best := c.search(lo, hi, func(rate int) (Trial, bool) { return fakeTrial(rate, tc.capacity), false })
			if len(trials) != tc.wantTrials {
				t.Errorf("%d trials, want %d", len(trials), tc.wantTrials)
			}
			if trials[0].Rate != int(hi) {
				t.Errorf("first trial at %d, want the bracket's top %v", trials[0].Rate, hi)
			}
			if tc.none {
				if best != -1 {
					t.Errorf("found %d, want none", trials[best].Rate)
				}
				return
			}
			if best < 0 {
				t.Fatal("found nothing")
			}
			if got := trials[best].Rate; got < tc.lo || got > tc.capacity {
				t.Errorf("found %d, want within [%d, %d]", got, tc.lo, tc.capacity)
			}
			for i, tr := range trials {
				if tr.Rate > trials[best].Rate && c.passes(&trials[i]) {
					t.Errorf("trial %d at %d passed above the result %d", i, tr.Rate, trials[best].Rate)
				}
			}
		})
	}
}

func TestSearchResolution(t *testing.T) {
	c := searchConfig{MaxTrials: 20, Resolution: 0.02, MaxLoss: 0.1, MinOffered: 0.97}
	trials, best := c.search(50000, 150000, func(rate int) (Trial, bool) { return fakeTrial(rate, 90000), false })
	// One trial at 150000, then 100000 wide to 2% of about 90000:
	// 100000 / 2^n <= 1800 at n = 6.
	if len(trials) != 7 {
		t.Errorf("%d trials, want 7", len(trials))
	}
	if got := trials[best].Rate; got < 88000 || got > 90000 {
		t.Errorf("found %d, want within 2%% below 90000", got)
	}
}

func TestSearchCriterion(t *testing.T) {
	c := searchConfig{MaxLoss: 0.1, MinOffered: 0.97}
	for _, tc := range []struct {
		name string
		t    Trial
		want bool
	}{
		{"no loss", Trial{Rate: 1000, Report: &loadgen.Report{Sent: 1000, Received: 1000, OfferedPPS: 1000}}, true},
		{"0.1% is the limit", Trial{Rate: 1000, Report: &loadgen.Report{Sent: 1000, Received: 999, Lost: 1, LossPercent: 0.1, OfferedPPS: 1000}}, true},
		{"above", Trial{Rate: 1000, Report: &loadgen.Report{Sent: 1000, Received: 998, Lost: 2, LossPercent: 0.2, OfferedPPS: 1000}}, false},
		{"nothing back", Trial{Rate: 1000, Report: &loadgen.Report{OfferedPPS: 1000}}, false},
		{"failed trial", Trial{Rate: 1000, Error: "generator: exit status 1"}, false},
		// The generator sent 900 pkt/s of the 1000 asked: the path was
		// not tried at 1000.
		{"generator short of the rate", Trial{Rate: 1000, Report: &loadgen.Report{Sent: 900, Received: 900, OfferedPPS: 900}}, false},
		{"flat out has no rate to miss", Trial{Report: &loadgen.Report{Sent: 900, Received: 900, OfferedPPS: 900}}, true},
	} {
		if got := c.passes(&tc.t); got != tc.want {
			t.Errorf("%s: passes = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A generator that cannot send more than 50000 pkt/s must not make the
// search report a rate it never offered.
func TestSearchGeneratorLimit(t *testing.T) {
	c := searchConfig{MaxTrials: 7, Resolution: 0.02, MaxLoss: 0.1, MinOffered: 0.97}
	trials, best := c.search(25000, 125000, func(rate int) (Trial, bool) {
		tr := fakeTrial(min(rate, 50000), 1000000)
		tr.Rate = rate
		return tr, false
	})
	if best < 0 {
		t.Fatal("found nothing")
	}
	if got := trials[best].Rate; got > 50000 || got < 48000 {
		t.Errorf("found %d, want just under the generator's 50000", got)
	}
}

func TestSearchStops(t *testing.T) {
	c := searchConfig{MaxTrials: 6, Resolution: 0.02, MaxLoss: 0.1, MinOffered: 0.97}
	n := 0
	trials, best := c.search(0, 400, func(rate int) (Trial, bool) {
		n++
		return fakeTrial(rate, 500), n == 2
	})
	if len(trials) != 1 || best != 0 {
		t.Errorf("%d trials, best %d; want the one before the stop", len(trials), best)
	}
}
