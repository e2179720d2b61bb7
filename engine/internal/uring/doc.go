// Package uring is the engine's small io_uring layer: ring setup, the
// mmap'd submission and completion queues, io_uring_enter, registration
// (probe, eventfd, provided-buffer rings) and the operations the uring
// socket backend uses. With engine/internal/sys it is the only importer of
// golang.org/x/sys/unix. On other systems Probe reports that io_uring is
// Linux's, and nothing else is defined.
//
// It follows liburing's shapes and names (each
// wrapper says which function it stands for) and io_uring(7),
// io_uring_setup(2), io_uring_enter(2) and io_uring_register(2); the
// structures are those of <linux/io_uring.h>.
//
// Ring memory is shared with the kernel. The kernel reads the submission
// queue tail and writes its head; it writes the completion queue tail and
// reads its head. Each of those four indices is loaded or stored with an
// atomic operation, whose ordering reason sits next to it. Go's atomic loads
// and stores are sequentially consistent, which is at least the
// acquire/release pairing liburing uses.
package uring
