package topo

// This file holds a minimal DNS server for the fault matrix: it answers A
// and AAAA queries for a few names over UDP and can be told to stop
// answering, so that a client's lookups time out as they do when its
// resolver is unreachable.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// DNS header flags (RFC 1035, section 4.1.1).
const (
	dnsQR     = 1 << 15 // a response
	dnsAA     = 1 << 10 // authoritative
	dnsRD     = 1 << 8  // recursion desired, copied from the query
	dnsOpcode = 0xf << 11

	dnsNoError  = 0
	dnsFormErr  = 1
	dnsNXDomain = 3
	dnsNotImp   = 4

	dnsTypeA    = 1
	dnsTypeAAAA = 28
	dnsClassIN  = 1

	dnsHeaderLen = 12
	// dnsTTL is the TTL of every answer, in seconds: short, since the
	// names may change, though Go's resolver caches nothing itself.
	dnsTTL = 5
)

// DNS answers queries for Names on a UDP socket until it is closed.
type DNS struct {
	// Names maps a name (lower case, without the final dot) to its
	// addresses; A queries get its IPv4 ones, AAAA queries its IPv6 ones.
	Names map[string][]netip.Addr
	// Queries counts the queries received, Answered those answered and
	// Dropped those left unanswered while answering was off. Malformed
	// counts datagrams that were not a query it could parse.
	Queries, Answered, Dropped, Malformed atomic.Uint64
	// OnQuery, when set, is called for each query with its name, type
	// (1 for A, 28 for AAAA) and whether it was answered.
	OnQuery func(name string, qtype uint16, answered bool)

	pc      net.PacketConn
	silent  atomic.Bool // answering is off
	started atomic.Bool // Serve has been called
}

// NewDNS returns a server for names on pc, answering; Serve runs it.
func NewDNS(pc net.PacketConn, names map[string][]netip.Addr) *DNS {
	return &DNS{Names: names, pc: pc}
}

// Serve reads and answers queries until the socket is closed; it returns
// nil then.
func (d *DNS) Serve() error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("dns: Serve called twice")
	}
	buf := make([]byte, 1500)
	for {
		n, src, err := d.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		resp, name, qtype, ok := dnsAnswer(buf[:n], d.Names)
		if !ok {
			d.Malformed.Add(1)
			continue
		}
		d.Queries.Add(1)
		answered := !d.silent.Load()
		if answered {
			// A lost answer is what the client retries; nothing to
			// count beyond the query.
			_, _ = d.pc.WriteTo(resp, src)
			d.Answered.Add(1)
		} else {
			d.Dropped.Add(1)
		}
		if d.OnQuery != nil {
			d.OnQuery(name, qtype, answered)
		}
	}
}

// SetAnswering turns answering on or off: while off, queries are read,
// counted and dropped, so that the client's lookups time out.
func (d *DNS) SetAnswering(on bool) { d.silent.Store(!on) }

// Close closes the socket, which ends Serve.
func (d *DNS) Close() error { return d.pc.Close() }

// dnsAnswer parses a standard query with one question and builds its
// response from names: the addresses of the question's type, NOERROR with
// no answer for a known name and another type, NXDOMAIN for an unknown
// name, NOTIMP for another opcode. ok is false when q is not a query it
// can answer at all (too short, a response, no question); the datagram is
// then dropped. Additional records of the query (EDNS's OPT, which Go's
// resolver sends) are ignored: the response carries none.
func dnsAnswer(q []byte, names map[string][]netip.Addr) (resp []byte, name string, qtype uint16, ok bool) {
	if len(q) < dnsHeaderLen {
		return nil, "", 0, false
	}
	flags := binary.BigEndian.Uint16(q[2:])
	if flags&dnsQR != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil, "", 0, false
	}
	name, end, ok := dnsName(q, dnsHeaderLen)
	if !ok || end+4 > len(q) {
		return nil, "", 0, false
	}
	qtype = binary.BigEndian.Uint16(q[end:])
	qclass := binary.BigEndian.Uint16(q[end+2:])
	question := q[dnsHeaderLen : end+4]

	rcode := uint16(dnsNoError)
	var addrs []netip.Addr
	switch known, found := names[strings.ToLower(name)]; {
	case flags&dnsOpcode != 0:
		rcode = dnsNotImp
	case qclass != dnsClassIN:
		rcode = dnsFormErr
	case !found:
		rcode = dnsNXDomain
	default:
		for _, a := range known {
			if (qtype == dnsTypeA && a.Is4()) || (qtype == dnsTypeAAAA && a.Is6() && !a.Is4In6()) {
				addrs = append(addrs, a)
			}
		}
	}
	resp = make([]byte, dnsHeaderLen, dnsHeaderLen+len(question)+len(addrs)*28)
	copy(resp, q[:2]) // the query's ID
	binary.BigEndian.PutUint16(resp[2:], dnsQR|dnsAA|flags&(dnsOpcode|dnsRD)|rcode)
	binary.BigEndian.PutUint16(resp[4:], 1)
	binary.BigEndian.PutUint16(resp[6:], uint16(len(addrs)))
	resp = append(resp, question...)
	for _, a := range addrs {
		rdata := a.AsSlice()
		// The name is a pointer to the question's (RFC 1035, section
		// 4.1.4): 0xc000 | offset 12.
		resp = binary.BigEndian.AppendUint16(resp, 0xc000|dnsHeaderLen)
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, dnsClassIN)
		resp = binary.BigEndian.AppendUint32(resp, dnsTTL)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp, name, qtype, true
}

// dnsName decodes the uncompressed name at q[off:] (a question's, which
// has nothing to point back to) and returns it without the final dot, with
// the offset just past it.
func dnsName(q []byte, off int) (name string, end int, ok bool) {
	var b strings.Builder
	for {
		if off >= len(q) {
			return "", 0, false
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) || b.Len()+l+1 > 255 {
			return "", 0, false // a pointer, a reserved label type, or too long
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.Write(q[off : off+l])
		off += l
	}
	if b.Len() == 0 {
		return "", 0, false
	}
	return b.String(), off, true
}

// ResolvConf makes processes started in namespace ns with "ip netns exec"
// use the name server at server (an IPv4 or IPv6 address, port 53): ip
// netns exec bind-mounts each file of /etc/netns/<ns>/ over its namesake
// in /etc. It returns a function that removes the file and the directory.
func ResolvConf(ns string, server netip.Addr) (remove func(), err error) {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	remove = func() { _ = os.RemoveAll(dir) } // ours alone: the name is the namespace's
	// Defaults otherwise (a 5 s timeout, 2 attempts): the worst case a
	// client meets when the server does not answer.
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+server.String()+"\n"), 0o644); err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}
