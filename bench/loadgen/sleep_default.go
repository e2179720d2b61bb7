//go:build !linux

package loadgen

import "time"

// sleepPrecise sleeps for about d; elsewhere than Linux it is time.Sleep.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
