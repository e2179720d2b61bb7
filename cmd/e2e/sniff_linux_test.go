package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// sniffMain is the sniff tool: a packet socket (packet(7), SOCK_DGRAM, so
// that each packet starts at its network header) on one interface sees
// every packet it sends and receives, as tcpdump would; it reports the
// latest receiver index and counter in each direction.
func sniffMain(in []byte) (any, error) {
	var spec sniffSpec
	if err := json.Unmarshal(in, &spec); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(spec.Iface)
	if err != nil {
		return nil, err
	}
	// Every protocol: a packet socket bound to one protocol sees only
	// what arrives, while the taps of every protocol see what leaves too
	// (net/core/dev.c: dev_queue_xmit_nit walks ptype_all only).
	proto := htons(syscall.ETH_P_ALL)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("binding to %s: %w", spec.Iface, err)
	}
	tv := syscall.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	var res sniffResult
	var toServer, toClient bool
	var both time.Time
	buf := make([]byte, 1<<16)
	for deadline := time.Now().Add(spec.Timeout); time.Now().Before(deadline); {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			return nil, err
		}
		if spec.Initiation {
			if w, ok := captureInitiation(buf[:n], spec.Port); ok {
				res.Initiation = append([]byte(nil), w...)
				res.Packets++
				return res, nil
			}
			continue
		}
		switch dir, s := parseCapture(buf[:n], spec.Port); dir {
		case dirToServer:
			observe(&res.ToServer, s)
			toServer = true
			res.Packets++
		case dirToClient:
			observe(&res.ToClient, s)
			toClient = true
			res.Packets++
		}
		if toServer && toClient {
			if both.IsZero() {
				both = time.Now()
			}
			if time.Since(both) >= spec.Watch {
				return res, nil
			}
		}
	}
	if spec.Initiation {
		return nil, fmt.Errorf("no handshake initiation on %s within %v", spec.Iface, spec.Timeout)
	}
	return nil, fmt.Errorf("no transport message in both directions on %s within %v: %+v", spec.Iface, spec.Timeout, res)
}

// htons converts a 16-bit value to network byte order (packet sockets
// take their protocol so).
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
