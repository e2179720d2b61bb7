package engine

import (
	"sync/atomic"
	"time"
)

// Logger is how the engine reports what happens; cmd wires it to zerolog.
// Any of the funcs may be nil, which discards that level. The engine never
// logs per packet: it counts, and logs the first occurrence or a summary.
type Logger struct {
	Debugf func(format string, args ...any)
	Infof  func(format string, args ...any)
	Warnf  func(format string, args ...any)
	Errorf func(format string, args ...any)
	// Event, when set, receives every change of a link's or the tunnel's
	// state, with msg, a sentence for people; cmd logs e's fields as
	// structured ones (link=, from=, to=, reason=), at warning level when
	// e.Failure(). When nil, the sentence goes to Warnf or Infof.
	Event func(e Event, msg string)
}

var nopLogger = &Logger{}

func (l *Logger) orNop() *Logger {
	if l == nil {
		return nopLogger
	}
	return l
}

func (l *Logger) debugf(format string, args ...any) {
	if l.Debugf != nil {
		l.Debugf(format, args...)
	}
}

func (l *Logger) infof(format string, args ...any) {
	if l.Infof != nil {
		l.Infof(format, args...)
	}
}

func (l *Logger) warnf(format string, args ...any) {
	if l.Warnf != nil {
		l.Warnf(format, args...)
	}
}

// event reports a change of state.
func (l *Logger) event(e Event, msg string) {
	switch {
	case l.Event != nil:
		l.Event(e, msg)
	case e.Failure():
		l.warnf("%s", msg)
	default:
		l.infof("%s", msg)
	}
}

func (l *Logger) errorf(format string, args ...any) {
	if l.Errorf != nil {
		l.Errorf(format, args...)
	}
}

// rateLimit allows an event at most once per interval; safe for concurrent
// use.
type rateLimit struct {
	next atomic.Int64
}

const logInterval = int64(10 * time.Second)

func (r *rateLimit) allow() bool {
	now := nanotime()
	n := r.next.Load()
	return now >= n && r.next.CompareAndSwap(n, now+logInterval)
}
