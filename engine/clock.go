package engine

import "time"

// epoch anchors the engine's monotonic clock.
var epoch = time.Now()

// nanotime returns monotonic nanoseconds since the engine started; it reads
// the vDSO clock and does not allocate.
func nanotime() int64 { return int64(time.Since(epoch)) }

// wallFromMono converts a nanotime reading to unix nanoseconds.
func wallFromMono(t int64) int64 { return epoch.UnixNano() + t }
