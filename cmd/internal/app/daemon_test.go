package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// stillWatcher reports no interface change until it is closed.
type stillWatcher struct {
	done chan struct{}
	once sync.Once
}

func (w *stillWatcher) Wait() error  { <-w.done; return net.ErrClosed }
func (w *stillWatcher) Close() error { w.once.Do(func() { close(w.done) }); return nil }

// TestServeStopsWebFirst toggles exclusions through the web manager, from
// several goroutines, while SIGTERM stops the client. It pins the bug
// where Run closed the buffer pool while the web manager still served, so
// that a toggle in that window opened a link on unmapped buffers: now the
// web manager no longer accepts connections when the engine's context is
// cancelled, and no link is open once Serve returns.
func TestServeStopsWebFirst(t *testing.T) {
	conntest.CheckGoroutines(t)
	fn := conntest.NewNet()
	ifs := []engine.Iface{
		{Name: "a", Index: 2, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
		{Name: "b", Index: 3, Up: true, Running: true, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}},
	}
	cl, err := engine.NewClient(engine.ClientConfig{
		Options:    engine.Options{Backend: fn, DisableGSO: true, DisableGRO: true, QueueLength: 16, BufferSize: 2048},
		ListenAddr: "127.0.0.1:51821",
		DstAddr:    "198.51.100.1:4000",
		Interfaces: func() ([]engine.Iface, error) { return ifs, nil },
		Watch:      func() (engine.Watcher, error) { return &stillWatcher{done: make(chan struct{})}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	view := NewClientControl(cl, "test")
	web, err := StartWeb(zerolog.Nop(), config.WebManager{ListenAddr: "127.0.0.1:0"}, control.Role{Client: view})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	addr := web.Addr().String()

	sig := &Signals{hup: make(chan os.Signal, 1)}
	sig.ctx, sig.stop = context.WithCancel(context.Background())
	var webUp atomic.Bool // whether the web manager took a connection once the engine was told to stop
	run := func(ctx context.Context) error {
		inner, stop := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- cl.Run(inner) }()
		<-ctx.Done()
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			webUp.Store(true)
			c.Close()
		}
		stop()
		return <-ran
	}
	served := make(chan error, 1)
	go func() { served <- sig.Serve(web, run, func() {}) }()

	for deadline := time.Now().Add(3 * time.Second); activeLinks(view) != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d links active, want 2", activeLinks(view))
		}
	}
	var (
		wg       sync.WaitGroup
		quit     = make(chan struct{})
		ok, gone atomic.Int64
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			paths := []string{"/api/v1/exclude", "/api/v1/include", "/api/v1/swap-exclusion"}
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				body := `{"interface":"` + []string{"a", "b"}[g%2] + `"}`
				resp, err := hc.Post("http://"+addr+paths[(i+g)%3], "application/json", strings.NewReader(body))
				if err != nil {
					gone.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	sig.stop() // SIGTERM
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Serve: %v", err)
	}
	for end := time.Now().Add(time.Second); gone.Load() < 8 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	close(quit)
	wg.Wait()
	t.Logf("%d toggles answered before the stop, %d refused after", ok.Load(), gone.Load())
	if ok.Load() == 0 {
		t.Errorf("no toggle went through before the stop: the test exercised nothing")
	}
	if webUp.Load() {
		t.Errorf("the web manager still took connections when the engine was told to stop")
	}
	if n := activeLinks(view); n != 0 {
		t.Errorf("%d links active after Serve returned", n)
	}
	if _, err := view.SetExclusion("a", true); !errors.Is(err, engine.ErrStopping) {
		t.Errorf("a toggle after the stop: %v, want ErrStopping", err)
	}
}

func activeLinks(c *ClientControl) int {
	n := 0
	for _, l := range c.ClientStatus().Links {
		if l.Status == string(engine.LinkActive) {
			n++
		}
	}
	return n
}
