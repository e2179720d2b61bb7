package sys

import (
	"bytes"
	"strconv"
)

// Holder is a process that holds a socket.
type Holder struct {
	PID  int
	Name string // the command name, /proc/PID/comm
}

// parseUDPInodes returns the inodes of the sockets that /proc/net/udp or
// /proc/net/udp6 (b) lists as bound to port: each line after the header
// is "sl local_address rem_address st tx_queue:rx_queue tr:tm->when
// retrnsmt uid timeout inode ...", the local address hex-encoded as
// ADDR:PORT (udp4_format_sock in net/ipv4/udp.c, udp6_seq_show in
// net/ipv6/datagram.c's ip6_dgram_sock_seq_show). Lines that do not parse
// are skipped.
func parseUDPInodes(b []byte, port uint16) []uint64 {
	var out []uint64
	for i, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if i == 0 || len(f) < 10 {
			continue
		}
		colon := bytes.LastIndexByte(f[1], ':')
		if colon < 0 {
			continue
		}
		p, err := strconv.ParseUint(string(f[1][colon+1:]), 16, 16)
		if err != nil || uint16(p) != port {
			continue
		}
		inode, err := strconv.ParseUint(string(f[9]), 10, 64)
		if err != nil || inode == 0 {
			continue
		}
		out = append(out, inode)
	}
	return out
}
