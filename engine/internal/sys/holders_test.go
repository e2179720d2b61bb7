package sys

import (
	"slices"
	"testing"
)

// TestParseUDPInodes reads /proc/net/udp and udp6 as the kernel writes
// them: the sockets bound to the port, of either family, connected or
// not; the header, other ports, short and garbled lines skipped.
func TestParseUDPInodes(t *testing.T) {
	udp := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:E6BA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41001 2 0000000000000000 0
  101: 0100007F:E6BA 0200A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 41002 2 0000000000000000 0
  102: 0100007F:E6BB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41003 2 0000000000000000 0
  103: 0100007F:ZZZZ 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41004 2 0000000000000000 0
  104: 0100007F:E6BA 00000000:0000 07
  105: 0100007F:E6BA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 notanumber 2 0000000000000000 0
`
	udp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  200: 00000000000000000000000000000000:E6BA 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 42001 2 0000000000000000 0
`
	if got, want := parseUDPInodes([]byte(udp), 0xE6BA), []uint64{41001, 41002}; !slices.Equal(got, want) {
		t.Errorf("udp: %v, want %v", got, want)
	}
	if got, want := parseUDPInodes([]byte(udp6), 0xE6BA), []uint64{42001}; !slices.Equal(got, want) {
		t.Errorf("udp6: %v, want %v", got, want)
	}
	if got := parseUDPInodes([]byte(udp), 1); len(got) != 0 {
		t.Errorf("port 1: %v, want none", got)
	}
}
