package control

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/control/controltest"
	"github.com/engarde-project/engarde/engine"
)

// contribDir is contrib/, from this package.
const contribDir = "../../../contrib"

const promtoolNeeded = "promtool not found (Debian: apt-get install --no-install-recommends prometheus); .ci/run installs it"

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
func scrapeServed(t *testing.T, role Role) (controltest.Served, string) {
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
	out := controltest.Served{}
	if err := out.Add(body); err != nil {
		t.Fatal(err)
	}
	return out, body
}

// TestContribNames: every metric the alert rules and the dashboard name,
// with its label matchers, is served by a real control server (over HTTP)
// of a client and of a server with every family present.
func TestContribNames(t *testing.T) {
	all := controltest.Served{}
	for _, r := range []Role{{Client: fullClient()}, {Server: fullServer()}} {
		_, body := scrapeServed(t, r)
		if err := all.Add(body); err != nil {
			t.Fatal(err)
		}
	}
	exprs, err := controltest.ContribExprs(contribDir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var rules, panels int
	for where, e := range exprs {
		for _, b := range controltest.CheckExpr(e, all) {
			t.Errorf("%s: %s\n\t%s", where, b, e)
		}
		for _, n := range controltest.Names(e) {
			names[n] = true
		}
		if strings.HasPrefix(where, controltest.RulesFile) {
			rules++
		} else {
			panels++
		}
	}
	// The files are read: each has expressions, and between them they
	// name the families an operator looks at first.
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
	s := controltest.Served{}
	if err := s.Add("# TYPE engarde_link_state gauge\n" +
		`engarde_link_state{interface="eth0",state="active"} 1` + "\n" +
		`engarde_link_state{interface="eth0",state="down"} 0` + "\n" +
		"# TYPE engarde_link_drops_total counter\n" +
		`engarde_link_drops_total{interface="eth0",reason="full"} 0` + "\n" +
		"# TYPE go_gc_duration_seconds summary\n" +
		`go_gc_duration_seconds{quantile="0.5"} 0.001` + "\n" +
		"go_gc_duration_seconds_sum 0.5\ngo_gc_duration_seconds_count 9\n"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		expr string
		bad  int
	}{
		{`engarde_link_state{state="down"} == 1`, 0},
		{`sum by (interface, reason) (rate(engarde_link_drops_total{instance=~"$instance",reason="full"}[5m]))`, 0},
		{`engarde_link_state{state="down", interface=~"engarde_not_a_metric"}`, 0},
		{`rate(go_gc_duration_seconds_sum[5m]) / rate(go_gc_duration_seconds_count[5m])`, 0},
		{`label_values(engarde_link_state, interface)`, 0},
		{`rate(engarde_link_drop_total[5m])`, 1},                           // misspelt
		{`engarde_link_state{status="down"}`, 1},                           // the old label
		{`engarde_link_state{state="idle"}`, 1},                            // the old state
		{`engarde_link_drops_total{reason="duplicate"} > 0`, 1},            // duplicates left drops
		{`engarde_link_late_seconds{quantile="0.99"} or go_goroutines`, 2}, // neither served here
	} {
		if got := controltest.CheckExpr(tt.expr, s); len(got) != tt.bad {
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
	for _, args := range [][]string{{"check", "rules", filepath.Base(controltest.RulesFile)}, {"test", "rules", filepath.Base(controltest.RulesTestFile)}} {
		cmd := exec.Command(p, args...)
		cmd.Dir = filepath.Join(contribDir, filepath.Dir(controltest.RulesFile))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
