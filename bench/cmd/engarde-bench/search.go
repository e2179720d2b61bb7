package main

import "math"

// searchConfig bounds an RFC 2544 throughput search (RFC 2544, section
// 26.1: the highest rate at which the device forwards every frame; we
// accept up to MaxLoss percent, as the generator's own sockets can drop a
// packet or two on a loaded 2-core machine).
type searchConfig struct {
	// MaxTrials caps the number of trials.
	MaxTrials int `json:"max_trials"`
	// Resolution stops the search once the bracket is narrower than this
	// fraction of its upper end.
	Resolution float64 `json:"resolution"`
	// MaxLoss is the loss, in percent, at or below which a trial passes.
	MaxLoss float64 `json:"max_loss_percent"`
	// MinOffered is the share of the requested rate the generator must
	// have sent for a trial to pass: a generator short of CPU offers less
	// than asked, and a path that carries what it got has not been tested
	// at the rate.
	MinOffered float64 `json:"min_offered"`
	// LoFactor and HiFactor place the initial bracket around the path's
	// flat-out delivered rate: the low end is assumed to pass (and never
	// tried), the high end is tried first.
	LoFactor float64 `json:"lo_factor"`
	HiFactor float64 `json:"hi_factor"`
}

// bracket returns the initial bracket for a path that delivered flat
// packets per second flat out.
func (c searchConfig) bracket(flat float64) (lo, hi float64) {
	return c.LoFactor * flat, c.HiFactor * flat
}

// passes reports whether a trial meets the loss criterion at the rate it
// asked for.
func (c searchConfig) passes(t *Trial) bool {
	return t.ok() && t.Report.Received > 0 && t.Report.LossPercent <= c.MaxLoss && !c.generatorLimited(t)
}

// generatorLimited reports whether the generator offered less than
// MinOffered of the trial's rate.
func (c searchConfig) generatorLimited(t *Trial) bool {
	return t.ok() && t.Rate > 0 && t.Report.OfferedPPS < c.MinOffered*float64(t.Rate)
}

// expand is how much search raises the bracket's high end while trials
// there pass.
const expand = 1.5

// search finds the highest rate that passes, calling try for each trial at
// an integer rate. It first tries hi: while that passes, the bracket moves
// up (lo = hi, hi = 1.5 hi), so that a poor first guess does not cap the
// result; then it bisects [lo, hi]. It stops after MaxTrials trials, when
// the bracket is within Resolution, or when try reports that the run is
// being stopped (stop true). It returns the trials in order and the index
// of the passing trial with the highest rate, -1 when none passed.
func (c searchConfig) search(lo, hi float64, try func(rate int) (t Trial, stop bool)) (trials []Trial, best int) {
	best = -1
	probing := true // hi is untried
	for len(trials) < c.MaxTrials && hi > 0 {
		rate := int(math.Round(hi))
		if !probing {
			if (hi-lo)/hi <= c.Resolution {
				break
			}
			rate = int(math.Round((lo + hi) / 2))
			if rate <= int(lo) || rate >= int(math.Ceil(hi)) {
				break // the bracket holds no other integer rate
			}
		}
		t, stop := try(rate)
		if stop {
			break
		}
		trials = append(trials, t)
		switch pass := c.passes(&t); {
		case pass && probing:
			lo, hi = float64(rate), expand*float64(rate)
			best = len(trials) - 1
		case pass:
			lo = float64(rate)
			best = len(trials) - 1
		default:
			hi = float64(rate)
			probing = false
		}
	}
	return trials, best
}
