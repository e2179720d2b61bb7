package config

import (
	"strings"
	"testing"
	"time"
)

// TestProbeInterval checks probeInterval's values: none or null is the
// default, 0 turns probes off (-1), a value within the bounds is taken in
// milliseconds, and one outside them is an error naming the line and key.
func TestProbeInterval(t *testing.T) {
	const head = "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"192.0.2.1:59501\"\n"
	for _, tt := range []struct {
		line string
		want time.Duration
		err  string
	}{
		{"", 250 * time.Millisecond, ""},
		{"  probeInterval:\n", 250 * time.Millisecond, ""},
		{"  probeInterval: 0\n", -1, ""},
		{"  probeInterval: 50\n", 50 * time.Millisecond, ""},
		{"  probeInterval: 60000\n", time.Minute, ""},
		{"  probeInterval: 49\n", 0, "f.yml:4: client.probeInterval: 49 is out of range; must be between 50 and 60000 milliseconds, or 0 for no probes"},
		{"  probeInterval: -1\n", 0, "client.probeInterval: -1 is out of range"},
		{"  probeInterval: 60001\n", 0, "client.probeInterval: 60001 is out of range"},
		{"  probeInterval: 1s\n", 0, "f.yml:4: client.probeInterval: expected an integer number of milliseconds"},
	} {
		cfg, err := Parse([]byte(head+tt.line), "f.yml", RoleClient)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want one containing %q", tt.line, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.line, err)
		case tt.err == "" && cfg.Client.ProbeInterval != tt.want:
			t.Errorf("%q: probeInterval %v, want %v", tt.line, cfg.Client.ProbeInterval, tt.want)
		}
	}
}
