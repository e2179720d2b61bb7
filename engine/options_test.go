package engine

import (
	"testing"
	"time"

	"github.com/engarde-project/engarde/config/defaults"
	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestZeroOptionsAreTheShippedEngine pins the fix for engine and config
// disagreeing on defaults (2048-byte buffers, GSO and GRO off in the engine;
// 65536, on, on in the file): the zero Options now get config/defaults'
// values, so a program using the engine directly runs what the binaries run.
func TestZeroOptionsAreTheShippedEngine(t *testing.T) {
	o := Options{Backend: conntest.NewNet()}
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	so := o.socket()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"BatchSize", o.BatchSize, defaults.BatchSize},
		{"QueueLength", o.QueueLength, defaults.QueueLength},
		{"BufferSize", o.BufferSize, defaults.BufferSize},
		{"WriteTimeout", o.WriteTimeout, defaults.WriteTimeout},
		{"GSO", so.GSO, defaults.GSO},
		{"GRO", so.GRO, defaults.GRO},
		{"Dedup", !o.DisableDedup, defaults.Dedup},
		{"socket BatchSize", so.BatchSize, defaults.BatchSize},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v (config/defaults)", c.name, c.got, c.want)
		}
	}
	// GRO needs buffers that hold a whole train.
	small := Options{Backend: conntest.NewNet(), BufferSize: 2048}
	if err := small.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if small.socket().GRO {
		t.Error("GRO on with 2048-byte buffers")
	}
	if neg := (Options{WriteTimeout: -time.Second}); neg.timeout() != 0 {
		t.Errorf("negative write timeout gives %d, want 0 (no limit)", neg.timeout())
	}
}
