package config

import "testing"

// TestStateFilePath: where the server keeps its sessions, from stateFile
// (relative to the configuration file) or systemd's state directory.
func TestStateFilePath(t *testing.T) {
	tests := []struct {
		name, file, line, stateDir, want string
	}{
		{"none", "/etc/engarde/engarde.yml", "", "", ""},
		{"systemd", "/etc/engarde/edge.yml", "", "/var/lib/engarde", "/var/lib/engarde/edge.sessions"},
		{"systemd, several dirs", "/etc/engarde/edge.yml", "", "/var/lib/engarde:/var/lib/other", "/var/lib/engarde/edge.sessions"},
		{"absolute", "/etc/engarde/engarde.yml", "  stateFile: /run/engarde/s\n", "/var/lib/engarde", "/run/engarde/s"},
		{"relative", "/etc/engarde/engarde.yml", "  stateFile: state/s\n", "", "/etc/engarde/state/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(serverHead+tt.line), tt.file, RoleServer)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Server.StateFilePath(cfg.File, tt.stateDir); got != tt.want {
				t.Errorf("state file %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(serverHead+"  stateFile: [a]\n"), "engarde.yml", RoleServer); err == nil {
		t.Error("a list as stateFile was accepted")
	}
}
