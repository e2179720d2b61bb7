package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// The ping tool is ping(8) in Go, so that the session tests need no
// iputils (CI does not install it): ICMP echo requests from a raw socket
// (root), counted by sequence number.

// pingSpec is the ping tool's request.
type pingSpec struct {
	Dst      string        `json:"dst"`
	Count    int           `json:"count"`
	Interval time.Duration `json:"interval"`
	// Wait is how long a reply may take: after the last request, the
	// tool waits that long for the missing replies.
	Wait time.Duration `json:"wait"`
}

// pingResult is what the ping tool counted.
type pingResult struct {
	Sent     int `json:"sent"`
	Received int `json:"received"`
	// Duplicates are replies to a request already answered.
	Duplicates int `json:"duplicates"`
}

// Lost is the number of requests that got no reply.
func (r pingResult) Lost() int { return r.Sent - r.Received }

// echoPayload is the data of each echo request: ping(8)'s default 56
// bytes.
const echoPayload = 56

// echoRequest builds ICMP echo request seq of identifier id (RFC 792).
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+echoPayload)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(i)
	}
	binary.BigEndian.PutUint16(b[2:], icmpChecksum(b))
	return b
}

// icmpChecksum is the Internet checksum of b (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// echoReply returns the sequence number of an ICMP message (its IP header
// stripped) if it is an echo reply to identifier id.
func echoReply(b []byte, id uint16) (seq uint16, ok bool) {
	if len(b) < 8 || b[0] != 0 || b[1] != 0 || binary.BigEndian.Uint16(b[4:]) != id {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[6:]), true
}

func pingMain(in []byte) (any, error) {
	var spec pingSpec
	if err := json.Unmarshal(in, &spec); err != nil {
		return nil, err
	}
	dst, err := net.ResolveIPAddr("ip4", spec.Dst)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenIP("ip4:icmp", &net.IPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, fmt.Errorf("raw ICMP socket: %w", err)
	}
	defer c.Close()
	id := uint16(os.Getpid())
	var mu sync.Mutex
	var res pingResult
	got := make(map[uint16]bool, spec.Count)
	all := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(b)
			if err != nil {
				return // closed, or the deadline passed
			}
			seq, ok := echoReply(b[:n], id)
			if !ok || int(seq) >= spec.Count {
				continue
			}
			mu.Lock()
			if got[seq] {
				res.Duplicates++
			} else {
				got[seq] = true
				res.Received++
				if res.Received == spec.Count {
					close(all)
				}
			}
			mu.Unlock()
		}
	}()
	next := time.Now()
	for seq := range spec.Count {
		time.Sleep(time.Until(next))
		next = next.Add(spec.Interval)
		if _, err := c.WriteTo(echoRequest(id, uint16(seq)), dst); err != nil {
			return nil, fmt.Errorf("echo request %d: %w", seq, err)
		}
		mu.Lock()
		res.Sent++
		mu.Unlock()
	}
	select {
	case <-all:
	case <-time.After(spec.Wait):
	}
	c.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return res, nil
}
