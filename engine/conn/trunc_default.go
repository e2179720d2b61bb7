//go:build !linux

package conn

// truncFlag is the recvmsg flag that marks a datagram cut short (MSG_TRUNC
// on the BSDs and Darwin too).
const truncFlag = 0x10
