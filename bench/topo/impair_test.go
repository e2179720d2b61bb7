package topo

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

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
		name     string
		on, off  func() error
		ns, what string
	}{
		{"Loss", func() error { return tp.Loss(5) }, func() error { return tp.Loss(0) }, tp.Server, "nft list tables"},
		{"LossIngress", func() error { return tp.LossIngress(5) }, func() error { return tp.LossIngress(0) }, tp.Client, "nft list tables"},
		{"Blackhole", func() error { return tp.Blackhole("eth-a", true) }, func() error { return tp.Blackhole("eth-a", false) }, tp.Client, "nft list tables"},
		{"Limit", func() error { return tp.Limit("eth-a", "100mbit", "50ms") }, func() error { return tp.Limit("eth-a", "", "") }, tp.Server, "tc qdisc show dev eth-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
