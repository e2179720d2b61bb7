package conn

import "syscall"

// truncFlag is the recvmsg flag that marks a datagram cut short.
const truncFlag = syscall.MSG_TRUNC
