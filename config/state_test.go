package config

import "testing"

// TestStateFilePath: where the server keeps its sessions, from stateFile
// (relative to the configuration file) or systemd's state directory.
func TestStateFilePath(t *testing.T) {
	tests := []struct {
		name, file, line, stateDir, want string
		role                             Role
	}{
		{"none", "/etc/engarde/engarde.yml", "", "", "", RoleServer},
		{"systemd", "/etc/engarde/edge.yml", "", "/var/lib/engarde", "/var/lib/engarde/edge.server.state", RoleServer},
		{"systemd client", "/etc/engarde/edge.yml", "", "/var/lib/engarde", "/var/lib/engarde/edge.client.state", RoleClient},
		{"systemd, several dirs", "/etc/engarde/edge.yml", "", "/var/lib/engarde:/var/lib/other", "/var/lib/engarde/edge.server.state", RoleServer},
		{"absolute", "/etc/engarde/engarde.yml", "  stateFile: /run/engarde/s\n", "/var/lib/engarde", "/run/engarde/s", RoleServer},
		{"relative", "/etc/engarde/engarde.yml", "  stateFile: state/s\n", "", "/etc/engarde/state/s", RoleServer},
		{"relative client", "/etc/engarde/engarde.yml", "  stateFile: c\n", "", "/etc/engarde/c", RoleClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := serverHead
			if tt.role == RoleClient {
				head = clientHead
			}
			cfg, err := Parse([]byte(head+tt.line), tt.file, tt.role)
			if err != nil {
				t.Fatal(err)
			}
			var set string
			if tt.role == RoleClient {
				set = cfg.Client.StateFile
			} else {
				set = cfg.Server.StateFile
			}
			if got := StateFilePath(set, cfg.File, tt.stateDir, tt.role); got != tt.want {
				t.Errorf("state file %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(serverHead+"  stateFile: [a]\n"), "engarde.yml", RoleServer); err == nil {
		t.Error("a list as stateFile was accepted")
	}
}
