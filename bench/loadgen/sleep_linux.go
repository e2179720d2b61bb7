package loadgen

import (
	"syscall"
	"time"
)

// sleepPrecise blocks the calling thread for about d with nanosleep(2),
// which overshoots by the thread's timer slack (50 µs by default) where Go's
// timers round short waits up to the netpoller's millisecond. Pacing at a
// few thousand packets per second needs the finer grain. An interrupted
// sleep returns early; the caller recomputes what is due.
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil)
}
