package topo

import (
	"strings"
	"testing"
)

func TestTunnelConfigVia(t *testing.T) {
	c := TunnelConfig{Via: map[int]string{2: "198.18.2.1:59403"}}
	if got := c.LinkDst(2); got != "198.18.2.1:59403" {
		t.Errorf("LinkDst(2) = %s, want the relay", got)
	}
	if got := c.ServerDstOf(2); got != "198.18.2.1:59402" {
		t.Errorf("ServerDstOf(2) = %s, want engarde-server's address", got)
	}
	y := c.YAML()
	if !strings.Contains(y, "ifName: eth-b\n      dstAddr: \"198.18.2.1:59403\"") || !strings.Contains(y, "dstAddr: \"198.18.1.1:59402\"") {
		t.Errorf("configuration does not send eth-b to the relay and eth-a to the server:\n%s", y)
	}
	if strings.Count(y, "59403") != 1 {
		t.Errorf("the relay appears other than once:\n%s", y)
	}
}

func TestCountLog(t *testing.T) {
	p := &Proc{Stderr: &SafeBuffer{}}
	p.Stderr.Write([]byte("link eth-b up: a -> x\nlink eth-a up: b -> x\nlink eth-b up: c -> y\n"))
	if n := p.CountLog("link eth-b up: ", "-> x"); n != 1 {
		t.Errorf("CountLog = %d, want 1", n)
	}
	if n := p.CountLog("link eth-b up: "); n != 2 {
		t.Errorf("CountLog = %d, want 2", n)
	}
}
