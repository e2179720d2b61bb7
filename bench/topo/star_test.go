package topo

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseWGPairs(t *testing.T) {
	out := "kXn0Vb3dZ4nLk1oTqW8Z0y2Y3b5mV9G6Q0pXx8cGtWU=\t127.0.0.1:40001\nAbCdVb3dZ4nLk1oTqW8Z0y2Y3b5mV9G6Q0pXx8cGtWU=\t(none)\n\n"
	got := ParseWGPairs(out)
	if len(got) != 2 || got["kXn0Vb3dZ4nLk1oTqW8Z0y2Y3b5mV9G6Q0pXx8cGtWU="] != "127.0.0.1:40001" || got["AbCdVb3dZ4nLk1oTqW8Z0y2Y3b5mV9G6Q0pXx8cGtWU="] != "(none)" {
		t.Errorf("ParseWGPairs = %v", got)
	}
}

// TestStarConfigs checks that each site's engarde-client sends on each of
// its links to the server's end of that link.
func TestStarConfigs(t *testing.T) {
	site := &Site{NS: "x", Index: 2, Links: []*Veth{
		{Name: "eth-a", ServerAddr: netip.MustParseAddr("198.18.21.1")},
		{Name: "eth-b", ServerAddr: netip.MustParseAddr("198.18.22.1")},
	}}
	y := WGStarConfig{LogLevel: "info"}.clientYAML(site, "egw1-1w2")
	for _, want := range []string{`dstAddr: "198.18.21.1:59402"`, "- ifName: eth-b\n      dstAddr: \"198.18.22.1:59402\"", `listenAddr: "127.0.0.1:59401"`, "excludedInterfaces:\n    - \"egw1-1w2\""} {
		if !strings.Contains(y, want) {
			t.Errorf("client configuration lacks %q:\n%s", want, y)
		}
	}
	if y := (WGStarConfig{LogLevel: "info"}).serverYAML(); !strings.Contains(y, `dstAddr: "127.0.0.1:51820"`) || !strings.Contains(y, `listenAddr: "0.0.0.0:59402"`) {
		t.Errorf("server configuration:\n%s", y)
	}
}
