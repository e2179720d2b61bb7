package topo

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// needTool skips t unless name is in PATH, naming it and the Debian
// package that has it.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("skipping: %s not found (apt-get install %s): %v", name, pkg, err)
	}
}

// TestImpairmentsRemoved pins a bug: removal used nft's "destroy", which
// nftables 1.0.6 (Debian 12) does not know, so Loss(0) and
// Blackhole(link, false) left their rules in place for the rest of the
// run. Every impairment must be gone once it is undone.
func TestImpairmentsRemoved(t *testing.T) {
	if err := Usable(); err != nil {
		t.Skipf("skipping namespace test: %v", err)
	}
	tp, err := New(fmt.Sprintf("egbt%d-", os.Getpid()%100000), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	for _, tc := range []struct {
		name      string
		on, off   func() error
		ns, what  string
		tool, pkg string // the command these need, and its Debian package
	}{
		{"Loss", func() error { return tp.Loss(5) }, func() error { return tp.Loss(0) }, tp.Server, "nft list tables", "nft", "nftables"},
		{"LossIngress", func() error { return tp.LossIngress(5) }, func() error { return tp.LossIngress(0) }, tp.Client, "nft list tables", "nft", "nftables"},
		{"Blackhole", func() error { return tp.Blackhole("eth-a", true) }, func() error { return tp.Blackhole("eth-a", false) }, tp.Client, "nft list tables", "nft", "nftables"},
		{"Limit", func() error { return tp.Limit("eth-a", "100mbit", "50ms") }, func() error { return tp.Limit("eth-a", "", "") }, tp.Server, "tc qdisc show dev eth-a", "tc", "iproute2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTool(t, tc.tool, tc.pkg)
			list := func() string {
				out, err := tp.Exec(tc.ns, strings.Fields(tc.what)...)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			before := list()
			if err := tc.on(); err != nil {
				t.Fatal(err)
			}
			if list() == before {
				t.Fatalf("%s changed nothing: %q", tc.name, before)
			}
			if err := tc.off(); err != nil {
				t.Fatal(err)
			}
			if after := list(); after != before {
				t.Errorf("undoing %s left %q, want %q", tc.name, after, before)
			}
		})
	}
}
