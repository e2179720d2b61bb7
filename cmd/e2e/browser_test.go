package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/engarde-project/engarde/bench/loadgen"
	"github.com/engarde-project/engarde/bench/topo"
	"github.com/engarde-project/engarde/cmd/internal/app"
	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/engine"
)

// chromium is Debian's headless browser (apt-get install chromium).
const chromium = "/usr/bin/chromium"

// TestBrowserPage loads the web page in headless Chromium against a client
// and a server running in this process on loopback (two simulated
// interfaces, eth-a on 127.0.0.2 and eth-b on 127.0.0.3) with a stream
// through them. It sees both links active and carrying traffic, sees a link
// that stops receiving flagged, clicks Exclude on eth-a, and checks that
// the page shows it excluded and that eth-a stopped sending while eth-b
// goes on. Screenshots go to $ENGARDE_SCREENSHOTS (default
// /tmp/engarde-screenshots-<uid>).
func TestBrowserPage(t *testing.T) {
	needTool(t, chromium, "chromium")
	shots := os.Getenv("ENGARDE_SCREENSHOTS")
	if shots == "" {
		// One directory per user: in a shared /tmp, another user's
		// screenshots from an earlier run cannot be overwritten.
		shots = filepath.Join(os.TempDir(), fmt.Sprintf("engarde-screenshots-%d", os.Getuid()))
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	tun := startLoopbackTunnel(t)
	role := &stallable{ClientControl: tun.view}
	web, err := control.New(control.Options{ListenAddr: "127.0.0.1:0", Username: "admin", Password: "s3cret", Version: "browser-test"},
		control.Role{Client: role})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	url := "http://" + web.Addr().String() + "/"

	ctx, cancel := browser(t)
	defer cancel()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:s3cret"))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, chromedp.Navigate(url))

	// Both links active, each sending (the sampler needs two readings).
	waitJS(t, ctx, 10*time.Second, `rowStatus("eth-a") === "active" && rowStatus("eth-b") === "active" && !cell("eth-a", "out").startsWith("0 pkt/s") && !cell("eth-b", "out").startsWith("0 pkt/s")`)
	heading := jsString(t, ctx, `document.querySelector("h1").textContent`)
	if !strings.Contains(heading, "engarde client") || !strings.Contains(heading, "browser test client") {
		t.Errorf("heading %q", heading)
	}
	t.Logf("before: eth-a out %q, eth-b out %q, eth-a last %q", jsString(t, ctx, `cell("eth-a","out")`), jsString(t, ctx, `cell("eth-b","out")`), jsString(t, ctx, `cell("eth-a","last")`))
	screenshot(t, ctx, shots+"/engarde-page-active.png")

	// A link that has stopped receiving while the other receives is
	// flagged in its row and in a banner.
	role.stallA.Store(true)
	waitJS(t, ctx, 5*time.Second, `document.querySelector('tr[data-name="eth-a"]').classList.contains("stalled") && !document.getElementById("alert").hidden`)
	alert := jsString(t, ctx, `document.getElementById("alert").textContent`)
	if !strings.Contains(alert, "eth-a (Fiber) has received nothing for") || !strings.Contains(alert, "while other links receive") {
		t.Errorf("banner %q", alert)
	}
	if s := jsString(t, ctx, `document.querySelector('tr[data-name="eth-a"] .badge').textContent`); s != "not receiving" {
		t.Errorf("eth-a badge %q, want \"not receiving\"", s)
	}
	screenshot(t, ctx, shots+"/engarde-page-stalled.png")
	role.stallA.Store(false)
	waitJS(t, ctx, 5*time.Second, `document.getElementById("alert").hidden`)

	// Exclude eth-a with its button.
	a, b := tun.linkStats("eth-a"), tun.linkStats("eth-b")
	if a == nil || b == nil {
		t.Fatal("no link stats")
	}
	run(t, ctx, chromedp.Click(chromedp.CSS(`tr[data-name="eth-a"] button.exclude`)))
	waitJS(t, ctx, 5*time.Second, `rowStatus("eth-a") === "excluded" && cell("eth-a", "out") === "–"`)
	if !tun.client.Excluded("eth-a") {
		t.Errorf("the engine does not have eth-a excluded")
	}
	aTx, bTx := a.TxPackets.Load(), b.TxPackets.Load()
	// Rates are per second: wait for a full sample without eth-a.
	waitJS(t, ctx, 5*time.Second, `!cell("eth-b", "out").startsWith("0 pkt/s")`)
	time.Sleep(1500 * time.Millisecond)
	if n := a.TxPackets.Load() - aTx; n != 0 {
		t.Errorf("eth-a sent %d datagrams after it was excluded", n)
	}
	if n := b.TxPackets.Load() - bTx; n < 1000 {
		t.Errorf("eth-b sent only %d datagrams in 1.5 s after eth-a was excluded", n)
	}
	if s := jsString(t, ctx, `document.querySelector('tr[data-name="eth-a"] button').textContent`); s != "Include" {
		t.Errorf("eth-a button %q after excluding, want Include", s)
	}
	t.Logf("after: eth-a status %q out %q; eth-b out %q", jsString(t, ctx, `rowStatus("eth-a")`), jsString(t, ctx, `cell("eth-a","out")`), jsString(t, ctx, `cell("eth-b","out")`))
	screenshot(t, ctx, shots+"/engarde-page-excluded.png")

	// On a phone: nothing wider than the screen.
	run(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	time.Sleep(1200 * time.Millisecond)
	if w := jsString(t, ctx, `String(document.documentElement.scrollWidth) + " " + String(window.innerWidth)`); strings.Fields(w)[0] != strings.Fields(w)[1] {
		t.Errorf("page wider than a phone's screen (scroll width, screen width): %s", w)
	}
	screenshot(t, ctx, shots+"/engarde-page-phone.png")
	run(t, ctx, chromedp.EmulateViewport(1100, 760))

	// Reset: the configuration decides again, and eth-a carries again.
	run(t, ctx, chromedp.Click(chromedp.ID("reset")))
	waitJS(t, ctx, 5*time.Second, `rowStatus("eth-a") === "active"`)
	if tun.client.Excluded("eth-a") {
		t.Errorf("eth-a still excluded after a reset")
	}

	// The server's page, in another tab: a row per client address.
	sweb, err := control.New(control.Options{ListenAddr: "127.0.0.1:0", Version: "browser-test"},
		control.Role{Server: app.NewServerControl(tun.server, tun.dst, "browser test server")})
	if err != nil {
		t.Fatal(err)
	}
	if err := sweb.Start(); err != nil {
		t.Fatal(err)
	}
	defer sweb.Close()
	tab, closeTab := chromedp.NewContext(ctx)
	defer closeTab()
	run(t, tab, chromedp.Navigate("http://"+sweb.Addr().String()+"/"))
	// Both links' addresses receive; eth-a's from before the exclusion
	// (a new socket, so a new port) stays until the client timeout,
	// flagged as silent.
	waitJS(t, tab, 10*time.Second, `["127.0.0.2:", "127.0.0.3:"].every(p => [...document.querySelectorAll('tr.socket[data-address^="' + p + '"] td.in')].some(td => !td.textContent.startsWith("0 pkt/s")))`)
	if h := jsString(t, tab, `document.querySelector("h1").textContent`); !strings.Contains(h, "engarde server") {
		t.Errorf("server page heading %q", h)
	}
	screenshot(t, tab, shots+"/engarde-page-server.png")
}

// stallable makes eth-a look as if it had stopped receiving 5 s ago, on
// demand: an in-process link over loopback cannot be cut on one side only.
type stallable struct {
	*app.ClientControl
	stallA atomic.Bool
}

func (s *stallable) ClientStatus() control.ClientStatus {
	st := s.ClientControl.ClientStatus()
	if s.stallA.Load() {
		for i, l := range st.Links {
			if l.Name == "eth-a" && l.Counters != nil {
				c := *l.Counters
				c.LastRx = time.Now().Add(-5 * time.Second)
				st.Links[i].Counters = &c
			}
		}
	}
	return st
}

// loopbackTunnel is a client and a server in this process (topo's
// loopback harness) with a stream through them.
type loopbackTunnel struct {
	client *engine.Client
	view   *app.ClientControl
	server *engine.Server
	dst    string // the sink, the server's WireGuard
}

func (tu *loopbackTunnel) linkStats(name string) *engine.Stats {
	for _, l := range tu.client.Links() {
		if l.Name == name {
			return l.Stats
		}
	}
	return nil
}

func startLoopbackTunnel(t *testing.T) *loopbackTunnel {
	t.Helper()
	lb, err := topo.StartLoopback(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	// Labels, as a reload would set them.
	ccfg := engine.ClientConfig{
		Options:    engine.Options{DisableGRO: true, DisableDedup: true},
		ListenAddr: "127.0.0.1:0",
		DstAddr:    lb.Server.ListenAddr().String(),
		Labels:     map[string]string{"eth-a": "Fiber", "eth-b": "LTE"},
	}
	if err := lb.Client.Reconfigure(ccfg); err != nil {
		t.Logf("reconfigure: %v (the labels apply all the same)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := loadgen.Run(ctx, loadgen.Options{Target: lb.Client.ListenAddr(), Rate: 2000, Size: 500, Duration: time.Minute, Wait: -1})
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("generator: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &loopbackTunnel{client: lb.Client, view: app.NewClientControl(lb.Client, "browser test client"), server: lb.Server, dst: lb.Sink.Addr().String()}
}

// browser starts headless Chromium with no network beyond this host: the
// flags keep it from calling home (the machine has no internet, and
// without them it keeps trying). extra are further flags.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) (context.Context, context.CancelFunc) {
	t.Helper()
	// Not t.TempDir: Chromium's children may still write there for a
	// moment after it stops, so removing it takes a few tries.
	dir, err := os.MkdirTemp("", "engarde-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(dir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // Chromium refuses to run as root with its sandbox
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1100, 760),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	if err := chromedp.Do(ctx); err != nil {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		if _, lerr := exec.LookPath(chromium); lerr != nil {
			t.Skipf("skipping: %v", lerr)
		}
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return ctx, func() { cancelTimeout(); cancelCtx(); cancelAlloc() }
}

func run(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// helpers are page-side functions the checks use.
const helpers = `
function row(name) { return document.querySelector('tr[data-name="' + name + '"]'); }
function rowStatus(name) { const r = row(name); return r ? r.dataset.status : ""; }
function cell(name, cls) { const r = row(name); return r ? r.querySelector("td." + cls).textContent : ""; }
`

// waitJS waits until the expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("(() => {"+helpers+"return Boolean("+expr+");})()"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText + "\n" + document.getElementById("alert").textContent`))
			t.Fatalf("page never showed %s within %v (last error %v); it shows:\n%s", expr, d, err, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func jsString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("(() => {"+helpers+"return String("+expr+");})()"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// evilPage is a page on another origin that tries to act on the web
// manager at %[1]s with the operator's browser: images that GET the
// reset and an exclusion, a form that POSTs an exclusion as text/plain
// (a "simple" request, sent without a preflight), a no-cors fetch that
// POSTs one, and a fetch that tries to read the list.
const evilPage = `<!doctype html><title>cute cats</title>
<img src="%[1]s/api/v1/reset-exclusions"><img src="%[1]s/reset-exclusions">
<img src="%[1]s/api/v1/include?interface=eth-a"><img src="%[1]s/api/v1/swap-exclusion?interface=eth-a">
<iframe name="sink"></iframe>
<form id="f" method="POST" action="%[1]s/api/v1/exclude" enctype="text/plain" target="sink">
<input name='{"interface":"eth-b","x":"' value='"}'></form>
<script>
window.done = 0;
fetch("%[1]s/api/v1/exclude", {method: "POST", mode: "no-cors", credentials: "include", body: '{"interface":"eth-b"}'})
  .finally(() => window.done++);
fetch("%[1]s/api/v1/get-list", {credentials: "include"}).then(r => r.text())
  .then(t => { window.leak = t; }, () => { window.leak = "blocked"; }).finally(() => window.done++);
document.getElementById("f").submit();
</script>`

// TestBrowserAttacks plays, in headless Chromium with the operator's login
// sent on every request (worse than a browser's stored Basic credentials,
// which it sends only when asked), a page on another origin that tries
// the web manager's actions through images, a form and fetch, and a
// DNS-rebinding page: evil.example, mapped to 127.0.0.1 by Chromium's
// resolver rules, on the web manager's own port, so that its requests
// are same-origin with it. None changes the exclusions or reads the state.
func TestBrowserAttacks(t *testing.T) {
	needTool(t, chromium, "chromium")
	tun := startLoopbackTunnel(t)
	web, err := control.New(control.Options{ListenAddr: "127.0.0.1:0", Username: "admin", Password: "s3cret", Version: "browser-test"},
		control.Role{Client: tun.view})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	port := web.Addr().(*net.TCPAddr).Port
	origin := "http://" + web.Addr().String()
	for deadline := time.Now().Add(5 * time.Second); tun.linkStats("eth-a") == nil || tun.linkStats("eth-b") == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("links never came up")
		}
	}
	// Excluded, so that a reset, an include or a swap would show.
	if _, err := tun.client.SetExclusion("eth-a", true); err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		if !tun.client.Excluded("eth-a") || tun.client.Excluded("eth-b") {
			t.Errorf("%s: eth-a excluded %v, eth-b excluded %v; want true, false", what, tun.client.Excluded("eth-a"), tun.client.Excluded("eth-b"))
		}
	}

	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, evilPage, origin)
	}))
	defer evil.Close()

	ctx, cancel := browser(t, chromedp.Flag("host-resolver-rules", "MAP evil.example 127.0.0.1"))
	defer cancel()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:s3cret"))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}

	// The cross-origin page.
	run(t, ctx, chromedp.Navigate(evil.URL+"/"))
	waitJS(t, ctx, 10*time.Second, `window.done === 2`)
	time.Sleep(500 * time.Millisecond) // the form's answer, in its frame
	leak := jsString(t, ctx, `window.leak`)
	t.Logf("cross-origin page: the list fetch got %q", leak)
	if strings.Contains(leak, "interfaces") {
		t.Errorf("the cross-origin page read the list: %s", leak)
	}
	unchanged("after the cross-origin page")

	// The rebinding page: same origin as the web manager's port, named
	// evil.example.
	rebound := fmt.Sprintf("http://evil.example:%d", port)
	run(t, ctx, chromedp.Navigate(rebound+"/"))
	page := jsString(t, ctx, `document.body.innerText`)
	t.Logf("the web manager's answer to %s/: %s", rebound, strings.TrimSpace(page))
	if !strings.Contains(page, "not served here") {
		t.Errorf("%s/ showed %q, want the 421 refusal", rebound, page)
	}
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`window.codes = [];
for (const [m, p] of [["GET", "/api/v1/get-list"], ["POST", "/api/v1/reset-exclusions"], ["POST", "/api/v1/swap-exclusion"], ["POST", "/api/v1/include"]]) {
  fetch(p, {method: m, credentials: "include", body: m === "POST" ? '{"interface":"eth-a"}' : undefined, headers: m === "POST" ? {"Content-Type": "application/json"} : {}})
    .then(async r => window.codes.push(m + " " + p + " " + r.status + " " + (await r.text()).length), e => window.codes.push(m + " " + p + " failed " + e));
}`))
	waitJS(t, ctx, 10*time.Second, `window.codes.length === 4`)
	codes := jsString(t, ctx, `window.codes.join("; ")`)
	t.Logf("the rebinding page's requests: %s", codes)
	for _, c := range strings.Split(codes, "; ") {
		if !strings.Contains(c, " 421 ") {
			t.Errorf("rebinding request answered %q, want 421", c)
		}
	}
	unchanged("after the rebinding page")

	// The operator's own page still works.
	run(t, ctx, chromedp.Navigate(origin+"/"))
	waitJS(t, ctx, 10*time.Second, `rowStatus("eth-a") === "excluded"`)
	run(t, ctx, chromedp.Click(chromedp.ID("reset")))
	waitJS(t, ctx, 5*time.Second, `rowStatus("eth-a") === "active"`)
	if tun.client.Excluded("eth-a") {
		t.Errorf("the page's own reset (a POST) did not reset")
	}
}
