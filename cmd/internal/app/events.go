package app

import (
	"github.com/engarde-project/engarde/engine"
	"github.com/rs/zerolog"
)

// engineEvents logs the engine's changes of state, one line each, with
// the structured fields link=, from=, to= and reason= that a log search or
// an alert rule matches on: at warning level for a failure (a link
// stalled or down, the tunnel degraded or down), information for a
// recovery. The tunnel's own changes have no link field.
func engineEvents(l zerolog.Logger) func(engine.Event, string) {
	return func(e engine.Event, msg string) {
		ev := l.Info()
		if e.Failure() {
			ev = l.Warn()
		}
		if e.Link != "" {
			ev = ev.Str("link", e.Link)
		}
		ev.Str("from", e.From).Str("to", e.To).Str("reason", e.Reason).Msg(msg)
	}
}
