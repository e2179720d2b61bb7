package config

import "testing"

// TestControlSocketPath: where the control socket is, from controlSocket
// (relative to the configuration file, or off) or systemd's runtime
// directory, else the directory RuntimeDirectory=engarde makes.
func TestControlSocketPath(t *testing.T) {
	tests := []struct {
		name, file, line, runtimeDir, want string
		role                               Role
	}{
		{"by hand", "/etc/engarde/engarde.yml", "", "", "/run/engarde/engarde.server.sock", RoleServer},
		{"by hand, client, file in the working directory", "engarde.yml", "", "", "/run/engarde/engarde.client.sock", RoleClient},
		{"systemd", "/etc/engarde/edge.yml", "", "/run/engarde", "/run/engarde/edge.server.sock", RoleServer},
		{"systemd client", "/etc/engarde/edge.yml", "", "/run/engarde", "/run/engarde/edge.client.sock", RoleClient},
		{"systemd, several dirs", "/etc/engarde/edge.yml", "", "/run/user/1000/engarde:/run/other", "/run/user/1000/engarde/edge.server.sock", RoleServer},
		{"absolute", "/etc/engarde/engarde.yml", "  controlSocket: /tmp/x/s.sock\n", "/run/engarde", "/tmp/x/s.sock", RoleServer},
		{"relative", "/etc/engarde/engarde.yml", "  controlSocket: run/s.sock\n", "", "/etc/engarde/run/s.sock", RoleClient},
		{"off", "/etc/engarde/engarde.yml", "  controlSocket: off\n", "/run/engarde", "", RoleServer},
		{"false", "/etc/engarde/engarde.yml", "  controlSocket: false\n", "", "", RoleClient},
		{"quoted none", "/etc/engarde/engarde.yml", "  controlSocket: \"none\"\n", "", "", RoleClient},
		{"empty", "/etc/engarde/engarde.yml", "  controlSocket: \"\"\n", "", "/run/engarde/engarde.client.sock", RoleClient},
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
			set := cfg.Server
			var socket string
			if tt.role == RoleClient {
				socket = cfg.Client.ControlSocket
			} else {
				socket = set.ControlSocket
			}
			if got := ControlSocketPath(socket, cfg.File, tt.runtimeDir, tt.role); got != tt.want {
				t.Errorf("control socket %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(clientHead+"  controlSocket: [a]\n"), "engarde.yml", RoleClient); err == nil {
		t.Error("a list as controlSocket was accepted")
	}
}
