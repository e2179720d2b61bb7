package main

import (
	"testing"

	"github.com/engarde-project/engarde/cmd/internal/app"
	"github.com/engarde-project/engarde/config"
)

// TestSubcommandsInHelp: every subcommand the client runs is in the help
// (and so in the man page and completions), and every command the help
// lists runs: status in app, the others here.
func TestSubcommandsInHelp(t *testing.T) {
	u := app.Help(config.RoleClient)
	for name := range subcommands {
		if u.Command(name) == nil {
			t.Errorf("subcommand %q is not in app.Help", name)
		}
	}
	for _, c := range u.Commands {
		if c.Name != "" && c.Name != "status" && subcommands[c.Name] == nil {
			t.Errorf("app.Help lists %q, which the client does not run", c.Name)
		}
	}
}
