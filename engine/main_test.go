package engine

import (
	"testing"

	"github.com/engarde-project/engarde/engine/internal/leakcheck"
)

// TestMain checks, after every test, that no goroutine of ours and no file
// descriptor the tests opened is left.
func TestMain(m *testing.M) { leakcheck.Main(m) }
