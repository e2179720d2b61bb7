package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/engarde-project/engarde/engine"
)

// The files under contrib/ that name metrics.
const (
	contribDir     = "../../../contrib"
	rulesFile      = contribDir + "/prometheus/engarde.rules.yml"
	rulesTestFile  = contribDir + "/prometheus/engarde.rules.test.yml"
	dashboardFile  = contribDir + "/grafana/engarde.json"
	promtoolNeeded = "promtool not found (Debian: apt-get install --no-install-recommends prometheus); .ci/run installs it"
)

// served is what a scrape serves: per family, the label names and, per
// label, the values seen.
type served map[string]map[string]map[string]bool

// fullClient is a client with every family present: probes answered, a
// destination name, every link state.
func fullClient() ClientRole {
	f := newFakeClient()
	at := time.Now().Add(-time.Second)
	f.links[0].Probe = &engine.ProbeStats{Sent: 100, Answered: 95, Window: 40, Lost: 2, RTT50: 20 * time.Millisecond, RTT99: 80 * time.Millisecond, Jitter: 3 * time.Millisecond, LastAnswer: at}
	f.links[0].Since = at
	f.links[0].Resolution = &engine.NameStatus{Name: "vpn.example:59402", Resolved: at}
	f.links[1].Status = "stalled"
	f.links[2].Status = "down"
	return tunedClient{f, func(st *ClientStatus) {
		st.Duplicates = 5
		st.Tunnel = engine.TunnelInfo{State: engine.TunnelDegraded, Since: at, Reason: "wlan0 stalled", Probes: "on"}
	}}
}

// fullServer is a server with every family present.
func fullServer() ServerRole {
	f := newFakeServer()
	f.sessions[0].Addrs[1].Slot = 1
	f.sessions[0].Addrs[0].Status, f.sessions[0].Addrs[1].Status = "active", "stalled"
	return tunedServer{f, func(st *ServerStatus) {
		st.Duplicates = 5
		st.Tunnel = engine.TunnelInfo{State: engine.TunnelUp, Since: time.Now(), Probes: "on"}
	}}
}

// scrapeServed starts a control server for role on loopback, scrapes
// /metrics over HTTP from its metrics listener, and returns what it
// serves and the body.
func scrapeServed(t *testing.T, role Role) (served, string) {
	t.Helper()
	s := newTest(t, Options{MetricsListenAddr: "127.0.0.1:0", Version: "v9"}, role)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, body := fetchURL(t, "http://"+s.MetricsAddr().String()+"/metrics", "", "", "")
	if code != 200 {
		t.Fatalf("scrape: %d %.200s", code, body)
	}
	out := served{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			out.family(name)
			if typ == "summary" || typ == "histogram" {
				out.family(name + "_sum")
				out.family(name + "_count")
			}
			if typ == "histogram" {
				out.family(name + "_bucket")
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a sample: %q", line)
		}
		fam := out.family(m[1])
		for rest := m[3]; rest != ""; {
			lm := labelPair.FindStringSubmatch(rest)
			if lm == nil {
				t.Fatalf("bad labels %q", m[3])
			}
			if fam[lm[1]] == nil {
				fam[lm[1]] = map[string]bool{}
			}
			fam[lm[1]][lm[2]] = true
			rest = rest[len(lm[0]):]
		}
	}
	return out, body
}

func (s served) family(name string) map[string]map[string]bool {
	if s[name] == nil {
		s[name] = map[string]map[string]bool{}
	}
	return s[name]
}

var (
	// quoted is a PromQL string (label values, regular expressions).
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// selector is a metric name of ours with its optional label matchers.
	selector = regexp.MustCompile(`\b((?:engarde|process|go)_[a-zA-Z0-9_]*)\b(\{[^}]*\})?`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")`)
)

// checkExpr returns what is wrong with the metric names of a PromQL
// expression against what is served: a name not served, a label matcher
// on a label the family lacks, or an equality matcher on a value no
// series has.
func checkExpr(expr string, s served) []string {
	var bad []string
	// Find selectors in the expression with its strings blanked, so that
	// a label value or a legend never reads as a name; read the matchers
	// from the original text at the same place.
	blank := quoted.ReplaceAllStringFunc(expr, func(q string) string { return `"` + strings.Repeat("x", len(q)-2) + `"` })
	for _, loc := range selector.FindAllStringSubmatchIndex(blank, -1) {
		name := expr[loc[2]:loc[3]]
		fam, ok := s[name]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not served", name))
			continue
		}
		if loc[4] < 0 {
			continue
		}
		for _, m := range matcher.FindAllStringSubmatch(expr[loc[4]:loc[5]], -1) {
			label, op, value := m[1], m[2], strings.Trim(m[3], `"`)
			if label == "instance" || label == "job" {
				continue // Prometheus adds them
			}
			values, ok := fam[label]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s has no label %s", name, label))
			case op == "=" && !values[value]:
				bad = append(bad, fmt.Sprintf("%s{%s=%q} matches no series (values served: %s)", name, label, value, strings.Join(keys(values), ", ")))
			}
		}
	}
	return bad
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// contribExprs returns every PromQL expression of the rules and the
// dashboard, by where it is.
func contribExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[fmt.Sprintf("%s: %s %s%s", rulesFile, g.Name, r.Alert, r.Record)] = r.Expr
		}
	}

	data, err = os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	// Every "expr" (panel targets), and the queries of the variables.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				path += " / " + title
			} else if name, ok := v["name"].(string); ok {
				path += " / $" + name
			}
			for k, x := range v {
				switch s, isString := x.(string); {
				case isString && (k == "expr" || k == "definition" || k == "query" && strings.Contains(path, "$")):
					out[fmt.Sprintf("%s:%s %s", dashboardFile, path, k)] = s
				default:
					walk(path, x)
				}
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	walk("", dash)
	return out
}

// TestContribNames: every metric the alert rules and the dashboard name,
// with its label matchers, is served by a real control server (over HTTP)
// of a client and of a server with every family present.
func TestContribNames(t *testing.T) {
	all := served{}
	for _, r := range []Role{{Client: fullClient()}, {Server: fullServer()}} {
		s, _ := scrapeServed(t, r)
		for name, labels := range s {
			fam := all.family(name)
			for l, vs := range labels {
				if fam[l] == nil {
					fam[l] = map[string]bool{}
				}
				for v := range vs {
					fam[l][v] = true
				}
			}
		}
	}
	exprs := contribExprs(t)
	names := map[string]bool{}
	for where, e := range exprs {
		for _, b := range checkExpr(e, all) {
			t.Errorf("%s: %s\n\t%s", where, b, e)
		}
		for _, m := range selector.FindAllStringSubmatch(e, -1) {
			names[m[1]] = true
		}
	}
	// The files are read: each has expressions, and between them they
	// name the families an operator looks at first.
	var rules, panels int
	for where := range exprs {
		if strings.HasPrefix(where, rulesFile) {
			rules++
		} else {
			panels++
		}
	}
	if rules < 10 || panels < 15 {
		t.Errorf("%d rule and %d dashboard expressions read; the files changed shape?", rules, panels)
	}
	for _, n := range []string{"engarde_tunnel_state", "engarde_link_state", "engarde_link_probe_rtt_seconds", "engarde_link_probe_loss_ratio",
		"engarde_link_drops_total", "engarde_start_time_seconds", "engarde_duplicates_total", "engarde_client_address_state"} {
		if !names[n] {
			t.Errorf("contrib/ never uses %s", n)
		}
	}
}

// TestCheckExpr: the name check fails where it must (a misspelt name, a
// label the family lacks, a value never served) and not on label values,
// label names in by () or strings.
func TestCheckExpr(t *testing.T) {
	s := served{
		"engarde_link_state":         {"interface": {"eth0": true}, "state": {"active": true, "down": true}},
		"engarde_link_drops_total":   {"interface": {"eth0": true}, "reason": {"full": true}},
		"go_gc_duration_seconds":     {"quantile": {"0.5": true}},
		"go_gc_duration_seconds_sum": {},
	}
	for _, tt := range []struct {
		expr string
		bad  int
	}{
		{`engarde_link_state{state="down"} == 1`, 0},
		{`sum by (interface, reason) (rate(engarde_link_drops_total{instance=~"$instance",reason="full"}[5m]))`, 0},
		{`engarde_link_state{state="down", interface=~"engarde_not_a_metric"}`, 0},
		{`rate(go_gc_duration_seconds_sum[5m])`, 0},
		{`label_values(engarde_link_state, interface)`, 0},
		{`rate(engarde_link_drop_total[5m])`, 1},                           // misspelt
		{`engarde_link_state{status="down"}`, 1},                           // the old label
		{`engarde_link_state{state="idle"}`, 1},                            // the old state
		{`engarde_link_drops_total{reason="duplicate"} > 0`, 1},            // duplicates left drops
		{`engarde_link_late_seconds{quantile="0.99"} or go_goroutines`, 2}, // neither served here
	} {
		if got := checkExpr(tt.expr, s); len(got) != tt.bad {
			t.Errorf("%s: %d problems %q, want %d", tt.expr, len(got), got, tt.bad)
		}
	}
}

// promtool returns the path of promtool, or skips.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip(promtoolNeeded)
	}
	return p
}

// TestPromtoolMetrics: promtool check metrics (format and naming lint)
// passes on what each role serves.
func TestPromtoolMetrics(t *testing.T) {
	p := promtool(t)
	for name, r := range map[string]Role{"client": {Client: fullClient()}, "server": {Server: fullServer()}} {
		_, body := scrapeServed(t, r)
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("%s: promtool check metrics: %v\n%s", name, err, out)
		}
	}
}

// TestPromtoolRules: promtool checks the rules and runs their unit tests.
func TestPromtoolRules(t *testing.T) {
	p := promtool(t)
	for _, args := range [][]string{{"check", "rules", filepath.Base(rulesFile)}, {"test", "rules", filepath.Base(rulesTestFile)}} {
		cmd := exec.Command(p, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
