package app

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/engarde-project/engarde/engine"
	"github.com/rs/zerolog"
)

// TestEngineEventsFields: a change of state is one line with the fields
// link, from, to and reason; a failure is a warning, a recovery
// information, and the tunnel's own lines carry no link.
func TestEngineEventsFields(t *testing.T) {
	var buf bytes.Buffer
	log := EngineLogger(zerolog.New(&buf).Level(zerolog.DebugLevel))
	log.Event(engine.Event{Link: "eth0", From: "active", To: "down", Reason: "no carrier"}, "link eth0 (Cable north) down: no carrier")
	log.Event(engine.Event{Link: "eth0", From: "down", To: "active", Reason: "192.0.2.1 -> 198.51.100.1:59402"}, "link eth0 (Cable north) active: 192.0.2.1 -> 198.51.100.1:59402")
	log.Event(engine.Event{From: "up", To: "down", Reason: "server silent: nothing came back"}, "tunnel down: server silent: nothing came back")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []map[string]string{
		{"level": "warn", "link": "eth0", "from": "active", "to": "down", "reason": "no carrier", "message": "link eth0 (Cable north) down: no carrier"},
		{"level": "info", "link": "eth0", "from": "down", "to": "active", "reason": "192.0.2.1 -> 198.51.100.1:59402"},
		{"level": "warn", "link": "", "from": "up", "to": "down", "reason": "server silent: nothing came back"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		for k, v := range want[i] {
			g, _ := got[k].(string)
			if g != v {
				t.Errorf("line %d: %s = %q, want %q (%s)", i, k, g, v, line)
			}
		}
	}
}
