// Package conn is the engine's socket layer: the batch contract (Conn,
// Message, Backend, BatchWriter) and its implementations.
//
//   - mmsg: recvmmsg/sendmmsg through syscall.RawConn inside Go's
//     netpoller, with UDP GSO trains on send and UDP GRO on receive.
//   - uring: io_uring, one loop and one ring per role (Looper): multishot
//     receives straight into the role's pool buffers through a
//     provided-buffer ring, and every link's sends in one io_uring_enter
//     (BatchWriter).
//   - std: plain net.UDPConn, one system call per datagram; the portable
//     fallback and the benchmarks' baseline.
//
// Open and Default choose among them by name. The GSO train builder
// (sendPlan) is shared by the two Linux backends. Everything that touches
// the kernel goes through engine/internal/sys and engine/internal/uring;
// the test doubles (a fake network, the every-backend conformance test)
// live in conntest.
package conn
