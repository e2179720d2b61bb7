package config

import (
	"os"
	"strings"
	"testing"
)

// TestMetricsListenAddr: webManager.metricsListenAddr is an address of its
// own, alone or beside listenAddr; one that would take listenAddr's socket
// is refused at its own line and key.
func TestMetricsListenAddr(t *testing.T) {
	web := func(lines ...string) string {
		return serverHead + "  webManager:\n    " + strings.Join(lines, "\n    ") + "\n"
	}
	for _, tt := range []struct {
		name, src, want string
	}{
		{"beside", web(`listenAddr: "127.0.0.1:9001"`, `metricsListenAddr: "0.0.0.0:9002"`), "0.0.0.0:9002"},
		{"alone", web(`metricsListenAddr: "[::1]:9002"`), "[::1]:9002"},
		{"same port, other hosts", web(`listenAddr: "127.0.0.1:9001"`, `metricsListenAddr: "192.0.2.1:9001"`), "192.0.2.1:9001"},
		{"empty", web(`listenAddr: "127.0.0.1:9001"`, `metricsListenAddr: ""`), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.src), "engarde.yml", RoleServer)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Server.WebManager.MetricsListenAddr; got != tt.want {
				t.Errorf("metricsListenAddr %q, want %q", got, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"same address", web(`listenAddr: "127.0.0.1:9001"`, `metricsListenAddr: "127.0.0.1:9001"`), 6, `takes the port of listenAddr ("127.0.0.1:9001")`},
		{"wildcard", web(`listenAddr: ":9001"`, `metricsListenAddr: "127.0.0.1:9001"`), 6, "takes the port of listenAddr"},
		{"wildcard after", web(`metricsListenAddr: "0.0.0.0:9001"`, `listenAddr: "[::1]:9001"`), 5, "takes the port of listenAddr"},
		{"no port", web(`metricsListenAddr: "127.0.0.1"`), 5, ""},
		{"not a string", web(`metricsListenAddr: [a]`), 5, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "engarde.yml", RoleServer)
			if err == nil {
				t.Fatal("accepted")
			}
			errs := configErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("%d errors, want 1: %v", len(errs), err)
			}
			e := errs[0]
			if e.File != "engarde.yml" || e.Line != tt.line || e.Key != "server.webManager.metricsListenAddr" || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %#v, want line %d key server.webManager.metricsListenAddr msg containing %q", *e, tt.line, tt.msg)
			}
		})
	}
}

// readme is the README, whose key table documents every key.
const readme = "../README.md"

// TestReadmeWebManagerKeys: the README's key table names every webManager
// key in the webManager row, so that a key added to the decoder cannot
// go undocumented (the sample is checked by TestSampleCoversEveryKey).
func TestReadmeWebManagerKeys(t *testing.T) {
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "| `webManager` |") {
			row = line
		}
	}
	if row == "" {
		t.Fatalf("%s: no webManager row in the key table", readme)
	}
	for _, k := range webManagerKeys {
		if !strings.Contains(row, "`"+k+"`") {
			t.Errorf("%s: the webManager row does not name `%s`", readme, k)
		}
	}
}
