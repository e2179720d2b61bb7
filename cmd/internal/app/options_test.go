package app

import (
	"testing"

	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/engine"
)

// TestDefaultFileGivesZeroOptions checks that a file that sets nothing in
// its engine section maps to the engine the zero options give (the same
// sizes, nothing disabled), so that the binaries and a program using the engine
// directly run the same engine; and that the kill switches turn the
// offloads and the filter off.
func TestDefaultFileGivesZeroOptions(t *testing.T) {
	cfg, err := config.Parse([]byte("server:\n  listenAddr: \":59402\"\n  dstAddr: \"127.0.0.1:59301\"\n"), "test.yml", config.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	o, err := Options(s.Engine, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Backend == nil {
		t.Fatal("no backend")
	}
	o.Backend = nil
	want := engine.Options{BatchSize: s.Engine.BatchSize, QueueLength: s.Engine.QueueLength, BufferSize: s.Engine.BufferSize}
	if o != want {
		t.Errorf("Options(defaults) = %+v, want %+v", o, want)
	}
	t.Setenv("ENGARDE_GSO", "off")
	t.Setenv("ENGARDE_GRO", "0")
	t.Setenv("ENGARDE_DEDUP", "no")
	o, err = Options(s.Engine, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.DisableGSO || !o.DisableGRO || !o.DisableDedup {
		t.Errorf("kill switches ignored: %+v", o)
	}
}
