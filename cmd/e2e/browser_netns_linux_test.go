//go:build linux && !386

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/engarde-project/engarde/bench/topo"
)

// TestBrowserNetns opens the pages of the real engarde-client and
// engarde-server, running in two namespaces as in the README's second
// scenario, in headless Chromium, with the credentials in the URL
// (http://admin:s3cret@host/) as an operator may type them. It checks the
// failures issue 11 found the page quiet or wrong about:
//   - the interfaces that are no links (lo) are one grey line on a phone,
//     not a third of the screen, and raise no banner;
//   - the history draws real points;
//   - a pulled cable (the far end of eth-a down: the client's eth-a loses
//     its carrier) is as loud on the client's page as on the server's: a
//     row in the failure colours and a banner on both;
//   - every link dead (the server's namespace drops all UDP from the
//     links) shows the tunnel down, at the top and in the banner.
//
// Chromium runs in this process's namespace; a relay carries its
// connections into the namespaces' loopback, where the web managers listen.
func TestBrowserNetns(t *testing.T) {
	needTool(t, chromium, "chromium")
	needNetns(t)
	needTool(t, "nft", "nftables")
	e := newWebEnv(t)
	ctxGen, stopGen := context.WithCancel(context.Background())
	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		_, _ = e.GenContext(ctxGen, topo.ClientListen, 500, 90*time.Second, 200) // losses are the point here
	}()
	defer func() { stopGen(); <-genDone }()
	shots := shotDir(t)

	client := relayInto(t, e.Topo.Client, "127.0.0.1:59480")
	server := relayInto(t, e.Topo.Server, "127.0.0.1:59481")
	ctx, cancel := browser(t)
	defer cancel()
	run(t, ctx, chromedp.Navigate("http://admin:s3cret@"+client+"/"))
	waitJS(t, ctx, 15*time.Second, `rowState("eth-a") === "active" && rowState("eth-b") === "active" && row("lo") !== null && document.getElementById("tunnel").dataset.state === "up"`)
	if !eventually(ctx, 3*time.Second, `row("lo").classList.contains("quiet") && document.getElementById("alert").hidden`) {
		t.Errorf("lo not drawn quiet (%q), or a banner: %q", jsString(t, ctx, `row("lo").className`), jsString(t, ctx, `document.getElementById("alert").textContent`))
	}
	waitJS(t, ctx, 10*time.Second, `drawn('.hist[data-key="link/eth-a"] path.rx') >= 3 && drawn('.hist[data-key="link/eth-b"] path.rx') >= 3`)
	if rtt := jsString(t, ctx, `cell("eth-a", "rtt")`); !strings.Contains(rtt, "ms") {
		t.Logf("eth-a's RTT cell %q: no probe figure (probes off?)", rtt)
	}
	screenshot(t, ctx, shots+"/engarde-netns-client.png")

	run(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	time.Sleep(1200 * time.Millisecond)
	if h, _ := strconv.ParseFloat(jsString(t, ctx, `row("lo").getBoundingClientRect().height / window.innerHeight`), 64); h > 0.1 {
		t.Errorf("the lo row takes %.2f of a phone's screen height, want at most a tenth", h)
	}
	if broken := jsString(t, ctx, `[...document.querySelectorAll(".ap")].filter(e => e.getClientRects().length > 1).map(e => e.textContent).join(", ")`); broken != "" {
		t.Errorf("addresses broken across lines on a phone: %s", broken)
	}
	if w := jsString(t, ctx, `String(document.documentElement.scrollWidth) + " " + String(window.innerWidth)`); strings.Fields(w)[0] != strings.Fields(w)[1] {
		t.Errorf("page wider than a phone's screen (scroll width, screen width): %s", w)
	}
	screenshot(t, ctx, shots+"/engarde-netns-client-phone.png")
	run(t, ctx, chromedp.EmulateViewport(1100, 760))

	// The server's page, in another tab, without credentials (it has
	// none).
	tab, closeTab := chromedp.NewContext(ctx)
	defer closeTab()
	run(t, tab, chromedp.Navigate("http://"+server+"/"))
	waitJS(t, tab, 10*time.Second, `document.querySelectorAll('tr.socket[data-state="active"]').length >= 2 && document.getElementById("alert").hidden`)

	// Pull eth-a's cable at the server's end.
	if _, err := e.Exec(e.Topo.Server, "ip", "link", "set", "eth-a", "down"); err != nil {
		t.Fatal(err)
	}
	pulled := time.Now()
	waitJS(t, ctx, 10*time.Second, `rowState("eth-a") === "down" && row("eth-a").querySelector(".badge.down") !== null && document.getElementById("alert").textContent.includes("eth-a is down")`)
	t.Logf("cable pulled: the client's page says %q after %v", jsString(t, ctx, `document.getElementById("alert").textContent`), time.Since(pulled).Round(100*time.Millisecond))
	waitJS(t, tab, 10*time.Second, `document.querySelector('tr.socket[data-state="stalled"] .badge.stalled') !== null && document.getElementById("alert").textContent.includes("has sent nothing")`)
	t.Logf("cable pulled: the server's page says %q", jsString(t, tab, `document.getElementById("alert").textContent`))
	if st := jsString(t, ctx, `document.getElementById("tunnel").dataset.state`); st != "degraded" {
		t.Errorf("tunnel %q with one link of two down, want degraded", st)
	}
	screenshot(t, ctx, shots+"/engarde-netns-client-cable-pulled.png")
	screenshot(t, tab, shots+"/engarde-netns-server-cable-pulled.png")
	if _, err := e.Exec(e.Topo.Server, "ip", "link", "set", "eth-a", "up"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 15*time.Second, `rowState("eth-a") === "active" && document.getElementById("tunnel").dataset.state === "up"`)

	// Every link dead: the server's namespace drops all UDP from them.
	rules := "table inet wb_dead {\n chain in {\n  type filter hook input priority 0; policy accept;\n" +
		"  iifname \"eth-a\" meta l4proto udp drop\n  iifname \"eth-b\" meta l4proto udp drop\n }\n}\n"
	if err := e.Nft(e.Topo.Server, rules); err != nil {
		t.Fatal(err)
	}
	defer e.NftRemove(e.Topo.Server, "inet", "wb_dead")
	waitJS(t, ctx, 15*time.Second, `document.getElementById("tunnel").dataset.state === "down" && document.getElementById("alert").textContent.includes("Tunnel down") && document.querySelectorAll("#links .badge.active").length === 0`)
	t.Logf("every link dead: %q", jsString(t, ctx, `document.getElementById("tunnel").querySelector(".tline").innerText`))
	waitJS(t, ctx, 5*time.Second, `drawn('svg[data-key="tunnel"] path.rx') >= 3 && document.querySelector('#tunnel svg.strip rect.st-down') !== null`)
	screenshot(t, ctx, shots+"/engarde-netns-client-tunnel-down.png")
	if err := e.NftRemove(e.Topo.Server, "inet", "wb_dead"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 15*time.Second, `document.getElementById("tunnel").dataset.state === "up"`)
}

// newWebEnv is newEnv with both web managers on (the client's with a
// login), on namespaces of this test's own prefix.
func newWebEnv(t *testing.T) *env {
	t.Helper()
	return startEnv(t, "wb", topo.TunnelConfig{LogLevel: "debug", ClientExtra: clientWeb, ServerExtra: serverWeb})
}

// relayInto listens on this namespace's loopback and carries each
// connection to addr inside namespace ns; the test's cleanup stops it and
// its connections. It returns the address it listens on.
func relayInto(t *testing.T, ns, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	track := func(cs ...net.Conn) {
		mu.Lock()
		conns = append(conns, cs...)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := dialIn(ns, addr)
			if err != nil {
				t.Logf("relay into %s: %v", ns, err)
				down.Close()
				continue
			}
			track(down, up)
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, down)
			go pipe(down, up)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dialIn opens a TCP connection to addr from inside namespace ns: the
// socket belongs to the namespace of the thread that makes it, so a
// goroutine locked to its thread enters ns, dials, and comes back. If it
// cannot come back, it stays locked and its thread ends with it.
func dialIn(ns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("entering %s: %w", ns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if setns(self) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// setns moves the calling thread into the network namespace f names
// (setns(2)).
func setns(f *os.File) error {
	if _, _, e := syscall.Syscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
		return e
	}
	return nil
}
