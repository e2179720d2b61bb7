package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/engarde-project/engarde/cmd/internal/app"
	"github.com/engarde-project/engarde/config"
)

var roles = []config.Role{config.RoleClient, config.RoleServer}

// generated runs the generator as make doc does, into a temporary
// directory, and returns it.
func generated(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := generate(dir, "v0.1.0-test", "2026-12-01", "../../../engarde.yml.sample"); err != nil {
		t.Fatal(err)
	}
	return dir
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestManPagesName checks that each man page names every command, flag,
// variable, signal and file of the help text, so that a new subcommand
// or option cannot be missing from it.
func TestManPagesName(t *testing.T) {
	dir := generated(t)
	for _, r := range roles {
		u := app.Help(r)
		t.Run(u.Prog, func(t *testing.T) {
			page := read(t, filepath.Join(dir, "man", u.Prog+".1"))
			want := []string{".TH " + strings.ToUpper(opt(u.Prog)) + " 1", "engarde v0.1.0-test", "2026-12-01", roff(u.Summary)}
			for _, c := range u.Commands {
				if c.Name != "" {
					want = append(want, `\fB`+opt(c.Name)+`\fR`)
				}
				for _, f := range c.Flags {
					want = append(want, `\-`+opt(f.Name))
				}
			}
			for _, f := range u.Flags {
				want = append(want, flagTag(f))
			}
			for _, list := range [][]app.Item{u.Environment, u.Signals, u.Files} {
				for _, it := range list {
					want = append(want, roff(it.Name))
				}
			}
			for _, w := range want {
				if !strings.Contains(page, w) {
					t.Errorf("%s.1 lacks %q", u.Prog, w)
				}
			}
		})
	}
}

// TestManPagesRender renders each page with groff's warnings on: a roff
// mistake (an unescaped dot at a line's start, a bad macro) is a warning.
func TestManPagesRender(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not found: the man pages were not rendered")
	}
	dir := generated(t)
	pages, _ := filepath.Glob(filepath.Join(dir, "man", "*"))
	if len(pages) != 3 {
		t.Fatalf("man pages: %v, want engarde-client.1, engarde-server.1, engarde.yml.5", pages)
	}
	for _, p := range pages {
		out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", p).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v: %s", filepath.Base(p), err, out)
		}
	}
}

func TestRoffEscapes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`a\b`, `a\eb`},
		{".TH not a macro", `\&.TH not a macro`},
		{"'quote", `\&'quote`},
		{"line\n.dot", "line\n\\&.dot"},
		{"plain - text", "plain - text"},
	} {
		if got := roff(tc.in); got != tc.want {
			t.Errorf("roff(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := sentence("print the version"); got != "Print the version." {
		t.Errorf("sentence = %q", got)
	}
}

// complete runs the generated bash completion for the words (the last is
// the one being completed) in dir and returns what it offers.
func complete(t *testing.T, script, dir string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = shellQuote(w)
	}
	prog := "engarde-" + strings.TrimPrefix(filepath.Base(script), "engarde-")
	cmd := exec.Command("bash", "-c", `. "$1"; COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); `+
		funcName(prog)+`; printf '%s\n' "${COMPREPLY[@]}"`, "-", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v: %s", err, out)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	return got
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	dir := generated(t)
	work := t.TempDir()
	for _, f := range []string{"a.yml", "b.yaml", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(work, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(work, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(dir, "bash", "engarde-client")
	server := filepath.Join(dir, "bash", "engarde-server")
	for _, tc := range []struct {
		script string
		words  []string
		want   string
	}{
		{client, []string{"engarde-client", ""}, "a.yml b.yaml conf list-interfaces status"},
		{client, []string{"engarde-client", "st"}, "status"},
		{client, []string{"engarde-client", "-"}, "--help --version -h -help -v -version"},
		{client, []string{"engarde-client", "status", "-"}, "-json -wide"},
		{client, []string{"engarde-client", "status", "-json", ""}, "a.yml b.yaml conf"},
		{client, []string{"engarde-client", "status", "a.yml", ""}, ""},
		{client, []string{"engarde-client", "list-interfaces", "a"}, "a.yml"},
		{client, []string{"engarde-client", "a.yml", ""}, ""},
		{server, []string{"engarde-server", ""}, "a.yml b.yaml conf status"},
		{server, []string{"engarde-server", "list"}, ""},
	} {
		got := strings.Join(complete(t, tc.script, work, tc.words...), " ")
		if got != tc.want {
			t.Errorf("%q: completion %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestZshCompletion parses the zsh functions with zsh -n where zsh is
// installed, and checks everywhere that they name every command and flag.
func TestZshCompletion(t *testing.T) {
	dir := generated(t)
	for _, r := range roles {
		u := app.Help(r)
		f := filepath.Join(dir, "zsh", "_"+u.Prog)
		s := read(t, f)
		if !strings.HasPrefix(s, "#compdef "+u.Prog+"\n") {
			t.Errorf("%s: no #compdef line", f)
		}
		for _, c := range u.Commands {
			if c.Name != "" && !strings.Contains(s, "\t\t"+c.Name+")") {
				t.Errorf("_%s lacks the command %s", u.Prog, c.Name)
			}
			for _, fl := range c.Flags {
				if !strings.Contains(s, "-"+fl.Name+"[") {
					t.Errorf("_%s lacks %s's flag -%s", u.Prog, c.Name, fl.Name)
				}
			}
		}
		if _, err := exec.LookPath("zsh"); err == nil {
			if out, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
				t.Errorf("zsh -n %s: %v: %s", f, err, out)
			}
		}
	}
}

// TestSampleKeys checks what engarde.yml(5) is made of: the keys of the
// sample with their comments, the keys shown only in comments, and no
// prose taken for a key.
func TestSampleKeys(t *testing.T) {
	data, err := os.ReadFile("../../../engarde.yml.sample")
	if err != nil {
		t.Fatal(err)
	}
	s := parseSample(data)
	if len(s.Intro) == 0 || s.Intro[0] != "engarde configuration." {
		t.Errorf("intro = %q", s.Intro)
	}
	keys := map[string]key{}
	for _, k := range s.Keys {
		keys[k.Path] = k
	}
	for _, p := range []string{"client", "client.listenAddr", "client.dstAddr", "client.webManager.listenAddr",
		"client.webManager.username", "client.engine.batchSize", "server", "server.clientTimeout", "server.log"} {
		k, ok := keys[p]
		if !ok {
			t.Errorf("no key %s", p)
			continue
		}
		if len(k.Doc) == 0 && p != "server.log" && p != "client.webManager.username" {
			t.Errorf("%s has no comment", p)
		}
	}
	if k := keys["client.webManager.username"]; !k.Commented || k.Value != `"engarde"` {
		t.Errorf("client.webManager.username = %+v, want a commented key with value \"engarde\"", k)
	}
	if k := keys["client.interfaceLabels"]; !slices.Contains(k.Example, `eth0: "Fiber"`) {
		t.Errorf("interfaceLabels' example = %q, want its entries", k.Example)
	}
	if k := keys["client.dstOverrides"]; len(k.Example) != 2 || !strings.HasPrefix(k.Example[0], "- ifName:") {
		t.Errorf("dstOverrides' example = %q, want its list item", k.Example)
	}
	for p := range keys {
		for _, bad := range []string{"strictly", "eth0", "ifName", "Default"} {
			if strings.HasSuffix(p, "."+bad) || p == bad {
				t.Errorf("%s is not a key", p)
			}
		}
	}
}
