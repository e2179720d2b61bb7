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
	"strconv"
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
	shots := shotDir(t)
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
	// The history draws: the tunnel's and each link's rates as lines of
	// real points (the sampler's, one a second), not an empty chart.
	waitJS(t, ctx, 10*time.Second, `drawn('.hist[data-key="link/eth-a"] path.rx') >= 3 && drawn('.hist[data-key="link/eth-b"] path.tx') >= 3 && drawn('svg[data-key="tunnel"] path.rx') >= 3`)
	pts := jsString(t, ctx, `document.querySelector('.hist[data-key="link/eth-a"] path.rx').getAttribute("d")`)
	if xs := pathXs(pts); len(xs) < 3 || xs[len(xs)-1] <= xs[0] {
		t.Errorf("eth-a's rate line %q: want three points or more, left to right", pts)
	}
	if n := jsString(t, ctx, `document.querySelectorAll('.hist[data-key="link/eth-a"] svg.strip rect.st-active').length`); n == "0" {
		t.Errorf("eth-a's state strip has no active run")
	}
	screenshot(t, ctx, shots+"/engarde-page-active.png")

	// A pulled cable (the interface goes down) is loud on the client as
	// on the server: the row in the down colour, a banner naming it.
	tun.lb.SetUp("eth-a", false)
	waitJS(t, ctx, 5*time.Second, `rowState("eth-a") === "down" && row("eth-a").classList.contains("down") && row("eth-a").querySelector(".badge.down") !== null && document.getElementById("alert").textContent.includes("eth-a (Fiber) is down")`)
	t.Logf("pulled cable: banner %q, eth-a state %q", jsString(t, ctx, `document.getElementById("alert").textContent`), jsString(t, ctx, `row("eth-a").querySelector("td.status").textContent`))
	if st := jsString(t, ctx, `document.getElementById("tunnel").dataset.state`); st == "down" {
		t.Errorf("tunnel %s with eth-b still carrying", st)
	}
	if !eventually(ctx, 5*time.Second, `[...document.querySelectorAll("#event-list li")].some(li => li.dataset.link === "eth-a" && li.dataset.to === "down")`) {
		t.Errorf("the change of eth-a to down is not in the list of changes: %s", jsString(t, ctx, `document.getElementById("event-list").innerText`))
	}
	screenshot(t, ctx, shots+"/engarde-page-cable-pulled.png")
	tun.lb.SetUp("eth-a", true)
	waitJS(t, ctx, 10*time.Second, `rowState("eth-a") === "active" && document.getElementById("alert").hidden`)

	// A link that has stopped receiving while the other receives is
	// flagged in its row and in a banner.
	role.stallA.Store(true)
	waitJS(t, ctx, 5*time.Second, `document.querySelector('tr[data-name="eth-a"]').classList.contains("stalled") && !document.getElementById("alert").hidden`)
	alert := jsString(t, ctx, `document.getElementById("alert").textContent`)
	if !strings.Contains(alert, "eth-a (Fiber) has received nothing for") || !strings.Contains(alert, "while other links receive") {
		t.Errorf("banner %q", alert)
	}
	if s := jsString(t, ctx, `document.querySelector('tr[data-name="eth-a"] .badge').textContent`); s != "stalled" {
		t.Errorf("eth-a badge %q, want \"stalled\"", s)
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
	waitJS(t, ctx, 5*time.Second, `rowStatus("eth-a") === "excluded" && row("eth-a").querySelector(".badge.quiet") !== null`)
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
	// The excluded row is one line, not a card of dashes, and no
	// address breaks inside a number.
	if h, _ := strconv.ParseFloat(jsString(t, ctx, `row("eth-a").getBoundingClientRect().height / window.innerHeight`), 64); h > 0.1 {
		t.Errorf("the excluded eth-a row takes %.2f of a phone's screen height, want at most a tenth", h)
	}
	if broken := jsString(t, ctx, `[...document.querySelectorAll(".ap")].filter(e => e.getClientRects().length > 1).map(e => e.textContent).join(", ")`); broken != "" {
		t.Errorf("addresses broken across lines on a phone: %s", broken)
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
	waitJS(t, tab, 10*time.Second, `drawn('.hist[data-key^="session/"] path.rx') >= 3 && document.querySelector("tr.socket td.since").textContent.length > 3`)
	// "Since" has a date when it is not today.
	if s := jsString(t, tab, `when(new Date(Date.now() - 3 * 86400e3)) + " | " + when(new Date())`); !strings.Contains(strings.Split(s, " | ")[0], " ") || strings.Split(s, " | ")[0] == strings.Split(s, " | ")[1] {
		t.Errorf("three days ago and now shown as %q: want a date before the first", s)
	} else {
		t.Logf("three days ago, now: %s", s)
	}
	screenshot(t, tab, shots+"/engarde-page-server.png")
}

// pathXs returns the x coordinates of an SVG path's points.
func pathXs(d string) []float64 {
	var xs []float64
	for _, seg := range strings.FieldsFunc(d, func(r rune) bool { return r == 'M' || r == 'L' }) {
		f := strings.Fields(seg)
		if len(f) != 2 {
			continue
		}
		if x, err := strconv.ParseFloat(f[0], 64); err == nil {
			xs = append(xs, x)
		}
	}
	return xs
}

// TestBrowserCredentialsInURL opens the page as
// http://user:pass@host:port/, as an operator may type it: the browser
// logs in with them, and the page's own requests (the list, the history,
// an exclusion) must not carry them, which fetch refuses.
func TestBrowserCredentialsInURL(t *testing.T) {
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
	ctx, cancel := browser(t)
	defer cancel()
	run(t, ctx, chromedp.Navigate("http://admin:s3cret@"+web.Addr().String()+"/"))
	waitJS(t, ctx, 10*time.Second, `rowState("eth-a") === "active" && rowState("eth-b") === "active" && drawn('.hist[data-key="link/eth-b"] path.rx') >= 2`)
	if a := jsString(t, ctx, `document.getElementById("alert").textContent`); a != "" {
		t.Errorf("banner %q with credentials in the URL", a)
	}
	run(t, ctx, chromedp.Click(chromedp.CSS(`tr[data-name="eth-b"] button.exclude`)))
	waitJS(t, ctx, 5*time.Second, `rowState("eth-b") === "excluded"`)
	if !tun.client.Excluded("eth-b") {
		t.Errorf("the exclusion from the page did not reach the engine")
	}
	run(t, ctx, chromedp.Click(chromedp.ID("reset")))
	waitJS(t, ctx, 5*time.Second, `rowState("eth-b") === "active"`)
}

// TestBrowserTunnelDown cuts every link at once, as a firewall dropping
// all UDP to the server or a wrong server port does: the client's links
// are sent to a socket that never answers. The page must say the tunnel
// is down, at the top and in the banner, not show green links; when the
// server answers again, the tunnel comes back up.
func TestBrowserTunnelDown(t *testing.T) {
	needTool(t, chromium, "chromium")
	tun := startLoopbackTunnel(t)
	web, err := control.New(control.Options{ListenAddr: "127.0.0.1:0", Version: "browser-test"}, control.Role{Client: tun.view})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	ctx, cancel := browser(t)
	defer cancel()
	run(t, ctx, chromedp.Navigate("http://"+web.Addr().String()+"/"))
	waitJS(t, ctx, 10*time.Second, `rowState("eth-a") === "active" && rowState("eth-b") === "active" && document.getElementById("tunnel").dataset.state === "up"`)

	// A socket that reads nothing: no answer, and no ICMP refusal either.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cut := tun.cfg
	cut.DstAddr = silent.LocalAddr().String()
	if err := tun.client.Reconfigure(cut); err != nil {
		t.Logf("reconfigure: %v (the destination applies all the same)", err)
	}
	waitJS(t, ctx, 20*time.Second, `document.getElementById("tunnel").dataset.state === "down" && document.getElementById("alert").textContent.includes("Tunnel down")`)
	t.Logf("every link cut: tunnel %q, banner %q, links %s", jsString(t, ctx, `document.getElementById("tunnel").innerText`),
		jsString(t, ctx, `document.getElementById("alert").textContent`), jsString(t, ctx, `rowState("eth-a") + ", " + rowState("eth-b")`))
	if n := jsString(t, ctx, `document.querySelectorAll("#links .badge.active").length`); n != "0" {
		t.Errorf("%s links still shown active with every link cut", n)
	}
	if !eventually(ctx, 5*time.Second, `[...document.querySelectorAll("#event-list li")].some(li => li.dataset.link === "" && li.dataset.to === "down")`) {
		t.Errorf("the tunnel's change to down is not in the list of changes: %s", jsString(t, ctx, `document.getElementById("event-list").innerText`))
	}
	screenshot(t, ctx, shotDir(t)+"/engarde-page-tunnel-down.png")

	if err := tun.client.Reconfigure(tun.cfg); err != nil {
		t.Logf("reconfigure: %v (the destination applies all the same)", err)
	}
	waitJS(t, ctx, 20*time.Second, `document.getElementById("tunnel").dataset.state === "up"`)
}

// shotDir is where screenshots go: $ENGARDE_SCREENSHOTS, or
// /tmp/engarde-screenshots-<uid>.
func shotDir(t *testing.T) string {
	t.Helper()
	shots := os.Getenv("ENGARDE_SCREENSHOTS")
	if shots == "" {
		// One directory per user: in a shared /tmp, another user's
		// screenshots from an earlier run cannot be overwritten.
		shots = filepath.Join(os.TempDir(), fmt.Sprintf("engarde-screenshots-%d", os.Getuid()))
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return shots
}

// stallable makes eth-a look stalled, as the engine says it when it has
// received nothing for 5 s, on demand: an in-process link over loopback
// cannot be cut on one side only.
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
				st.Links[i].Status = string(engine.LinkStalled)
			}
		}
	}
	return st
}

// loopbackTunnel is a client and a server in this process (topo's
// loopback harness) with a stream through them.
type loopbackTunnel struct {
	lb     *topo.Loopback
	cfg    engine.ClientConfig // as reconfigured
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
	return &loopbackTunnel{lb: lb, cfg: ccfg, client: lb.Client, view: app.NewClientControl(lb.Client, "browser test client"), server: lb.Server, dst: lb.Sink.Addr().String()}
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
function rowState(name) { const r = row(name); return r ? r.dataset.state : ""; }
function drawn(sel) { const p = document.querySelector(sel); return p ? Number(p.dataset.points) : 0; }
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

// eventually reports whether the expression became true in the page
// within d.
func eventually(ctx context.Context, d time.Duration, expr string) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("(() => {"+helpers+"return Boolean("+expr+");})()")); err == nil && ok {
			return true
		}
	}
	return false
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
