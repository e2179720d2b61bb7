package topo

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestParseNetDev(t *testing.T) {
	const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
 eth-a: 5638920   20531    0    0    0     0          0         0  5598732   20389    0    0    0     0       0          0
eth-b: 12 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0
`
	got, err := parseNetDev(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"lo": 10, "eth-a": 20531, "eth-b": 3}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d packets, want %d", k, got[k], v)
		}
	}
	if _, err := parseNetDev(bufio.NewScanner(strings.NewReader("eth-a: 12\n"))); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := parseNetDev(bufio.NewScanner(strings.NewReader("eth-a: 12 x\n"))); err == nil {
		t.Error("a bad count parsed")
	}
}

// TestRxPacketsSelf reads this process's own namespace, which has lo.
func TestRxPacketsSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/dev"); err != nil {
		t.Skip("no /proc/self/net/dev here")
	}
	got, err := RxPackets(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["lo"]; !ok {
		t.Errorf("no lo in %v", got)
	}
}
