package topo

import (
	"fmt"
	"strings"
)

// LinkLossIngress is LossIngress on one link only: in each namespace it
// drops percent of the UDP datagrams arriving on link ("eth-a"), so that
// each direction of that link loses that share and the other links lose
// nothing. LinkLossIngress(link, 0) removes it.
func (t *Topo) LinkLossIngress(link string, percent int) error {
	// nft identifiers take letters, digits and underscores.
	table := "engarde_lossin_" + strings.ReplaceAll(link, "-", "_")
	for _, ns := range []string{t.Client, t.Server} {
		_ = t.NftRemove(ns, "inet", table) // absent unless set before
		if percent <= 0 {
			continue
		}
		rules := fmt.Sprintf("table inet %s {\n chain in {\n  type filter hook input priority 0; policy accept;\n"+
			"  iifname %q meta l4proto udp numgen random mod 100 < %d counter drop\n }\n}\n", table, link, percent)
		if err := t.Nft(ns, rules); err != nil {
			return err
		}
	}
	return nil
}
