package app

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/engarde-project/engarde/config"
)

// TestDispatch runs command lines through both programs' dispatch and
// checks where they go, what they print on which stream, and the exit
// status.
func TestDispatch(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "stauts") // a file named like a typo
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		role       config.Role
		args       []string
		code       int
		ran        string // the path run got, if it ran
		sub        string // the subcommand that ran, if any
		stdout     string // a substring of stdout ("" : empty)
		stderr     string // a substring of stderr ("" : empty)
		wantNoOut  bool
		wantNoErrs bool
	}{
		{name: "no arguments", args: nil, ran: DefaultConfig, wantNoOut: true, wantNoErrs: true},
		{name: "a config file", args: []string{"/etc/engarde/a.yml"}, ran: "/etc/engarde/a.yml", wantNoOut: true, wantNoErrs: true},
		{name: "a missing file with an extension is still a file", args: []string{"stauts.yml"}, ran: "stauts.yml", wantNoOut: true, wantNoErrs: true},
		{name: "an existing file named like a command typo", args: []string{existing}, ran: existing, wantNoOut: true, wantNoErrs: true},
		{name: "typo of status", args: []string{"stauts"}, code: 2, stderr: `engarde-client: unknown command "stauts"; did you mean "status"?`, wantNoOut: true},
		{name: "typo with arguments", args: []string{"stats", "-json"}, code: 2, stderr: `unknown command "stats"; did you mean "status"?`, wantNoOut: true},
		{name: "prefix of list-interfaces", args: []string{"list"}, code: 2, stderr: `did you mean "list-interfaces"?`, wantNoOut: true},
		{name: "the server has no list-interfaces", role: config.RoleServer, args: []string{"list-interfaces"}, code: 2, stderr: `engarde-server: unknown command "list-interfaces"`, wantNoOut: true},
		{name: "nothing near", args: []string{"frobnicate"}, code: 2, stderr: "unknown command \"frobnicate\"\n", wantNoOut: true},
		{name: "unknown flag", args: []string{"-verison"}, code: 2, stderr: `unknown flag "-verison"; did you mean "-version"?`, wantNoOut: true},
		{name: "-h on stdout", args: []string{"-h"}, stdout: "usage:\n  engarde-client [config.yml]", wantNoErrs: true},
		{name: "--help", args: []string{"--help"}, stdout: "engarde-client status [-json] [-wide] [config.yml]", wantNoErrs: true},
		{name: "server -h", role: config.RoleServer, args: []string{"help"}, stdout: "engarde-server status", wantNoErrs: true},
		{name: "-v", args: []string{"-v"}, stdout: "engarde-client " + Version + " (commit ", wantNoErrs: true},
		{name: "subcommand", args: []string{"list-interfaces", "x.yml"}, sub: "list-interfaces x.yml", wantNoOut: true, wantNoErrs: true},
		{name: "status -h", args: []string{"status", "-h"}, stdout: "usage: engarde-client status [-json] [-wide] [config.yml]", wantNoErrs: true},
		{name: "status with a bad flag", args: []string{"status", "-jsn"}, code: 2, stderr: "-jsn", wantNoOut: true},
		{name: "two files", args: []string{"a.yml", "b.yml"}, code: 2, stderr: "too many arguments", wantNoOut: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			ran, sub := "", ""
			run := func(p string) error { ran = p; return nil }
			subs := map[string]func([]string) error{}
			if tc.role == config.RoleClient {
				subs[cmdListInterfaces] = func(a []string) error { sub = strings.Join(append([]string{cmdListInterfaces}, a...), " "); return nil }
			}
			code := dispatch(Help(tc.role), tc.role, tc.args, &out, &errs, run, subs)
			if code != tc.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tc.code, errs.String())
			}
			if ran != tc.ran {
				t.Errorf("ran %q, want %q", ran, tc.ran)
			}
			if sub != tc.sub {
				t.Errorf("subcommand %q, want %q", sub, tc.sub)
			}
			if tc.wantNoOut && out.Len() > 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
			if tc.wantNoErrs && errs.Len() > 0 {
				t.Errorf("stderr %q, want nothing", errs.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q, want it to contain %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errs.String(), tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", errs.String(), tc.stderr)
			}
		})
	}
}

// TestDispatchErrors: a failing run or subcommand exits 1 with its error
// on stderr, not with the usage.
func TestDispatchErrors(t *testing.T) {
	var out, errs bytes.Buffer
	run := func(string) error { return errors.New("engarde.yml: no such file") }
	if code := dispatch(Help(config.RoleClient), config.RoleClient, nil, &out, &errs, run, nil); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if got := errs.String(); got != "engarde-client: engarde.yml: no such file\n" {
		t.Errorf("stderr %q", got)
	}
}

// TestHelpFits: -h is wrapped at 80 columns, and names every command and
// flag of the structure the man pages are made of.
func TestHelpFits(t *testing.T) {
	for _, role := range []config.Role{config.RoleClient, config.RoleServer} {
		u := Help(role)
		var b bytes.Buffer
		if err := u.Write(&b); err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(b.String(), "\n") {
			if len(l) > helpWidth {
				t.Errorf("%s -h line %d is %d columns: %q", u.Prog, i+1, len(l), l)
			}
		}
		for _, c := range u.Commands {
			if !strings.Contains(b.String(), u.Prog+" "+c.Line()+"\n") {
				t.Errorf("%s -h does not show %q", u.Prog, c.Line())
			}
			for _, f := range c.Flags {
				if !strings.Contains(b.String(), "-"+f.Name+": ") {
					t.Errorf("%s -h does not explain %s -%s", u.Prog, c.Name, f.Name)
				}
			}
		}
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"status", "list-interfaces", "help", "version"}
	for _, tc := range []struct{ arg, want string }{
		{"stauts", "status"},
		{"statsu", "status"},
		{"sattus", "status"},
		{"staus", "status"},
		{"list", "list-interfaces"},
		{"list-interface", "list-interfaces"},
		{"hlep", "help"},
		{"verison", "version"},
		{"x", ""},
		{"st", ""}, // two characters are two edits from many things
		{"frobnicate", ""},
	} {
		got := suggest(tc.arg, names)
		want := ""
		if tc.want != "" {
			want = `; did you mean "` + tc.want + `"?`
		}
		if got != want {
			t.Errorf("suggest(%q) = %q, want %q", tc.arg, got, want)
		}
	}
}
