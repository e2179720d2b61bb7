package uring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/engarde-project/engarde/engine/internal/sys"
)

// io_uring_setup(2) flags.
const (
	SetupCQSize       = 1 << 3  // IORING_SETUP_CQSIZE: Params.CQEntries sizes the completion queue
	SetupSubmitAll    = 1 << 7  // IORING_SETUP_SUBMIT_ALL: go on submitting after an SQE fails
	SetupCoopTaskrun  = 1 << 8  // IORING_SETUP_COOP_TASKRUN: no interrupt to run completions
	SetupTaskrunFlag  = 1 << 9  // IORING_SETUP_TASKRUN_FLAG: flag pending completion work in the SQ ring
	SetupSingleIssuer = 1 << 12 // IORING_SETUP_SINGLE_ISSUER: one thread submits
	SetupDeferTaskrun = 1 << 13 // IORING_SETUP_DEFER_TASKRUN: run completion work only in io_uring_enter
)

// io_uring_params.features bits.
const (
	FeatSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	FeatNoDrop     = 1 << 1 // IORING_FEAT_NODROP: overflowing CQEs are kept, not dropped
	FeatFastPoll   = 1 << 5 // IORING_FEAT_FAST_POLL
	FeatExtArg     = 1 << 8 // IORING_FEAT_EXT_ARG: io_uring_enter takes a timeout
)

// Opcodes (enum io_uring_op).
const (
	OpNop         = 0  // IORING_OP_NOP
	OpPollAdd     = 6  // IORING_OP_POLL_ADD
	OpSendmsg     = 9  // IORING_OP_SENDMSG
	OpRecvmsg     = 10 // IORING_OP_RECVMSG
	OpAsyncCancel = 14 // IORING_OP_ASYNC_CANCEL
	OpSendZC      = 47 // IORING_OP_SEND_ZC
)

// SQE flags (IOSQE_*).
const (
	SQELink         = 1 << 2 // IOSQE_IO_LINK: the next SQE runs only if this one succeeds
	SQEBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT: take a buffer from a provided-buffer ring
)

// CQE flags (IORING_CQE_F_*).
const (
	CQEFBuffer     = 1 << 0 // IORING_CQE_F_BUFFER: the upper 16 bits name the buffer used
	CQEFMore       = 1 << 1 // IORING_CQE_F_MORE: a multishot request goes on
	cqeBufferShift = 16
)

const (
	recvMultishot  = 1 << 1     // IORING_RECV_MULTISHOT, in sqe->ioprio
	pollAddMulti   = 1 << 0     // IORING_POLL_ADD_MULTI, in sqe->len
	asyncCancelAll = 1 << 0     // IORING_ASYNC_CANCEL_ALL
	enterGetEvents = 1 << 0     // IORING_ENTER_GETEVENTS
	enterExtArg    = 1 << 3     // IORING_ENTER_EXT_ARG
	sqCQOverflow   = 1 << 1     // IORING_SQ_CQ_OVERFLOW
	offSQRing      = 0          // IORING_OFF_SQ_RING
	offCQRing      = 0x8000000  // IORING_OFF_CQ_RING
	offSQEs        = 0x10000000 // IORING_OFF_SQES
	registerProbe  = 8          // IORING_REGISTER_PROBE
	registerPbuf   = 22         // IORING_REGISTER_PBUF_RING
	unregisterPbuf = 23         // IORING_UNREGISTER_PBUF_RING
	opSupported    = 1 << 0     // IO_URING_OP_SUPPORTED
)

// SQE is struct io_uring_sqe, a submission queue entry.
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // msg_flags, poll32_events, cancel_flags...
	UserData    uint64
	BufIndex    uint16 // buf_index or buf_group
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe, a completion queue entry.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// More reports whether a multishot request stays armed after this
// completion (IORING_CQE_F_MORE).
func (c *CQE) More() bool { return c.Flags&CQEFMore != 0 }

// Buffer returns the provided buffer the completion used, if any.
func (c *CQE) Buffer() (bid uint16, ok bool) {
	return uint16(c.Flags >> cqeBufferShift), c.Flags&CQEFBuffer != 0
}

// Err returns the completion's error: nil when Res >= 0, the errno
// otherwise.
func (c *CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return syscall.Errno(-c.Res)
}

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// params is struct io_uring_params.
type params struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqringOffsets
	CQOff                                                                  cqringOffsets
}

// Ring is one io_uring instance with its submission and completion queues
// mapped into our memory. A Ring is not safe for concurrent use: one
// goroutine submits and reaps at a time, and with SetupSingleIssuer it must
// stay on the OS thread that created the ring (runtime.LockOSThread).
type Ring struct {
	fd       int
	flags    uint32
	features uint32

	sqMem, cqMem, sqeMem []byte

	// Shared indices, in the mapped rings.
	sqHead, sqTail, sqFlags *uint32
	cqHead, cqTail          *uint32
	cqOverflow              *uint32
	sqMask, sqEntries       uint32
	cqMask, cqEntries       uint32
	sqes                    []SQE
	cqes                    []CQE

	// sqeTail counts SQEs handed out by GetSQE; the shared tail catches
	// up when they are submitted.
	sqeTail uint32
}

// NewRing sets up a ring with room for entries submissions (rounded up to
// a power of two) and, when cqEntries is not zero, cqEntries completions
// (SetupCQSize is then implied); flags are io_uring_setup(2) flags. It
// stands for liburing's io_uring_queue_init_params. An error from the
// kernel is returned as is (wrapped with the call's name), so that callers
// can tell EINVAL (an unknown flag) from EPERM (io_uring switched off).
func NewRing(entries, cqEntries, flags uint32) (*Ring, error) {
	p := params{Flags: flags}
	if cqEntries > 0 {
		p.Flags |= SetupCQSize
		p.CQEntries = cqEntries
	}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, os.NewSyscallError("io_uring_setup", e)
	}
	r := &Ring{fd: int(fd), flags: p.Flags, features: p.Features}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// mmap maps the rings (liburing's io_uring_queue_mmap).
func (r *Ring) mmap(p *params) error {
	sqSize := int(p.SQOff.Array + p.SQEntries*4)
	cqSize := int(p.CQOff.Cqes + p.CQEntries*uint32(unsafe.Sizeof(CQE{})))
	single := p.Features&FeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return os.NewSyscallError("mmap io_uring SQ ring", err)
	}
	if single {
		r.cqMem = r.sqMem
	} else {
		r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return os.NewSyscallError("mmap io_uring CQ ring", err)
		}
	}
	sqeSize := int(p.SQEntries) * int(unsafe.Sizeof(SQE{}))
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return os.NewSyscallError("mmap io_uring SQEs", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.SQOff.Head)
	r.sqTail = u32(r.sqMem, p.SQOff.Tail)
	r.sqFlags = u32(r.sqMem, p.SQOff.Flags)
	r.sqMask = *u32(r.sqMem, p.SQOff.RingMask)
	r.sqEntries = *u32(r.sqMem, p.SQOff.RingEntries)
	r.cqHead = u32(r.cqMem, p.CQOff.Head)
	r.cqTail = u32(r.cqMem, p.CQOff.Tail)
	r.cqOverflow = u32(r.cqMem, p.CQOff.Overflow)
	r.cqMask = *u32(r.cqMem, p.CQOff.RingMask)
	r.cqEntries = *u32(r.cqMem, p.CQOff.RingEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.cqMem[p.CQOff.Cqes])), r.cqEntries)
	// Map SQ slot i to SQE i once, as liburing does: submission then only
	// moves the tail.
	array := unsafe.Slice(u32(r.sqMem, p.SQOff.Array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return nil
}

// Close unmaps the rings and closes the ring's descriptor (liburing's
// io_uring_queue_exit). The kernel cancels what is still in flight; with
// SetupDeferTaskrun none of it touches user memory afterwards, since that
// work runs only inside io_uring_enter and is cancelled once the ring is
// going away (io_should_terminate_tw in the kernel).
func (r *Ring) Close() error {
	var errs []error
	if r.sqeMem != nil {
		errs = append(errs, unix.Munmap(r.sqeMem))
	}
	if r.cqMem != nil && unsafe.SliceData(r.cqMem) != unsafe.SliceData(r.sqMem) {
		errs = append(errs, unix.Munmap(r.cqMem))
	}
	if r.sqMem != nil {
		errs = append(errs, unix.Munmap(r.sqMem))
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	if r.fd >= 0 {
		errs = append(errs, unix.Close(r.fd))
		r.fd = -1
	}
	return errors.Join(errs...)
}

// Fd returns the ring's file descriptor.
func (r *Ring) Fd() int { return r.fd }

// Flags returns the setup flags in effect.
func (r *Ring) Flags() uint32 { return r.flags }

// Features returns the IORING_FEAT_* bits the kernel reported.
func (r *Ring) Features() uint32 { return r.features }

// CQEntries returns the size of the completion queue.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// GetSQE returns a zeroed submission queue entry to fill, or nil when the
// queue is full (liburing's io_uring_get_sqe). The entry goes to the kernel
// at the next Submit.
func (r *Ring) GetSQE() *SQE {
	// Acquire: the kernel advances the head once it has read the entries
	// before it; only then may they be reused.
	head := atomic.LoadUint32(r.sqHead)
	if r.sqeTail-head >= r.sqEntries {
		return nil
	}
	sqe := &r.sqes[r.sqeTail&r.sqMask]
	r.sqeTail++
	*sqe = SQE{}
	return sqe
}

// SQSpace returns how many more SQEs GetSQE can hand out now (liburing's
// io_uring_sq_space_left).
func (r *Ring) SQSpace() int {
	return int(r.sqEntries - (r.sqeTail - atomic.LoadUint32(r.sqHead)))
}

// flushSQ publishes the SQEs handed out since the last flush and returns
// how many the kernel has yet to consume (liburing's __io_uring_flush_sq).
func (r *Ring) flushSQ() uint32 {
	// Release: the SQE contents must be visible to the kernel before the
	// tail that hands them over.
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	return r.sqeTail - atomic.LoadUint32(r.sqHead)
}

// Submit hands the prepared SQEs to the kernel without waiting (liburing's
// io_uring_submit) and returns how many it took.
func (r *Ring) Submit() (int, error) { return r.enter(r.flushSQ(), 0, 0, nil, false) }

// SubmitAndWait submits and waits until at least wait completions are
// available (liburing's io_uring_submit_and_wait). The wait may block the
// calling thread in the kernel.
func (r *Ring) SubmitAndWait(wait uint32) (int, error) {
	return r.enter(r.flushSQ(), wait, enterGetEvents, nil, false)
}

// SubmitAndReap submits and lets the kernel post every completion that is
// already due, waiting for at least wait of them, for operations that
// complete during submission (non-blocking sends). It is
// io_uring_submit_and_wait made as a raw system call, which does not tell
// the Go scheduler that the thread might block: the caller must know that
// it will not.
func (r *Ring) SubmitAndReap(wait uint32) (int, error) {
	return r.enter(r.flushSQ(), wait, enterGetEvents, nil, true)
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// SubmitAndWaitTimeout is SubmitAndWait bounded by d (liburing's
// io_uring_submit_and_wait_timeout; needs FeatExtArg, Linux 5.11). It
// returns ETIME, wrapped, when d passes first.
func (r *Ring) SubmitAndWaitTimeout(wait uint32, d time.Duration) (int, error) {
	ts := unix.NsecToTimespec(int64(d))
	arg := getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&ts)))}
	n, err := r.enter(r.flushSQ(), wait, enterGetEvents|enterExtArg, &arg, false)
	runtime.KeepAlive(&ts)
	return n, err
}

// SubmitAndWaitHeld is SubmitAndWaitTimeout made as a raw system call: the
// calling goroutine keeps its Go processor while the thread waits in the
// kernel, so that a completion wakes this thread alone, with no hand-over
// of the processor to another thread and back. Nothing else runs on that
// processor meanwhile, and the runtime cannot preempt a goroutine inside a
// system call, so the caller bounds d to what it may hold the processor
// for, and yields between waits.
func (r *Ring) SubmitAndWaitHeld(wait uint32, d time.Duration) (int, error) {
	ts := unix.NsecToTimespec(int64(d))
	arg := getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&ts)))}
	n, err := r.enter(r.flushSQ(), wait, enterGetEvents|enterExtArg, &arg, true)
	runtime.KeepAlive(&ts)
	return n, err
}

// GetEvents runs the completion work the kernel has pending for this ring
// and posts its completions, without waiting for more (io_uring_enter with
// IORING_ENTER_GETEVENTS and no minimum, as liburing's io_uring_get_events).
// A ring with SetupDeferTaskrun needs it: its completions are posted only
// inside io_uring_enter.
func (r *Ring) GetEvents() error {
	_, err := r.enter(r.flushSQ(), 0, enterGetEvents, nil, true)
	return err
}

func (r *Ring) enter(submit, wait, flags uint32, arg *getEventsArg, raw bool) (int, error) {
	var argp, argsz uintptr
	if arg != nil {
		argp, argsz = uintptr(unsafe.Pointer(arg)), unsafe.Sizeof(*arg)
	}
	var n uintptr
	var e syscall.Errno
	if raw {
		n, _, e = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), uintptr(wait), uintptr(flags), argp, argsz)
	} else {
		n, _, e = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), uintptr(wait), uintptr(flags), argp, argsz)
	}
	if e != 0 {
		return 0, os.NewSyscallError("io_uring_enter", e)
	}
	return int(n), nil
}

// PeekCQE returns the oldest completion without consuming it, or nil when
// there is none (liburing's io_uring_peek_cqe, without entering the
// kernel).
func (r *Ring) PeekCQE() *CQE {
	head := *r.cqHead // only we write the head
	// Acquire: the kernel writes a CQE before publishing the tail that
	// covers it.
	if head == atomic.LoadUint32(r.cqTail) {
		return nil
	}
	return &r.cqes[head&r.cqMask]
}

// CQReady returns how many completions are waiting (liburing's
// io_uring_cq_ready).
func (r *Ring) CQReady() uint32 {
	return atomic.LoadUint32(r.cqTail) - *r.cqHead
}

// CQEAt returns the i-th waiting completion, i < CQReady(), without
// consuming it (the loop body of liburing's io_uring_for_each_cqe).
func (r *Ring) CQEAt(i uint32) *CQE { return &r.cqes[(*r.cqHead+i)&r.cqMask] }

// CQAdvance consumes n completions (liburing's io_uring_cq_advance).
func (r *Ring) CQAdvance(n uint32) {
	// Release: we are done reading the CQEs before the kernel may
	// overwrite them.
	atomic.StoreUint32(r.cqHead, *r.cqHead+n)
}

// CQOverflow reports whether completions are waiting in the kernel because
// the completion queue was full (IORING_SQ_CQ_OVERFLOW; liburing's
// io_uring_cq_has_overflow). With FeatNoDrop they are kept and posted by
// the next io_uring_enter with GETEVENTS once there is room.
func (r *Ring) CQOverflow() bool { return atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 }

// CQDropped returns how many completions the kernel dropped for want of
// room (without FeatNoDrop, or when it ran out of memory).
func (r *Ring) CQDropped() uint32 { return atomic.LoadUint32(r.cqOverflow) }

func (r *Ring) register(op uint32, arg unsafe.Pointer, n uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uintptr(op), uintptr(arg), uintptr(n), 0, 0)
	if e != 0 {
		return os.NewSyscallError("io_uring_register", e)
	}
	return nil
}

// probeOps is the number of opcodes a probe asks about.
const probeOps = 64

type opProbeArg struct {
	LastOp, OpsLen uint8
	_              uint16
	_              [3]uint32
	Ops            [probeOps]struct {
		Op    uint8
		_     uint8
		Flags uint16
		_     uint32
	}
}

// OpProbe lists the opcodes the kernel supports (liburing's
// io_uring_get_probe_ring, IORING_REGISTER_PROBE; Linux 5.6).
type OpProbe struct{ p opProbeArg }

// RegisterProbe asks the kernel which opcodes it supports.
func (r *Ring) RegisterProbe() (*OpProbe, error) {
	pr := new(OpProbe)
	if err := r.register(registerProbe, unsafe.Pointer(&pr.p), probeOps); err != nil {
		return nil, err
	}
	return pr, nil
}

// Supports reports whether op is supported (liburing's
// io_uring_opcode_supported).
func (p *OpProbe) Supports(op uint8) bool {
	return op <= p.p.LastOp && int(op) < probeOps && p.p.Ops[op].Flags&opSupported != 0
}

// BufRing is a provided-buffer ring: buffers the kernel picks from when a
// receive asks for buffer selection (IORING_REGISTER_PBUF_RING, Linux
// 5.19). We add buffers at the tail; the kernel consumes them from the
// head and names the one it used in each completion.
type BufRing struct {
	mem     []byte // struct io_uring_buf_ring, page-aligned
	bufs    []bufDesc
	mask    uint16
	tail    uint16 // local tail; published by Advance
	pending uint16 // added since the last Advance
	bgid    uint16
}

// bufDesc is struct io_uring_buf.
type bufDesc struct {
	Addr uint64
	Len  uint32
	Bid  uint16
	Resv uint16 // the first entry's holds the ring's tail
}

type bufReg struct {
	RingAddr    uint64
	RingEntries uint32
	Bgid        uint16
	Flags       uint16
	_           [3]uint64
}

// RegisterBufRing maps a buffer ring of entries slots (a power of two, at
// most 32768) and registers it as buffer group bgid (liburing's
// io_uring_setup_buf_ring). It starts empty.
func (r *Ring) RegisterBufRing(entries int, bgid uint16) (*BufRing, error) {
	if entries <= 0 || entries > 1<<15 || entries&(entries-1) != 0 {
		return nil, fmt.Errorf("io_uring: buffer ring size %d not a power of two up to 32768", entries)
	}
	size := entries * int(unsafe.Sizeof(bufDesc{}))
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap buffer ring", err)
	}
	reg := bufReg{RingAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), RingEntries: uint32(entries), Bgid: bgid}
	if err := r.register(registerPbuf, unsafe.Pointer(&reg), 1); err != nil {
		unix.Munmap(mem)
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: provided-buffer rings (Linux 5.19)", ErrUnsupported)
		}
		return nil, err
	}
	b := &BufRing{mem: mem, mask: uint16(entries - 1), bgid: bgid}
	b.bufs = unsafe.Slice((*bufDesc)(unsafe.Pointer(&mem[0])), entries)
	return b, nil
}

// Add puts buf in the ring as buffer bid (liburing's
// io_uring_buf_ring_add); the kernel sees it after Advance. The memory
// must stay mapped and untouched by us until a completion hands it back.
func (b *BufRing) Add(buf []byte, bid uint16) {
	d := &b.bufs[(b.tail+b.pending)&b.mask]
	d.Addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	d.Len = uint32(len(buf))
	d.Bid = bid
	b.pending++
}

// Advance publishes the buffers added since the last Advance (liburing's
// io_uring_buf_ring_advance).
func (b *BufRing) Advance() {
	b.tail += b.pending
	b.pending = 0
	// Release: the descriptors must be visible before the tail that hands
	// them to the kernel, which reads it with smp_load_acquire. There is
	// no 16-bit atomic in Go; the tail is the upper half of an aligned
	// 32-bit word whose lower half (the first descriptor's bid) only we
	// write, so a 32-bit atomic store of both halves is equivalent.
	w := (*uint32)(unsafe.Pointer(&b.bufs[0].Bid))
	bid0 := uint32(b.bufs[0].Bid)
	if nativeLittleEndian {
		atomic.StoreUint32(w, bid0|uint32(b.tail)<<16)
	} else {
		atomic.StoreUint32(w, bid0<<16|uint32(b.tail))
	}
}

var nativeLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// UnregisterBufRing unregisters and unmaps b (liburing's
// io_uring_free_buf_ring).
func (r *Ring) UnregisterBufRing(b *BufRing) error {
	reg := bufReg{Bgid: b.bgid}
	err := r.register(unregisterPbuf, unsafe.Pointer(&reg), 1)
	return errors.Join(err, b.free())
}

func (b *BufRing) free() error {
	if b.mem == nil {
		return nil
	}
	err := unix.Munmap(b.mem)
	b.mem, b.bufs = nil, nil
	return err
}

// Free unmaps a buffer ring whose Ring is already closed (closing a ring
// unregisters its buffer rings).
func (b *BufRing) Free() error { return b.free() }

// PrepNop makes s a no-op (liburing's io_uring_prep_nop).
func (s *SQE) PrepNop(userData uint64) {
	s.Opcode = OpNop
	s.UserData = userData
}

// PrepSendmsg makes s a sendmsg(2) of h's message on fd with flags
// (liburing's io_uring_prep_sendmsg). The kernel reads the header, its
// iovecs, name and control data while the call that submits s runs, and
// the payload until s completes.
func (s *SQE) PrepSendmsg(fd int, h *sys.Mmsghdr, flags uint32, userData uint64) {
	s.Opcode = OpSendmsg
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(unsafe.Pointer(&h.Hdr)))
	s.Len = 1
	s.OpFlags = flags
	s.UserData = userData
}

// PrepRecvmsgMultishot makes s a multishot recvmsg(2) on fd into buffers of
// group bgid (liburing's io_uring_prep_recvmsg_multishot with
// IOSQE_BUFFER_SELECT; Linux 6.0). h gives only the sizes of the name and
// control areas: each completion's buffer starts with a RecvmsgOut header,
// then the name, the control data and the payload (see ParseRecvmsgOut).
// It stays armed while completions carry CQEFMore.
func (s *SQE) PrepRecvmsgMultishot(fd int, h *sys.Mmsghdr, flags uint32, bgid uint16, userData uint64) {
	s.Opcode = OpRecvmsg
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(unsafe.Pointer(&h.Hdr)))
	s.Len = 1
	s.OpFlags = flags
	s.Ioprio = recvMultishot
	s.Flags = SQEBufferSelect
	s.BufIndex = bgid
	s.UserData = userData
}

// PrepPollMultishot makes s a multishot poll of fd for events (liburing's
// io_uring_prep_poll_multishot).
func (s *SQE) PrepPollMultishot(fd int, events uint32, userData uint64) {
	s.Opcode = OpPollAdd
	s.Fd = int32(fd)
	s.OpFlags = events
	s.Len = pollAddMulti
	s.UserData = userData
}

// PrepCancel makes s cancel the requests submitted with userData
// (liburing's io_uring_prep_cancel64), all of them when all is set.
func (s *SQE) PrepCancel(userData uint64, all bool, tag uint64) {
	s.Opcode = OpAsyncCancel
	s.Fd = -1
	s.Addr = userData
	if all {
		s.OpFlags = asyncCancelAll
	}
	s.UserData = tag
}

// RecvmsgOut is struct io_uring_recvmsg_out, the header a multishot
// recvmsg writes at the start of each buffer.
type RecvmsgOut struct {
	Namelen, Controllen, Payloadlen, Flags uint32
}

// SizeofRecvmsgOut is the size of RecvmsgOut.
const SizeofRecvmsgOut = int(unsafe.Sizeof(RecvmsgOut{}))

// ParseRecvmsgOut splits a buffer filled by a multishot recvmsg whose
// header h reserved nameLen and controlLen bytes (liburing's
// io_uring_recvmsg_validate, io_uring_recvmsg_name, io_uring_recvmsg_cmsg_firsthdr
// and io_uring_recvmsg_payload). It returns the source address, the control
// data, the payload as received (cut short when truncated), and whether the
// datagram was truncated. ok is false when the buffer is too short to hold
// the header, which a correct kernel never does.
func ParseRecvmsgOut(buf []byte, n int, nameLen, controlLen int) (name *sys.Sockaddr, control, payload []byte, truncated bool, ok bool) {
	hdr := SizeofRecvmsgOut + nameLen + controlLen
	if n < hdr || len(buf) < n {
		return nil, nil, nil, false, false
	}
	out := (*RecvmsgOut)(unsafe.Pointer(&buf[0]))
	if nameLen >= int(unsafe.Sizeof(sys.Sockaddr{})) && out.Namelen > 0 {
		name = (*sys.Sockaddr)(unsafe.Pointer(&buf[SizeofRecvmsgOut]))
	}
	control = buf[SizeofRecvmsgOut+nameLen : SizeofRecvmsgOut+nameLen+min(int(out.Controllen), controlLen)]
	payload = buf[hdr:n]
	truncated = out.Flags&unix.MSG_TRUNC != 0 || int(out.Payloadlen) > len(payload)
	return name, control, payload, truncated, true
}

var probed struct {
	once sync.Once
	f    *Features
	err  error
}

// Probe checks once, and remembers, whether this process can use
// io_uring the way the engine does: a ring can be set up (not switched off
// by the kernel.io_uring_disabled sysctl, nor refused by seccomp or an LSM,
// nor missing from an old kernel), the kernel supports the opcodes (sendmsg,
// recvmsg, poll, cancel), deferred task work for a single issuer,
// provided-buffer rings, and a multishot recvmsg on a loopback socket pair
// delivers. The error wraps ErrUnsupported
// and says why.
func Probe() (*Features, error) {
	probed.once.Do(func() { probed.f, probed.err = probeKernel() })
	return probed.f, probed.err
}

func probeKernel() (*Features, error) {
	r, err := NewRing(8, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, setupFailure(err))
	}
	f := &Features{Features: r.Features()}
	pr, err := r.RegisterProbe()
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: no opcode probe (%v); kernel %s too old, Linux 6.1 needed", ErrUnsupported, err, kernelRelease())
	}
	for _, op := range []struct {
		op   uint8
		name string
	}{{OpSendmsg, "SENDMSG"}, {OpRecvmsg, "RECVMSG"}, {OpPollAdd, "POLL_ADD"}, {OpAsyncCancel, "ASYNC_CANCEL"}} {
		if !pr.Supports(op.op) {
			return nil, fmt.Errorf("%w: kernel %s lacks IORING_OP_%s", ErrUnsupported, kernelRelease(), op.name)
		}
	}
	f.SendZC = pr.Supports(OpSendZC)
	if f.Features&FeatExtArg == 0 {
		return nil, fmt.Errorf("%w: kernel %s too old (no IORING_FEAT_EXT_ARG), Linux 6.1 needed", ErrUnsupported, kernelRelease())
	}
	// Each optional flag on its own, then the pair that needs the other.
	for _, fl := range []uint32{SetupCoopTaskrun, SetupTaskrunFlag | SetupCoopTaskrun, SetupSubmitAll, SetupSingleIssuer, SetupSingleIssuer | SetupDeferTaskrun} {
		if r, err := NewRing(8, 0, fl); err == nil {
			f.Flags |= fl
			r.Close()
		}
	}
	if need := uint32(SetupSingleIssuer | SetupDeferTaskrun); f.Flags&need != need {
		// The loop relies on it: receive work runs only inside its own
		// io_uring_enter, so nothing writes into a lent buffer while it
		// is elsewhere (Linux 6.1).
		return nil, fmt.Errorf("%w: kernel %s lacks IORING_SETUP_DEFER_TASKRUN with SINGLE_ISSUER, Linux 6.1 needed", ErrUnsupported, kernelRelease())
	}
	if err := probeMultishot(f); err != nil {
		return nil, fmt.Errorf("%w: multishot recvmsg with a buffer ring failed on loopback (%v); kernel %s, Linux 6.1 needed", ErrUnsupported, err, kernelRelease())
	}
	return f, nil
}

// probeMultishot sends two datagrams over loopback and receives them with
// one multishot recvmsg into a provided-buffer ring.
func probeMultishot(f *Features) error {
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rx)
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(tx)
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(rx, lo); err != nil {
		return err
	}
	sa, err := unix.Getsockname(rx)
	if err != nil {
		return err
	}
	slab := make([]byte, 4*256)
	var h sys.Mmsghdr
	h.Hdr.Namelen = unix.SizeofSockaddrInet6
	// Deferred calls run last first: the ring closes before the memory
	// it points into may go.
	defer runtime.KeepAlive(&h)
	defer runtime.KeepAlive(slab)
	r, err := NewRing(4, 16, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	br, err := r.RegisterBufRing(4, 0)
	if err != nil {
		return err
	}
	defer br.free()
	for i := range 4 {
		br.Add(slab[i*256:(i+1)*256], uint16(i))
	}
	br.Advance()
	r.GetSQE().PrepRecvmsgMultishot(rx, &h, 0, 0, 1)
	if _, err := r.Submit(); err != nil {
		return err
	}
	for _, p := range []string{"probe-1", "probe-2"} {
		if err := unix.Sendto(tx, []byte(p), 0, sa); err != nil {
			return err
		}
	}
	got := 0
	deadline := time.Now().Add(time.Second)
	for got < 2 && time.Now().Before(deadline) {
		if _, err := r.SubmitAndWaitTimeout(1, 100*time.Millisecond); err != nil && !errors.Is(err, unix.ETIME) && !errors.Is(err, unix.EINTR) {
			return err
		}
		for r.CQReady() > 0 {
			c := r.PeekCQE()
			if c.Res < 0 {
				return c.Err()
			}
			bid, ok := c.Buffer()
			if !ok || !c.More() {
				return errors.New("completion without a buffer or ended early")
			}
			_, _, payload, _, ok := ParseRecvmsgOut(slab[int(bid)*256:(int(bid)+1)*256], int(c.Res), int(h.Hdr.Namelen), 0)
			if !ok || !strings.HasPrefix(string(payload), "probe-") {
				return fmt.Errorf("unexpected payload %q", payload)
			}
			got++
			r.CQAdvance(1)
		}
	}
	if got < 2 {
		return fmt.Errorf("%d of 2 datagrams received", got)
	}
	return nil
}

// setupFailure explains why io_uring_setup failed.
func setupFailure(err error) string {
	switch {
	case errors.Is(err, unix.EPERM):
		if b, rerr := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); rerr == nil {
			if v := strings.TrimSpace(string(b)); v != "0" {
				return fmt.Sprintf("disabled by sysctl kernel.io_uring_disabled=%s (%v)", v, err)
			}
		}
		return fmt.Sprintf("blocked by seccomp or a security module (%v)", err)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Sprintf("kernel %s has no io_uring (too old, built without it, or blocked by seccomp) (%v)", kernelRelease(), err)
	case errors.Is(err, unix.ENOMEM):
		return fmt.Sprintf("cannot allocate ring memory (%v)", err)
	}
	return err.Error()
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// NewEventfd returns a non-blocking eventfd(2), for a poll that wakes a
// ring's loop.
func NewEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	return fd, os.NewSyscallError("eventfd", err)
}

// PollIn is POLLIN, for PrepPollMultishot.
const PollIn = unix.POLLIN

// SignalEventfd adds one to an eventfd's counter, making it readable.
func SignalEventfd(fd uintptr) {
	one := [8]byte{1}
	if !nativeLittleEndian {
		one = [8]byte{7: 1}
	}
	_, _, _ = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&one[0])), 8)
}

// DrainEventfd reads an eventfd's counter, resetting it; it reports
// whether the counter was set.
func DrainEventfd(fd uintptr) bool {
	var b [8]byte
	n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), 8)
	return e == 0 && n == 8
}

// SetRecvmsgSizes makes h a template for a multishot recvmsg that reserves
// nameLen bytes for the source address and controlLen bytes for control
// messages in each buffer; it carries no pointers.
func SetRecvmsgSizes(h *sys.Mmsghdr, nameLen, controlLen int) {
	*h = sys.Mmsghdr{}
	h.Hdr.Namelen = uint32(nameLen)
	h.Hdr.SetControllen(controlLen)
}

// MapAnon maps n bytes of anonymous memory outside the Go heap, for
// buffers the kernel writes into.
func MapAnon(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	return b, os.NewSyscallError("mmap", err)
}

// Unmap releases memory from MapAnon.
func Unmap(b []byte) error { return os.NewSyscallError("munmap", unix.Munmap(b)) }

// Gettid returns the calling thread's id (gettid(2)).
func Gettid() int { return unix.Gettid() }

// CloseFd closes a descriptor from NewEventfd.
func CloseFd(fd int) error { return unix.Close(fd) }

// Errnos the io_uring backend tells apart in completions.
var (
	ETIME       = unix.ETIME
	EINTR       = unix.EINTR
	EBADF       = unix.EBADF
	MsgDontwait = uint32(unix.MSG_DONTWAIT)
)
