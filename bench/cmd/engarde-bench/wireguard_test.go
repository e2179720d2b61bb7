package main

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestParseIperf(t *testing.T) {
	b, err := os.ReadFile("testdata/iperf3.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseIperf(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.End.SumReceived.BitsPerSecond != 1621513546 || r.End.SumSent.Retransmits != 12 || r.End.CPU.HostTotal != 7.5 || r.End.CPU.RemoteTotal != 3.25 {
		t.Errorf("parsed %+v", r.End)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"not JSON", "iperf3: error - unable to connect", "iperf3 output"},
		{"iperf3's error", `{"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}`, "Connection refused"},
		{"nothing received", `{"end": {"sum_sent": {"bits_per_second": 1}}}`, "nothing received"},
	} {
		if _, err := parseIperf([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestWireGuardSummary(t *testing.T) {
	r := &WireGuardResult{Runs: []IperfRun{
		{Path: "wireguard", Gbps: 1.6, Retransmits: 0, CPU: map[string]float64{"wireguard-go client": 90, "wireguard-go server": 95}, IperfHostCPU: 5, IperfRemoteCPU: 5},
		{Path: "wireguard over engarde/mmsg", Gbps: 0.4, Retransmits: 90, CPU: map[string]float64{"wireguard-go client": 30, "wireguard-go server": 30, "engarde-client": 50, "engarde-server": 20}},
		{Path: "wireguard", Gbps: 1.2, Retransmits: 2, CPU: map[string]float64{"wireguard-go client": 80, "wireguard-go server": 85}},
		{Path: "wireguard over engarde/mmsg", Error: "iperf3: timeout"},
		{Path: "wireguard over engarde/mmsg, eth-b down", Gbps: 0.5, Retransmits: 3},
		{Path: "p", Config: wgOne, Gbps: 0.7, Retransmits: 5},
	}}
	r.summarize()
	if r.OneLinkGbps != 0.6 || r.OneLinkRetransmits != 4 || math.Abs(float64(r.BothOverOne)-0.4/0.6) > 1e-9 {
		t.Errorf("one link: %v Gbit/s (%v retr), both over one %v; want 0.6, 4, 0.667", r.OneLinkGbps, r.OneLinkRetransmits, r.BothOverOne)
	}
	if r.AloneGbps != 1.4 || r.EngardeGbps != 0.4 || r.EngardeRetransmits != 90 || r.AloneRetransmits != 1 {
		t.Errorf("medians: alone %v Gbit/s (%v retr), engarde %v Gbit/s (%v retr)", r.AloneGbps, r.AloneRetransmits, r.EngardeGbps, r.EngardeRetransmits)
	}
	if got := float64(r.Ratio); got < 0.285 || got > 0.286 {
		t.Errorf("ratio %v, want 0.4/1.4", got)
	}
	notes := strings.Join(r.Notes, "\n")
	if !strings.Contains(notes, "engarde-client 50%") || !strings.Contains(notes, "only the first copy") {
		t.Errorf("notes lack the CPU figures or the duplicate filter:\n%s", notes)
	}
}

func TestLimitNote(t *testing.T) {
	for _, tc := range []struct {
		busy, retr, alone float64
		want              string
	}{
		{190, 0, 0, "CPU-bound"},
		{120, 90, 1, "back off"},
		{120, 3, 1, "wake-ups"},
		{0, 0, 0, "not measured"},
	} {
		if got := limitNote("x", tc.busy, 200, tc.retr, tc.alone); !strings.Contains(got, tc.want) {
			t.Errorf("limitNote(busy %v, retr %v, alone %v) = %q, want it to say %q", tc.busy, tc.retr, tc.alone, got, tc.want)
		}
	}
}

func TestFirstLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"line one\nline two", 40, "line one…"},
		{"0123456789abc", 10, "0123456789…"},
		{"µµµµµµ", 5, "µµ…"}, // cut at a rune boundary
	} {
		if got := firstLine(tc.in, tc.n); got != tc.want {
			t.Errorf("firstLine(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
