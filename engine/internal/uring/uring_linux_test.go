package uring

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// needURing skips the test where io_uring is unavailable (an old kernel,
// the kernel.io_uring_disabled sysctl, a seccomp profile), saying why.
func needURing(t *testing.T) *Features {
	t.Helper()
	f, err := Probe()
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// udpPair returns a bound receiving socket, a sending socket and the
// receiver's address, all closed when the test ends.
func udpPair(t *testing.T) (rx, tx int, to unix.Sockaddr) {
	t.Helper()
	open := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	rx, tx = open(), open()
	if err := unix.Bind(rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	to, err := unix.Getsockname(rx)
	if err != nil {
		t.Fatal(err)
	}
	return rx, tx, to
}

func newTestRing(t *testing.T, entries, cq, flags uint32) *Ring {
	t.Helper()
	r, err := NewRing(entries, cq, flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waitCQEs waits until n completions are posted, for at most a second.
func waitCQEs(t *testing.T, r *Ring, n uint32) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for r.CQReady() < n && time.Now().Before(deadline) {
		if _, err := r.SubmitAndWaitTimeout(n-r.CQReady(), 50*time.Millisecond); err != nil && !errors.Is(err, unix.ETIME) && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
	}
	if r.CQReady() < n {
		t.Fatalf("%d completions after a second, want %d", r.CQReady(), n)
	}
}

func TestRingSetup(t *testing.T) {
	f := needURing(t)
	for _, tc := range []struct {
		name  string
		flags uint32
	}{
		{"plain", 0},
		{"coop-taskrun", SetupCoopTaskrun | SetupTaskrunFlag},
		{"submit-all", SetupSubmitAll},
		{"single-issuer", SetupSingleIssuer},
		{"defer-taskrun", SetupSingleIssuer | SetupDeferTaskrun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f.Flags&tc.flags != tc.flags {
				t.Skipf("skipping: kernel refuses setup flags %#x", tc.flags)
			}
			runtime.LockOSThread() // the single-issuer rings are this thread's
			defer runtime.UnlockOSThread()
			r := newTestRing(t, 5, 0, tc.flags) // rounded up to 8
			if r.Flags()&tc.flags != tc.flags {
				t.Errorf("flags %#x, want %#x set", r.Flags(), tc.flags)
			}
			if got := r.SQSpace(); got != 8 {
				t.Errorf("SQ space %d, want 8", got)
			}
			if r.CQEntries() != 16 {
				t.Errorf("CQ entries %d, want 16 (twice the SQ)", r.CQEntries())
			}
			r.GetSQE().PrepNop(7)
			waitCQEs(t, r, 1)
			if c := r.PeekCQE(); c.UserData != 7 || c.Res != 0 {
				t.Errorf("completion %+v, want user data 7, result 0", *c)
			}
			r.CQAdvance(1)
		})
	}
}

// TestRingSubmitComplete fills the submission queue, checks that it
// refuses more, and that every SQE completes once, in order.
func TestRingSubmitComplete(t *testing.T) {
	needURing(t)
	r := newTestRing(t, 8, 0, 0)
	for round := range 3 {
		for i := range 8 {
			s := r.GetSQE()
			if s == nil {
				t.Fatalf("round %d: queue full after %d SQEs", round, i)
			}
			s.PrepNop(uint64(round*100 + i))
		}
		if r.GetSQE() != nil {
			t.Fatal("GetSQE handed out a ninth SQE of eight")
		}
		n, err := r.SubmitAndWait(8)
		if err != nil || n != 8 {
			t.Fatalf("SubmitAndWait = %d, %v", n, err)
		}
		if r.CQReady() != 8 {
			t.Fatalf("%d completions ready, want 8", r.CQReady())
		}
		for i := range uint32(8) {
			if c := r.CQEAt(i); c.UserData != uint64(round*100)+uint64(i) {
				t.Errorf("completion %d has user data %d", i, c.UserData)
			}
		}
		r.CQAdvance(8)
		if r.PeekCQE() != nil {
			t.Fatal("completion left after advancing past all")
		}
	}
}

// recvRig is a multishot recvmsg on a loopback socket with nbuf buffers.
type recvRig struct {
	t     *testing.T
	r     *Ring
	br    *BufRing
	slab  []byte
	size  int
	hdr   sys.Mmsghdr
	rx    int
	tx    int
	to    unix.Sockaddr
	armed int
}

func newRecvRig(t *testing.T, r *Ring, nbuf int) *recvRig {
	rg := &recvRig{t: t, r: r, size: 256}
	rg.rx, rg.tx, rg.to = udpPair(t)
	br, err := r.RegisterBufRing(nbuf, 0)
	if err != nil {
		t.Fatal(err)
	}
	rg.br = br
	rg.slab, err = MapAnon(nbuf * rg.size)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the ring (registered earlier) closes
	// before the buffer ring and slab are unmapped.
	t.Cleanup(func() { Unmap(rg.slab) })
	t.Cleanup(func() { r.UnregisterBufRing(br) })
	for i := range nbuf {
		rg.recycle(uint16(i))
	}
	rg.br.Advance()
	SetRecvmsgSizes(&rg.hdr, sys.SizeofSockaddr, 0)
	rg.arm()
	return rg
}

func (rg *recvRig) recycle(bid uint16) {
	rg.br.Add(rg.slab[int(bid)*rg.size:(int(bid)+1)*rg.size], bid)
}

func (rg *recvRig) arm() {
	rg.r.GetSQE().PrepRecvmsgMultishot(rg.rx, &rg.hdr, 0, 0, 1)
	if _, err := rg.r.Submit(); err != nil {
		rg.t.Fatal(err)
	}
	rg.armed++
}

func (rg *recvRig) send(n int, base int) {
	for i := range n {
		if err := unix.Sendto(rg.tx, fmt.Appendf(nil, "dgram-%d", base+i), 0, rg.to); err != nil {
			rg.t.Fatal(err)
		}
	}
}

// take consumes one completion: its payload, whether the multishot goes
// on, and its error.
func (rg *recvRig) take() (payload string, bid uint16, more bool, err error) {
	c := rg.r.PeekCQE()
	if c == nil {
		rg.t.Fatal("no completion")
	}
	defer rg.r.CQAdvance(1)
	more = c.More()
	if c.Res < 0 {
		return "", 0, more, c.Err()
	}
	bid, ok := c.Buffer()
	if !ok {
		rg.t.Fatal("receive completion without a buffer")
	}
	name, _, p, trunc, ok := ParseRecvmsgOut(rg.slab[int(bid)*rg.size:(int(bid)+1)*rg.size], int(c.Res), sys.SizeofSockaddr, 0)
	if !ok || trunc || name == nil || sys.ParseSockaddr(name).Addr().String() != "127.0.0.1" {
		rg.t.Fatalf("bad recvmsg buffer: ok %v truncated %v name %v", ok, trunc, name)
	}
	return string(p), bid, more, nil
}

// TestBufRingRecycle receives five rounds of four datagrams through a
// ring of eight buffers, handing each buffer back after use, with one
// multishot recvmsg. (The ring must not run dry: for UDP the kernel tries
// another receive after each datagram, and an empty ring ends the
// multishot with ENOBUFS; TestMultishotRearm covers that.)
func TestBufRingRecycle(t *testing.T) {
	needURing(t)
	r := newTestRing(t, 4, 16, 0)
	rg := newRecvRig(t, r, 8)
	seq := 0
	for round := range 5 {
		rg.send(4, seq)
		waitCQEs(t, r, 4)
		for range 4 {
			p, bid, more, err := rg.take()
			if err != nil || !more {
				t.Fatalf("round %d: err %v more %v", round, err, more)
			}
			if want := fmt.Sprintf("dgram-%d", seq); p != want {
				t.Errorf("round %d: got %q, want %q", round, p, want)
			}
			seq++
			rg.recycle(bid)
		}
		rg.br.Advance()
	}
	if rg.armed != 1 {
		t.Errorf("armed %d times, want once", rg.armed)
	}
}

// TestMultishotRearm runs the buffer ring dry: the multishot recvmsg ends
// with ENOBUFS and without IORING_CQE_F_MORE, the datagram that did not
// fit waits in the socket, and a new recvmsg armed after recycling gets it.
func TestMultishotRearm(t *testing.T) {
	needURing(t)
	r := newTestRing(t, 4, 16, 0)
	rg := newRecvRig(t, r, 4)
	rg.send(5, 0)
	waitCQEs(t, r, 5)
	var bids []uint16
	for i := range 4 {
		p, bid, more, err := rg.take()
		if err != nil || !more || p != fmt.Sprintf("dgram-%d", i) {
			t.Fatalf("datagram %d: %q more %v err %v", i, p, more, err)
		}
		bids = append(bids, bid)
	}
	if _, _, more, err := rg.take(); !errors.Is(err, unix.ENOBUFS) || more {
		t.Fatalf("with no buffer left: err %v more %v, want ENOBUFS and the end", err, more)
	}
	for _, b := range bids {
		rg.recycle(b)
	}
	rg.br.Advance()
	rg.arm()
	waitCQEs(t, r, 1)
	if p, _, more, err := rg.take(); p != "dgram-4" || !more || err != nil {
		t.Fatalf("after re-arming: %q more %v err %v, want dgram-4", p, more, err)
	}
}

// TestCQOverflow posts more completions than the completion queue holds:
// the kernel keeps the overflow (IORING_FEAT_NODROP), flags it, and posts
// it once there is room; a multishot recvmsg that cannot post ends, and
// re-arming it loses no datagram.
func TestCQOverflow(t *testing.T) {
	needURing(t)
	t.Run("nop", func(t *testing.T) {
		r := newTestRing(t, 4, 4, 0)
		if r.Features()&FeatNoDrop == 0 {
			t.Skip("skipping: kernel drops overflowing completions (no IORING_FEAT_NODROP)")
		}
		for round := range 3 {
			for i := range 4 {
				r.GetSQE().PrepNop(uint64(round*4 + i))
			}
			if _, err := r.Submit(); err != nil {
				t.Fatal(err)
			}
		}
		if !r.CQOverflow() {
			t.Fatal("12 completions in a queue of 4, and no overflow flagged")
		}
		next := uint64(0)
		for next < 12 {
			if r.CQReady() == 0 {
				if err := r.GetEvents(); err != nil { // flushes the overflow
					t.Fatal(err)
				}
				if r.CQReady() == 0 {
					t.Fatalf("overflow lost after %d completions", next)
				}
			}
			if c := r.PeekCQE(); c.UserData != next {
				t.Fatalf("completion %d has user data %d", next, c.UserData)
			}
			r.CQAdvance(1)
			next++
		}
		if r.CQOverflow() || r.CQDropped() != 0 {
			t.Errorf("after draining: overflow %v, dropped %d", r.CQOverflow(), r.CQDropped())
		}
	})
	t.Run("multishot", func(t *testing.T) {
		r := newTestRing(t, 4, 4, 0)
		rg := newRecvRig(t, r, 16)
		const total = 12
		rg.send(total, 0)
		got := map[string]bool{}
		ended := 0
		deadline := time.Now().Add(2 * time.Second)
		for len(got) < total && time.Now().Before(deadline) {
			_, err := r.SubmitAndWaitTimeout(1, 50*time.Millisecond)
			if err != nil && !errors.Is(err, unix.ETIME) && !errors.Is(err, unix.EINTR) {
				t.Fatal(err)
			}
			rearm := false
			for r.CQReady() > 0 {
				p, bid, more, err := rg.take()
				if err == nil {
					got[p] = true
					rg.recycle(bid)
				}
				if !more {
					ended++
					rearm = true
				}
			}
			rg.br.Advance()
			if rearm {
				rg.arm()
			}
		}
		if len(got) != total {
			t.Fatalf("received %d distinct datagrams of %d", len(got), total)
		}
		t.Logf("multishot ended %d times, armed %d times", ended, rg.armed)
		if r.CQDropped() != 0 {
			t.Errorf("%d completions dropped", r.CQDropped())
		}
	})
}

func TestProbeFindsFlags(t *testing.T) {
	f := needURing(t)
	t.Logf("setup flags %#x, features %#x, send_zc %v", f.Flags, f.Features, f.SendZC)
	if f.Features&FeatExtArg == 0 {
		t.Error("probe passed without IORING_FEAT_EXT_ARG")
	}
}
