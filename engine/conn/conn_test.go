package conn_test

import (
	"testing"

	"github.com/engarde-project/engarde/engine/conn/conntest"
)

// TestConformance runs the Conn contract's tests on every backend this
// machine can run.
func TestConformance(t *testing.T) {
	for _, be := range conntest.All(t) {
		t.Run(be.Name(), func(t *testing.T) { conntest.Run(t, be) })
	}
}

// TestFakeReadWaiter holds the fake network's sockets to the ReadWaiter
// contract the engine's receive loops rely on in tests.
func TestFakeReadWaiter(t *testing.T) {
	conntest.CheckReadWaiter(t, conntest.NewNet())
}
