package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/cmd/internal/control/controltest"
)

// The metrics listeners of TestNetnsMetrics, beside web managers with a
// login.
const (
	metricsClientWeb = "  webManager:\n    listenAddr: \"127.0.0.1:59480\"\n    username: \"admin\"\n    password: \"s3cret\"\n    metricsListenAddr: \"127.0.0.1:59490\"\n"
	metricsServerWeb = "  webManager:\n    listenAddr: \"127.0.0.1:59481\"\n    username: \"admin\"\n    password: \"s3cret\"\n    metricsListenAddr: \"0.0.0.0:59491\"\n"
)

// TestNetnsMetrics runs the real programs in namespaces with a metrics
// listener each, a stream through them, and scrapes both without the
// login: the scrapes pass promtool check metrics, every metric, label and
// value that contrib/'s rules and dashboard name is among them (but for
// the families this run cannot produce, named), and /healthz answers 200
// while the tunnel is up and 503 once every link is black-holed, on the
// metrics listener as on the web manager.
func TestNetnsMetrics(t *testing.T) {
	needNetns(t)
	needTool(t, "curl", "curl")
	needTool(t, "nft", "nftables")
	e := newEnv(t, topo.TunnelConfig{ClientExtra: metricsClientWeb, ServerExtra: metricsServerWeb})
	e.waitLog(e.Client, 5*time.Second, 1, "metrics listening on http://127.0.0.1:59490/metrics")
	e.waitLog(e.Server, 5*time.Second, 1, "metrics listening on http://", ":59491/metrics")
	if rep, err := e.Gen(500, 3*time.Second, 200); err != nil {
		t.Fatal(err)
	} else if rep.Received == 0 {
		t.Fatalf("nothing came through the tunnel: %+v", rep)
	}

	cl, srv := e.Topo.Client, e.Topo.Server
	scrape := func(ns, url string) string {
		t.Helper()
		code, body := e.curl(ns, url)
		if code != 200 {
			t.Fatalf("%s without the login: %d %.300s", url, code, body)
		}
		return body
	}
	bodies := map[string]string{
		"client": scrape(cl, "http://127.0.0.1:59490/metrics"),
		"server": scrape(srv, "http://127.0.0.1:59491/metrics"),
	}
	// The web manager still asks for its login.
	if code, _ := e.curl(cl, "http://127.0.0.1:59480/metrics"); code != 401 {
		t.Errorf("the web manager's /metrics without the login: %d, want 401", code)
	}
	if code, _ := e.curl(cl, "-u", "admin:s3cret", "http://127.0.0.1:59480/metrics"); code != 200 {
		t.Errorf("the web manager's /metrics with the login: %d", code)
	}

	served := controltest.Served{}
	for role, b := range bodies {
		if err := served.Add(b); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if p, err := exec.LookPath("promtool"); err == nil {
			cmd := exec.Command(p, "check", "metrics")
			cmd.Stdin = strings.NewReader(b)
			if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("%s: promtool check metrics: %v\n%s", role, err, out)
			}
		} else {
			t.Logf("promtool not found: the %s scrape is not linted (.ci/run installs it)", role)
		}
	}
	t.Logf("the client's probe series:\n%s", grepLines(bodies["client"], "engarde_link_probe_"))
	for _, want := range []string{`engarde_tunnel_state{state="up"} 1`, `engarde_link_state{interface="eth-a",state="active"} 1`} {
		if !strings.Contains(bodies["client"], want) {
			t.Errorf("the client's scrape has no %s", want)
		}
	}
	for _, want := range []string{"engarde_client_address_info{", `slot="0"`, "engarde_sessions 1"} {
		if !strings.Contains(bodies["server"], want) {
			t.Errorf("the server's scrape has no %s", want)
		}
	}

	// Families only some runs have: a destination given by name, probes
	// answered (by a server that answers them). Everything else contrib/
	// names must be served here.
	absentOK := map[string]bool{
		"engarde_destination_resolved_timestamp_seconds": true,
		"engarde_destination_lookup_failing":             true,
	}
	if _, ok := served["engarde_link_probe_answered_total"]; !ok {
		t.Logf("no probe figures in this run: the probe families are not checked here (TestContribNames does)")
		for _, n := range []string{"engarde_link_probe_sent_total", "engarde_link_probe_answered_total", "engarde_link_probe_loss_ratio",
			"engarde_link_probe_rtt_seconds", "engarde_link_probe_jitter_seconds", "engarde_link_probe_last_answer_timestamp_seconds"} {
			absentOK[n] = true
		}
	}
	exprs, err := controltest.ContribExprs("../../contrib")
	if err != nil {
		t.Fatal(err)
	}
	for where, expr := range exprs {
		for _, b := range controltest.CheckExpr(expr, served) {
			name, _, _ := strings.Cut(b, " ")
			name, _, _ = strings.Cut(name, "{")
			if absentOK[name] {
				continue
			}
			t.Errorf("%s: %s\n\t%s", where, b, expr)
		}
	}

	// /healthz: up, then down once nothing comes back on any link.
	for _, url := range []string{"http://127.0.0.1:59490/healthz", "http://127.0.0.1:59480/healthz"} {
		if code, body := e.curl(cl, url); code != 200 || strings.TrimSpace(body) != "up" {
			t.Errorf("%s while up: %d %q", url, code, body)
		}
	}
	stream := make(chan struct{})
	go func() {
		defer close(stream)
		_, _ = e.Gen(200, 15*time.Second, 200) // WireGuard keeps sending; losses are the point
	}()
	defer func() { <-stream }()
	rules := "table inet me_dead {\n chain in {\n  type filter hook input priority 0; policy accept;\n" +
		"  iifname \"eth-a\" meta l4proto udp drop\n  iifname \"eth-b\" meta l4proto udp drop\n }\n}\n"
	if err := e.Nft(srv, rules); err != nil {
		t.Fatal(err)
	}
	defer e.NftRemove(srv, "inet", "me_dead")
	deadline := time.Now().Add(12 * time.Second)
	for {
		code, body := e.curl(cl, "http://127.0.0.1:59490/healthz")
		if code == 503 {
			if !strings.HasPrefix(body, "down: ") {
				t.Errorf("/healthz 503 says %q, want the state and its reason", body)
			}
			t.Logf("/healthz with every link dead: %d %q", code, body)
			break
		}
		if time.Now().After(deadline) {
			out, _ := e.Exec(cl, bin+"/engarde-client", "status", "-json", e.ConfigPath)
			var l control.ClientList
			_ = json.Unmarshal([]byte(out), &l)
			t.Fatalf("/healthz still %d %q with every link dead; the client's tunnel: %+v", code, body, l.Tunnel)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if code, body := e.curl(cl, "http://127.0.0.1:59480/healthz"); code != 503 {
		t.Errorf("the web manager's /healthz with every link dead: %d %q", code, body)
	}
	m := scrape(cl, "http://127.0.0.1:59490/metrics")
	if !strings.Contains(m, `engarde_tunnel_state{state="down"} 1`) {
		t.Errorf("/healthz says down but the metrics do not:\n%s", grepLines(m, "engarde_tunnel_state"))
	}
}

// grepLines returns the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
